"""The roles refuse bad hosts and bad artifacts with the cause named, and install nothing.

These need Docker but no real BuildKit binaries: the failures happen before any binary runs.
"""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from bkprov import catalog
from tests.support.helpers import ansible_playbook, docker_inventory, provision_refused_early, sh

pytestmark = pytest.mark.docker


def fake_release(path, version: str) -> str:
    """A tarball in the release layout whose content is not the real release."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name in ("buildctl", "buildkitd", "buildkit-runc"):
            data = f"#!/bin/sh\necho fake {name} {version}\n".encode()
            info = tarfile.TarInfo(f"bin/{name}")
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_checksum_mismatch_installs_nothing_and_names_file_and_hashes(tmp_path, make_target):
    release = catalog.get("v0.10.6")
    mirror = tmp_path / "mirror"
    actual = fake_release(mirror / "moby/buildkit/releases/download/v0.10.6" / release.tarball, "v0.10.6")
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
