"""The roles refuse bad hosts and bad artifacts with the cause named, and install nothing; a daemon
that dies at start fails the provision with the journal line that says why.

These need Docker but no real BuildKit binaries: the failures happen before any binary runs, or
with fake binaries (tests/support/fakes.py) whose buildkitd exits at start.
"""

from __future__ import annotations

import ast
import re

import pytest

from bkprov import catalog
from tests.support.fakes import FAIL_MESSAGE, fake_cache, script_tarball
from tests.support.helpers import ansible_playbook, docker_inventory, provision_refused_early, sh

pytestmark = pytest.mark.docker


def test_checksum_mismatch_installs_nothing_and_names_file_and_hashes(tmp_path, make_target):
    release = catalog.get("v0.10.6")
    mirror = tmp_path / "mirror"
    actual = script_tarball(mirror / "moby/buildkit/releases/download/v0.10.6" / release.tarball, tag="fake")
    name = make_target()

    result = ansible_playbook(
        "provision.yml",
        docker_inventory(tmp_path, name),
        "-e",
        "buildkit_version=v0.10.6",
        "--skip-tags",
        "runc",
        env={"BKPROV_CACHE": str(tmp_path / "cache"), "BKPROV_MIRROR": str(mirror)},
    )

    assert result.returncode != 0
    assert "sha256 mismatch" in result.stdout
    assert release.tarball in result.stdout
    assert f"expected {release.sha256}" in result.stdout
    assert f"actual {actual}" in result.stdout
    assert sh(name, "test -e /etc/systemd/system/buildkit.service").returncode == 1
    assert sh(name, "ls -A /usr/local/bin").stdout.strip() == ""


def test_no_systemd_is_refused_with_the_cause(tmp_path, docker_client, base_image):
    name = "bkprov-test-nosystemd"
    container = docker_client.containers.run(base_image, ["sleep", "300"], name=name, detach=True, network_mode="none")
    try:
        result = provision_refused_early(tmp_path, name)
    finally:
        container.remove(force=True)
    assert result.returncode != 0
    assert "bkprov-test-nosystemd cannot run BuildKit v0.10.6" in result.stdout
    assert "systemd is not PID 1" in result.stdout and "/proc/1/comm: sleep" in result.stdout


def test_unknown_flags_and_registry_keys_are_refused(tmp_path, make_target):
    name = make_target()
    result = provision_refused_early(
        tmp_path,
        name,
        "-e",  # a later -e wins: v0.4.0
        '{"buildkit_version": "v0.4.0", "buildkit_extra_flags": ["--trace=x"],'
        ' "buildkit_registries": {"r:5000": {"insecure": true}}}',
    )
    assert result.returncode != 0
    assert "does not know" in result.stdout
    assert "--trace" in result.stdout and "insecure" in result.stdout


def published(stdout: str) -> dict:
    """What the play published with set_stats (ANSIBLE_SHOW_CUSTOM_STATS prints it after the recap)."""
    text = re.search(r"RUN: (\{.*\})\s*$", stdout, re.MULTILINE | re.DOTALL).group(1)
    return ast.literal_eval(text.replace("true", "True").replace("false", "False").replace("null", "None"))


def root_inventory(tmp_path, name: str):
    """The docker connection as root, without ansible_become: the play itself decides not to escalate."""
    path = tmp_path / "root-inventory.yml"
    path.write_text(
        f"all:\n  hosts:\n    {name}:\n      ansible_connection: community.docker.docker\n"
        "      ansible_python_interpreter: /usr/bin/python3\n"
    )
    return path


def test_a_buildkitd_that_exits_at_start_fails_the_provision_with_its_journal_line(tmp_path, make_target):
    env = fake_cache(tmp_path / "cache", fail=True)
    name = make_target()

    result = ansible_playbook(
        "provision.yml",
        root_inventory(tmp_path, name),
        "-e",
        "buildkit_version=v0.10.6",
        env={**env, "ANSIBLE_SHOW_CUSTOM_STATS": "1"},
    )

    assert result.returncode != 0
    assert "buildkitd v0.10.6 did not start: buildkit.service failed (result exit-code, exit status 1)" in result.stdout
    assert "buildkitd[" in result.stdout and FAIL_MESSAGE.replace('"', '\\"') in result.stdout
    host = published(result.stdout)["bkprov"][name]
    assert host["ok"] is False and host["phase"] == "start" and host["playbook"] == "provision"
    assert FAIL_MESSAGE in host["error"]
    assert host["installed_version"] == "v0.10.6"  # installed, then it would not start
    assert sh(name, "systemctl is-failed buildkit.service").stdout.strip() == "failed"


def test_root_connection_without_become_provisions_verifies_and_uninstalls(tmp_path, make_target):
    """No sudo in the container and no ansible_become in the inventory: bkprov escalates only for non-root users."""
    env = {**fake_cache(tmp_path / "cache"), "ANSIBLE_SHOW_CUSTOM_STATS": "1"}
    name = make_target()
    assert sh(name, "command -v sudo").returncode != 0
    inventory = root_inventory(tmp_path, name)

    provisioned = ansible_playbook("provision.yml", inventory, "-e", "buildkit_version=v0.10.6", env=env)
    assert provisioned.returncode == 0, provisioned.stdout[-3000:]
    host = published(provisioned.stdout)["bkprov"][name]
    assert host == {
        "playbook": "provision",
        "phase": "done",
        "ok": True,
        "version": "v0.10.6",
        "installed_version": "v0.10.6",
        "build_output": "buildctl github.com/moby/buildkit v0.10.6 fake",
        "findings": host["findings"],
        "error": "",
        "state": {},  # (a plain run does not ask the verify role for its script: nothing to record)
    }
    assert {f["check"] for f in host["findings"]} >= {"systemd", "nested-overlayfs"}
    assert sh(name, "stat -c '%a %U %G' /run/buildkit/buildkitd.sock").stdout.strip() == "660 root buildkit"

    again = ansible_playbook("provision.yml", inventory, "-e", "buildkit_version=v0.10.6", env=env)
    assert again.returncode == 0 and re.search(rf"{name}\s+: ok=\d+\s+changed=0 ", again.stdout), again.stdout[-3000:]

    verified = ansible_playbook("verify.yml", inventory, env=env)
    assert verified.returncode == 0, verified.stdout[-3000:]
    build_output = published(verified.stdout)["bkprov"][name]["build_output"]
    assert build_output == "buildctl github.com/moby/buildkit v0.10.6 fake"

    removed = ansible_playbook("uninstall.yml", inventory, env=env)
    assert removed.returncode == 0, removed.stdout[-3000:]
    assert published(removed.stdout)["bkprov"][name]["ok"] is True
    assert sh(name, "ls -A /usr/local/bin").stdout.strip() == ""
    assert sh(name, "test -e /etc/systemd/system/buildkit.service").returncode == 1


def test_a_missing_host_requirement_is_installed_or_named_with_the_fix(tmp_path, make_target):
    """v0.3.x needs git (catalog host_requirements). Offline (no network), apt cannot install it: preflight
    stops naming git and the fix, and nothing is installed."""
    env = fake_cache(tmp_path / "cache", version="v0.3.0", runc="v1.0.0-rc6")
    name = make_target()
    assert sh(name, "apt-get remove -y git >/dev/null 2>&1 && ! command -v git").returncode == 0

    result = ansible_playbook(
        "provision.yml",
        root_inventory(tmp_path, name),
        "-e",
        "buildkit_version=v0.3.0",
        env={**env, "ANSIBLE_SHOW_CUSTOM_STATS": "1"},
    )

    assert result.returncode != 0
    assert f"{name} lacks git, which BuildKit v0.3.0 requires" in result.stdout
    assert "failed to find git binary" in result.stdout  # the catalog's why
    assert "Fix: install git on the host (Debian/Ubuntu: apt-get install git" in result.stdout
    host = published(result.stdout)["bkprov"][name]
    assert host["ok"] is False and host["phase"] == "preflight"
    assert sh(name, "ls -A /usr/local/bin").stdout.strip() == ""
