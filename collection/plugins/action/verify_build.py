# Copyright: bkprov developers
# Apache-2.0
"""Action: prove an installed BuildKit with a real build, in one connection command.

The version's COPY mode comes from the catalog, resolved here on the controller; the verify
role's script template is rendered here and runs on the host as one shell command (no module:
a build needs no Python on the host's side of Ansible). The RUN step must print the version.
"""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.template import trust_as_template
from ansible_collections.bkprov.buildkit.plugins.module_utils.catalog import (
    CatalogError,
    UnknownVersion,
    load_checked,
    resolve,
    resolve_alias,
)
from ansible_collections.bkprov.buildkit.plugins.module_utils.proof import read_proof, version_word


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = dict(task_vars or {})
        buildctl = str(self._task.args.get("buildctl") or "/usr/local/bin/buildctl")
        version = str(self._task.args.get("version") or "").strip()
        if not version:  # the only case that costs a second command: nobody said what is installed
            res = self._low_level_execute_command("%s --version" % self._connection._shell.quote(buildctl))
            version = version_word(res["stdout"])
            if res["rc"] != 0 or not version:
                return dict(
                    result,
                    failed=True,
                    phase="verify",
                    msg=f"cannot read the installed BuildKit version from `{buildctl} --version` (exit {res['rc']}): "
                    f"{(res['stderr'] or res['stdout']).strip()[:500]}. Is BuildKit installed? Set verify_buildkit_version.",
                )
        try:
            catalog = load_checked()
            release = resolve(catalog, resolve_alias(catalog, version))
        except (UnknownVersion, CatalogError) as exc:
            return dict(result, failed=True, phase="verify", msg=str(exc))

        task_vars["__verify_release"] = release
        template = self._find_needle("templates", "verify-build.sh.j2")
        with open(template, encoding="utf-8") as handle:
            source = handle.read()
        templar = self._templar.copy_with_new_env(available_variables=task_vars)
        script = templar.template(trust_as_template(source))
        if self._task.check_mode:
            return dict(
                result, skipped=True, msg="check mode: the verify build runs only for real", version=release["version"]
            )

        script = script.strip()
        res = self._low_level_execute_command(script)
        lines = res["stdout"].splitlines()
        installed, run_line = read_proof(res["stdout"], release["version"])
        result.update(
            changed=False,
            version=release["version"],
            installed_version=installed,
            run_line=run_line,
            rc=res["rc"],
            phase="verify",
        )
        if boolean(self._task.args.get("return_script", False), strict=False):
            result["script"] = script  # the exact build: `bkprov provision` re-runs it on a host found up to date
        if res["rc"] != 0 or not run_line:
            tail = "\n".join((lines + res["stderr"].splitlines())[-25:])
            result.update(
                failed=True,
                msg=f"The verify build of BuildKit {release['version']} failed (exit {res['rc']}).\nLast output lines:\n{tail}",
            )
            return result
        # Shown without -v, like assert's success_msg: the build's proof is what the user came for.
        result.update(msg=f"RUN printed: {run_line}", phase="done", _ansible_verbose_always=True)
        return result

    def _find_needle(self, dirname, needle):
        try:
            return super()._find_needle(dirname, needle)
        except Exception as exc:  # the role's template is part of the collection: a missing one is a packaging bug
            raise AnsibleActionFail(f"cannot find {dirname}/{needle} of the verify role: {exc}") from exc
