"""The container target on the real Docker engine: systemd, volume, capabilities, cleanup."""

from __future__ import annotations

import pytest

from bkprov.targets import container as ct
from tests.support.helpers import sh

pytestmark = pytest.mark.docker


def test_container_runs_systemd_with_buildkit_root_on_a_volume(docker_client, make_target):
    name = make_target("v0.10.6")

    assert sh(name, "cat /proc/1/comm").stdout.strip() == "systemd"
    assert sh(name, "systemctl is-system-running").stdout.strip() in ("running", "degraded")
    # /var/lib/buildkit must not be on the overlay root (nested overlayfs -> "invalid argument").
    fstype = sh(name, "awk '$5 == \"/var/lib/buildkit\" {print $0}' /proc/self/mountinfo").stdout
    assert fstype and " - overlay " not in fstype
    # No network of its own: only loopback.
    assert sh(name, "ls /sys/class/net").stdout.split() == ["lo"]

    target = ct.describe(docker_client.containers.get(name))
    assert target.version == "v0.10.6"
    expected = "privileged" if not ct.bounding_set_missing() else "explicit (without"
    assert target.capabilities.startswith(expected)
    assert name in [t.name for t in ct.list_targets(docker_client)]


def test_destroy_removes_container_and_volume(docker_client, base_image):
    name = "bkprov-test-destroy"
    ct.destroy(docker_client, name)
    ct.create(docker_client, name, base_image, "v0.10.6", print)
    assert docker_client.volumes.get(ct.volume_name(name))

    ct.destroy(docker_client, name)

    assert ct.get(docker_client, name) is None
    assert ct.volume_name(name) not in [v.name for v in docker_client.volumes.list()]
