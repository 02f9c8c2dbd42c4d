"""Switching between socket-activated (v0.9.0+) and self-listening (earlier) BuildKit in place."""

from __future__ import annotations

import json

import pytest

from tests.support.helpers import ansible_playbook, docker_inventory, require_real, sh

pytestmark = [pytest.mark.docker, pytest.mark.real]


def test_plain_service_to_socket_activation_and_back(tmp_path, make_target, registry):
    require_real("v0.4.0")
    require_real("v0.10.6")
    name = make_target("v0.4.0", network="host")
    inventory = docker_inventory(tmp_path, name)
    registry_vars = json.dumps(
        {"buildkit_registries": {registry.address: {"http": True}}, "verify_registry": registry.address}
    )

    for version in ("v0.4.0", "v0.10.6", "v0.4.0"):
        result = ansible_playbook("provision.yml", inventory, "-e", f"buildkit_version={version}", "-e", registry_vars)
        assert result.returncode == 0, result.stdout[-4000:]
        assert f"RUN printed: buildctl github.com/moby/buildkit {version}" in result.stdout
        socket_unit = sh(name, "test -e /etc/systemd/system/buildkit.socket").returncode == 0
        assert socket_unit is (version == "v0.10.6")
        active = sh(name, "systemctl is-active buildkit.socket buildkit.service").stdout.split()
        assert active == (["active", "active"] if version == "v0.10.6" else ["inactive", "active"])
        assert sh(name, "stat -c '%A %U %G' /run/buildkit/buildkitd.sock").stdout.strip() == "srw-rw---- root buildkit"
        pid = sh(name, "systemctl show -p MainPID --value buildkit.service").stdout.strip()
        exe = sh(name, f"readlink /proc/{pid}/exe").stdout.strip()
        assert exe == f"/usr/local/lib/bkprov/buildkit/{version}/bin/buildkitd"
