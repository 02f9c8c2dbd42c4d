"""The VM target for real: QEMU (KVM where it really works, else TCG), SSH on 127.0.0.1.

One VM serves the module: made and destroyed through the driver's CLI, provisioned as root
by `bkprov provision --target vm`, then used as an existing host by its non-root sudo user.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from bkprov.targets import vm
from tests.support.helpers import ansible_playbook, bkprov, require_real

pytestmark = pytest.mark.vm
NAME = "bkprov-test-vm"


@pytest.fixture(scope="module")
def machine():
    missing = [t for t in ("qemu-system-x86_64", "qemu-img", "ssh", "mkfs.ext4", "debootstrap") if not shutil.which(t)]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must provide {', '.join(missing)} (.ci/run installs them)")
        pytest.skip(f"{', '.join(missing)} not installed (Debian: qemu-system-x86 qemu-utils openssh-client e2fsprogs)")
    bkprov("destroy", NAME)
    started = time.monotonic()
    created = bkprov("create", NAME, "--target", "vm", "--version", "v0.10.6", timeout=900)
    assert created.returncode == 0, created.stderr
    print(f"VM created in {time.monotonic() - started:.0f} s: {created.stderr.strip()}")
    yield vm.get(NAME)
    bkprov("destroy", NAME)


def sudo_inventory(tmp_path: Path, machine: vm.VmTarget) -> Path:
    path = tmp_path / "vm-sudo.yml"
    hostvars = vm.inventory(machine, user=vm.SUDO_USER)["all"]["hosts"][NAME]
    path.write_text(json.dumps({"all": {"hosts": {"vm-as-sudo-user": hostvars}}}))
    return path


def test_vm_boots_isolated_with_ssh_on_loopback(machine):
    assert machine.running
    listed = json.loads(bkprov("list", "--json").stdout)
    entry = next(t for t in listed if t["name"] == NAME)
    assert entry["target"] == "vm" and f"127.0.0.1:{machine.port}" in entry["detail"]
    assert machine.accel in ("kvm", "tcg")

    probe = bkprov(
        "exec", NAME, "--", "sh", "-c", "cat /proc/1/comm; id -un; sudo -n -u bkprov sudo -n true && echo sudo-ok"
    )
    assert probe.stdout.split() == ["systemd", "root", "sudo-ok"]
    # restrict=on: the guest reaches nothing outside (no route out, no DNS).
    outside = bkprov(
        "exec", NAME, "--", "python3", "-c", "import socket; socket.create_connection(('10.0.2.2', 22), timeout=3)"
    )
    assert outside.returncode != 0


def test_provision_as_root_then_as_sudo_user_through_inventory(machine, tmp_path):
    require_real("v0.10.6")
    started = time.monotonic()
    result = bkprov("provision", "v0.10.6", "--target", "vm", "--name", NAME, "--json", timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["target"] == "vm"
    assert summary["build_output"].startswith("buildctl github.com/moby/buildkit v0.10.6")
    print(f"provision on the VM ({machine.accel}): {time.monotonic() - started:.0f} s")

    inventory = sudo_inventory(tmp_path, machine)
    removed = ansible_playbook("uninstall.yml", inventory)
    assert removed.returncode == 0, removed.stdout[-3000:]
    state = bkprov("exec", NAME, "--", "sh", "-c", "ls -A /usr/local/bin; ls /var/lib/buildkit | wc -l").stdout.split()
    assert state[-1] != "0" and "buildkitd" not in state  # binaries gone, data kept

    again = bkprov("provision", "v0.10.6", "--inventory", str(inventory), "--json", timeout=1200)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert json.loads(again.stdout)["build_output"].startswith("buildctl github.com/moby/buildkit v0.10.6")


def test_destroy_stops_qemu_and_removes_the_overlay(machine):
    directory = machine.directory
    assert bkprov("destroy", NAME).returncode == 0
    assert not directory.exists()
    assert not machine.running


def test_old_buildkit_gets_a_cgroup_v1_guest_and_builds():
    """v0.4.0's runc predates cgroup v2 (catalog cgroup_v2: false): its VM boots with cgroup v1."""
    require_real("v0.4.0")
    name = "bkprov-test-vm-legacy"
    bkprov("destroy", name)
    try:
        result = bkprov("provision", "v0.4.0", "--target", "vm", "--name", name, "--json", timeout=1200)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert json.loads(result.stdout)["build_output"].startswith("buildctl github.com/moby/buildkit v0.4.0")
        assert bkprov("exec", name, "--", "stat", "-fc", "%T", "/sys/fs/cgroup").stdout.strip() == "tmpfs"
    finally:
        bkprov("destroy", name)
