# Copyright: bkprov developers
# Apache-2.0
"""Action: the buildkit role's first step, on the controller only.

Resolves the version in the catalog once (the role reads the entry from this task's result, not
from a lookup re-evaluated per task), checks the role's variables against it and plans TCP/TLS
(module_utils/buildkit_plan.py). Fails with every problem found before the host is touched.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.bkprov.buildkit.plugins.module_utils import buildkit_plan
from ansible_collections.bkprov.buildkit.plugins.module_utils.catalog import (
    CatalogError,
    UnknownVersion,
    load_checked,
    resolve,
    resolve_alias,
    source_text,
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        a = dict(self._task.args)
        version = str(a.get("version") or "").strip()
        if not version:
            return dict(
                result,
                failed=True,
                phase="preflight",
                msg="Set buildkit_version (e.g. -e buildkit_version=v0.10.6); `bkprov versions` lists them.",
            )
        try:
            catalog = load_checked()
            release = resolve(catalog, resolve_alias(catalog, version))
        except (UnknownVersion, CatalogError) as exc:
            problem = str(exc)
            if isinstance(exc, UnknownVersion):
                problem += (
                    f" The catalog is {source_text(catalog)}; pick a listed version, or run `bkprov versions --refresh`"
                    " to add releases published since."
                )
            return dict(result, failed=True, phase="preflight", msg=problem)

        host = str(task_vars.get("inventory_hostname", ""))
        tcp = str(a.get("tcp_address") or "")
        insecure = bool(a.get("insecure_tcp"))
        tls_args = {
            "tls_mode": str(a.get("tls_mode") or "mutual"),
            "ca_cert": str(a.get("tls_ca_cert") or ""),
            "server_cert": str(a.get("tls_server_cert") or ""),
            "server_key": str(a.get("tls_server_key") or ""),
            "tls_local_dir": str(a.get("tls_local_dir") or ""),
        }
        problems = buildkit_plan.input_problems(
            release,
            list(a.get("extra_flags") or []),
            dict(a.get("registries") or {}),
            oci_worker_binary=str(a.get("oci_worker_binary") or ""),
            tcp_address=tcp,
            insecure_tcp=insecure,
            **tls_args,
        )
        result["release"] = release
        if problems:
            return dict(result, failed=True, phase="preflight", msg="\n".join(problems))
        result["tls"] = buildkit_plan.tls_plan(
            release,
            host,
            tcp_address=tcp,
            insecure_tcp=insecure,
            tls_dir=str(a.get("tls_dir") or "/etc/buildkit/tls"),
            **tls_args,
        )
        # Public: the catalog entry, for the play (provision.yml pairs runc with it) and the user's own tasks.
        result["ansible_facts"] = {"buildkit_release": release}
        warnings = buildkit_plan.input_warnings(host, tcp, insecure)
        if warnings:
            result["warnings"] = warnings
        result["changed"] = False
        return result
