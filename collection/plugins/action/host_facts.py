# Copyright: bkprov developers
# Apache-2.0
"""Action: run the host_facts module, handing its probe the COPY helper files where a version needs them.

Before FileOp (v0.3.x, v0.4.x) Dockerfile COPY runs a helper image from a registry. The probe serves
one on the host's localhost, built from the verify role's ``copy`` script and ``helper_registry.py``
(the same files bkprov's own verify build uses); they live on the controller, so this plugin reads
them and passes their text to the module. Everything else goes to the module unchanged.
"""

from __future__ import annotations

from pathlib import Path

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

VERIFY_FILES = Path(__file__).resolve().parents[2] / "roles" / "verify" / "files"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
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
        result.update(
            self._execute_module(module_name="bkprov.buildkit.host_facts", module_args=args, task_vars=task_vars)
        )
        return result
