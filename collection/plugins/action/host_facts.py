# Copyright: bkprov developers
# Apache-2.0
"""Action: read a host's facts and diagnose it in one connection command, without AnsiballZ.

The code is module_utils/host_facts.py (stdlib only). Where the connection pipelines, it goes to the
host with diagnosis.py and buildkitd_config.py on the stdin of one ``python3 -c`` (plugin_utils/piped.py),
its arguments validated here against the module's own ARGUMENT_SPEC (types, defaults, unknown options);
otherwise the ``bkprov.buildkit.host_facts`` module runs the same code as an AnsiballZ module.

Before FileOp (v0.3.x, v0.4.x) Dockerfile COPY runs a helper image from a registry. The probe serves
one on the host's localhost, built from the verify role's ``copy`` script and ``helper_registry.py``
(the same files bkprov's own verify build uses); they live on the controller, so this plugin reads
them and passes their text as ``copy_helper``.
"""

from __future__ import annotations

from pathlib import Path

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.errors import UnsupportedError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible_collections.bkprov.buildkit.plugins.module_utils.host_facts import ARGUMENT_SPEC
from ansible_collections.bkprov.buildkit.plugins.plugin_utils import piped

MODULE = "bkprov.buildkit.host_facts"
VERIFY_FILES = Path(__file__).resolve().parents[2] / "roles" / "verify" / "files"
# `path` options are checked as strings here: a `~` or `$VAR` in them is the host's (piped() expands them there).
CONTROLLER_SPEC = {name: dict(o, type="str") if o.get("type") == "path" else o for name, o in ARGUMENT_SPEC.items()}


def validated(args):
    """(params, no_log values, error) as AnsibleModule would make them from ``args``; error "" when valid."""
    result = ArgumentSpecValidator(CONTROLLER_SPEC).validate(dict(args))
    if not result.error_messages:
        return result.validated_parameters, result._no_log_values, ""
    msg = result.errors.msg
    if isinstance(result.errors[0], UnsupportedError):
        msg = "Unsupported parameters for (%s) module: %s" % (MODULE, msg)
    return {}, set(), msg


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = dict(self._task.args)
        release = args.get("release") or {}
        copy_mode = (release.get("dockerfile_copy") or {}).get("mode", "fileop") if isinstance(release, dict) else ""
        if (
            boolean(args.get("probe", False), strict=False)
            and copy_mode not in ("", "fileop")
            and not args.get("copy_helper")
        ):
            args["copy_helper"] = {
                "copy": (VERIFY_FILES / "copy").read_text(encoding="utf-8"),
                "registry": (VERIFY_FILES / "helper_registry.py").read_text(encoding="utf-8"),
            }
        if not self._connection.is_pipelining_enabled():
            result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
            return result
        params, no_log_values, error = validated(args)
        if error:  # refused before anything runs on the host, as the module would refuse it
            return dict(result, failed=True, msg=error)
        out = piped.run(self, task_vars, "host_facts:piped", params, what=MODULE)
        if not out.get("failed"):
            out["invocation"] = {"module_args": params}
        # As AnsibleModule.exit_json does: no value of a no_log option (copy_helper) in the result.
        result.update(remove_values(out, no_log_values) if no_log_values else out)
        return result
