# Copyright: bkprov developers
# Apache-2.0
"""Action: make one release artifact present and verified in the controller cache."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.bkprov.buildkit.plugins.module_utils.artifacts import ArtifactError, ensure


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        try:
            artifact = ensure(
                url=args["url"],
                cache_dir=args["cache_dir"],
                mirror=args.get("mirror") or "",
                expected=args.get("sha256") or "",
            )
        except ArtifactError as exc:
            raise AnsibleActionFail(str(exc)) from exc
        except KeyError as exc:
            raise AnsibleActionFail(f"missing required argument {exc}") from exc
        if artifact.warning:
            self._display.warning(artifact.warning)
        result.update(
            changed=artifact.downloaded,
            path=artifact.path,
            relpath=artifact.relpath,
            sha256=artifact.sha256,
            origin=artifact.origin,
        )
        return result
