"""Real installs on real systemd containers with real BuildKit binaries from the bkprov cache.

Skipped, with what is missing and how to provide it, when the cache lacks the artifacts.
"""

from __future__ import annotations

import json

import pytest

from tests.support.helpers import ansible_playbook, bkprov, docker_inventory, require_real, sh

pytestmark = [pytest.mark.docker, pytest.mark.real]


def test_v0_10_6_socket_activated_install_builds_and_is_idempotent(tmp_path, make_target, docker_client):
    require_real("v0.10.6")
    name = make_target("v0.10.6")  # bkprov provision would make the same; reused in place below

    first = bkprov("provision", "v0.10.6", "--name", name, "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    summary = json.loads(first.stdout)
    assert summary["ok"] is True
    assert summary["build_output"].startswith("buildctl github.com/moby/buildkit v0.10.6")

    assert sh(name, "systemctl is-active buildkit.socket buildkit.service").stdout.split() == ["active", "active"]
    assert sh(name, "stat -c '%A %U %G' /run/buildkit/buildkitd.sock").stdout.strip() == "srw-rw---- root buildkit"
    unit = sh(name, "cat /etc/systemd/system/buildkit.service").stdout
    assert "--addr fd://" in unit and "Type=notify" in unit
    assert "SocketGroup=buildkit" in sh(name, "cat /etc/systemd/system/buildkit.socket").stdout

    # The socket starts buildkitd on demand.
    sh(name, "systemctl stop buildkit.service")
    # buildkitd exits 1 ("context canceled") on SIGTERM, so systemd may call the stop "failed".
    assert sh(name, "systemctl is-active buildkit.service").stdout.strip() in ("inactive", "failed")
    assert sh(name, "buildctl debug workers").returncode == 0
    assert sh(name, "systemctl is-active buildkit.service").stdout.strip() == "active"

    # The documented existing-hosts way, on the same host: nothing changes, the build passes again.
    second = ansible_playbook("provision.yml", docker_inventory(tmp_path, name), "-e", "buildkit_version=v0.10.6")
    assert second.returncode == 0, second.stdout[-3000:]
    recap = [line for line in second.stdout.splitlines() if line.startswith(name)][-1]
    assert "changed=0" in recap and "failed=0" in recap
    assert "RUN printed: buildctl github.com/moby/buildkit v0.10.6" in second.stdout

    workers = bkprov("exec", name, "--", "buildctl", "debug", "workers")
    assert workers.returncode == 0 and "ID" in workers.stdout


def test_v0_4_0_plain_service_builds_with_helper_image_copy(make_target):
    """README's headline: no registry given, the verify role serves the COPY helper image itself."""
    require_real("v0.4.0")
    name = make_target("v0.4.0")  # no network of its own: the helper registry is the target's localhost

    args = ("provision", "v0.4.0", "--name", name, "--json")
    first = bkprov(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads(first.stdout)["build_output"].startswith("buildctl github.com/moby/buildkit v0.4.0")

    assert sh(name, "systemctl is-active buildkit.service").stdout.strip() == "active"
    assert sh(name, "test -e /etc/systemd/system/buildkit.socket").returncode == 1
    unit = sh(name, "cat /etc/systemd/system/buildkit.service").stdout
    assert "Type=simple" in unit and "--addr fd://" not in unit and "--group buildkit" in unit
    assert sh(name, "stat -c '%A %U %G' /run/buildkit/buildkitd.sock").stdout.strip() == "srw-rw---- root buildkit"
    assert sh(name, "runc --version").stdout.startswith("runc version 1.0.0-rc7")  # the system runc only
    assert "1.0.0-rc6+dev" in sh(name, "buildkit-runc --version").stdout  # what builds run on

    second = bkprov(*args)
    assert second.returncode == 0 and json.loads(second.stdout)["changed"] == 0
