"""Helpers for tests: run commands in targets, run bkprov and ansible-playbook as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bkprov import artifacts
from bkprov.paths import cache_dir

ROOT = Path(__file__).resolve().parents[2]


def sh(container: str, command: str) -> subprocess.CompletedProcess[str]:
    """Run a shell command in a container (docker exec), returning the completed process."""
    return subprocess.run(
        ["docker", "exec", container, "sh", "-c", command], capture_output=True, text=True, check=False
    )


def require_real(version: str, with_runc: bool = True) -> None:
    """Skip, naming what is missing and how to provide it, unless the release's artifacts are cached."""
    missing = [item.relpath for item in artifacts.needed(version, with_runc) if not item.cached]
    if missing:
        pytest.skip(
            f"real BuildKit {version} artifacts not in {cache_dir()}: missing {', '.join(missing)}. "
            "Provide them with BKPROV_MIRROR=<mirror> or `bkprov artifacts import buildkit|runc VERSION FILE`."
        )


def bkprov(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run the installed bkprov CLI as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "bkprov.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def ansible_playbook(
    playbook: str, inventory: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a playbook with ansible-playbook, the documented way for existing hosts."""
    binary = Path(sys.executable).parent / "ansible-playbook"
    return subprocess.run(
        [str(binary), "-i", str(inventory), str(ROOT / "playbooks" / playbook), *extra],
        stdin=subprocess.DEVNULL,  # Ansible refuses a non-blocking stdin (pytest run from a background job)
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_PIPELINING": "1", **(env or {})},
    )


def docker_inventory(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "inventory.yml"
    path.write_text(
        "all:\n  hosts:\n"
        f"    {name}:\n      ansible_connection: community.docker.docker\n"
        "      ansible_python_interpreter: /usr/bin/python3\n      ansible_become: false\n"
    )
    return path


def provision_refused_early(tmp_path: Path, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """provision.yml on a host with an empty artifact cache: what preflight says before any download."""
    return ansible_playbook(
        "provision.yml",
        docker_inventory(tmp_path, name),
        "-e",
        "buildkit_version=v0.10.6",
        "--skip-tags",
        "runc",
        *extra,
        env={"BKPROV_CACHE": str(tmp_path / "cache")},
    )
