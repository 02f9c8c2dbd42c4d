"""Re-runs without Ansible: prove a host that is exactly as bkprov's last verified run left it.

After a provision that passed, each host's result carries what the converge steps left on it
(``module_utils/host_state.py`` snapshots: the managed files' identities, the units' state as
systemd reports it) and the proof build that passed. bkprov keeps them per target with a key of
everything that decided them: the request (extra vars), the collection and playbooks as installed,
the catalog overlay and the artifacts' sha256.

The next ``bkprov provision`` with the same key sends the snapshots and the script to the host in
one command: the host compares itself with the snapshots (read from the running system, never
from bkprov's files) and, only if nothing differs, runs the same proof build. Anything else — a
changed key, a difference, a failed build, a target bkprov cannot run a command on — goes through
the playbook as usual, which converges and verifies the host and records it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from bkprov.paths import cache_dir, collection_dir, playbooks_dir, state_dir
from bkprov.results import OK, HostResult, PlayResult
from bkprov.targets import Target

# The extra var that makes the verify role return its script, so that it can be recorded.
RECORD_VARS = {"verify_return_script": True}
PROOF_TIMEOUT = 300


def tree_digest(*roots: Path) -> str:
    """sha256 over every file's relative path and content (symlinked directories not followed)."""
    digest = hashlib.sha256()
    for root in roots:
        for directory, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not (Path(directory) / d).is_symlink() and d != "__pycache__")
            for name in sorted(files):
                path = Path(directory) / name
                digest.update(f"{root.name}/{path.relative_to(root)}\0".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def run_key(extravars: dict[str, Any], artifact_sha256: dict[str, str]) -> str:
    """Everything that decides what a provision puts on a host, as one digest."""
    overlay = cache_dir() / "catalog" / "overlay.yml"
    decided = {
        "extravars": extravars,
        "artifacts": artifact_sha256,
        "code": tree_digest(collection_dir(), playbooks_dir()),
        "overlay": hashlib.sha256(overlay.read_bytes()).hexdigest() if overlay.is_file() else "",
    }
    return hashlib.sha256(json.dumps(decided, sort_keys=True).encode()).hexdigest()


def record_path(target: Target, host: str) -> Path:
    return state_dir() / "recorded" / f"{target.kind}-{target.name}-{host}.json".replace("/", "_")


def forget(kind: str, name: str) -> None:
    """Drop what bkprov kept about a target (it was destroyed, or a new one takes its name)."""
    for path in (state_dir() / "recorded").glob(f"{kind}-{name}-*.json".replace("/", "_")):
        path.unlink(missing_ok=True)


def record(target: Target, result: PlayResult, key: str) -> None:
    """Keep each verified host's state for the next run (and forget it for hosts that did not verify)."""
    if not isinstance(target.inventory(), dict):  # the user's inventory: never proved without Ansible (prove())
        return
    for name, host in result.hosts.items():
        path = record_path(target, name)
        if not (host.ok and host.state.get("snapshots") and host.state.get("proof")):
            path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"key": key, "version": host.version, "state": host.state}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entry))
        tmp.chmod(0o600)
        tmp.replace(path)


def prove(target: Target, key: str, version: str, log: Any) -> PlayResult | None:
    """The result of re-running the recorded proof on an unchanged host; None when the playbook must run."""
    inventory = target.inventory()
    hosts = list(inventory.get("all", {}).get("hosts", {})) if isinstance(inventory, dict) else []
    if len(hosts) != 1:  # an inventory of the user's: its connection settings are Ansible's to apply
        return None
    host = hosts[0]
    try:
        entry = json.loads(record_path(target, host).read_text())
    except (OSError, ValueError):
        return None
    if entry.get("key") != key or entry.get("version") != version:
        return None
    from ansible_collections.bkprov.buildkit.plugins.module_utils import host_state
    from ansible_collections.bkprov.buildkit.plugins.module_utils.proof import read_proof

    started = time.monotonic()
    params = {"snapshots": entry["state"]["snapshots"], "script": entry["state"]["proof"], "timeout": PROOF_TIMEOUT}
    source = Path(host_state.__file__).read_text(encoding="utf-8")
    answer = target.capture(["python3", "-c", source, json.dumps(params)], timeout=PROOF_TIMEOUT + 30)
    if answer is None:
        return None
    rc, stdout, stderr = answer
    try:
        out = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        log(
            f"could not check {host} against its recorded state (exit {rc}: {(stderr or stdout).strip()[:200]}); "
            "running the playbook"
        )
        return None
    if not out.get("same"):
        differ = out.get("differences") or []
        log(
            f"{host} changed since bkprov verified it ({'; '.join(differ[:3])}"
            f"{f'; {len(differ) - 3} more' if len(differ) > 3 else ''}); running the playbook"
        )
        return None
    installed, run_line = read_proof(out.get("stdout") or "", version)
    if out.get("rc") != 0 or not run_line:
        log(f"{host} is as bkprov left it but its proof build failed (exit {out.get('rc')}); running the playbook")
        return None
    snapshots = entry["state"]["snapshots"]
    files = sum(len(snap.get("paths") or {}) for snap in snapshots)
    units = sum(len(snap.get("units") or {}) for snap in snapshots)
    log(
        f"{host} is as bkprov's last verified run left it ({files} paths, {units} units checked on it): "
        "ran its proof build only (--full runs the whole playbook)"
    )
    result = PlayResult("provision.yml", rc=0, status="successful", seconds=time.monotonic() - started)
    result.hosts[host] = HostResult(
        host, OK, phase="done", version=version, installed_version=installed, build_output=run_line, published=True
    )
    return result
