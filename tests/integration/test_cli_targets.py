"""The CLI against the real Docker engine: refusals, an unreachable daemon, Ctrl-C and re-run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bkprov.targets import container as ct
from tests.support.helpers import bkprov, require_real, sh

pytestmark = pytest.mark.docker


def test_a_foreign_container_name_is_refused_and_left_alone(docker_client, base_image, tmp_path):
    foreign = docker_client.containers.run(
        base_image, ["sleep", "300"], name="bkprov-test-foreign", detach=True, network_mode="none"
    )
    try:
        result = bkprov(
            "provision", "v0.10.6", "--name", "bkprov-test-foreign", env={"BKPROV_CACHE": str(tmp_path / "cache")}
        )
        assert result.returncode == 2
        assert "exists and is not a bkprov target" in result.stderr
        assert not (tmp_path / "cache").exists()  # refused before fetching anything
        for command in (["destroy", "bkprov-test-foreign"], ["exec", "bkprov-test-foreign", "--", "true"]):
            refused = bkprov(*command)
            assert refused.returncode == 2 and "no bkprov target named bkprov-test-foreign" in refused.stderr
        foreign.reload()
        assert foreign.status == "running"
    finally:
        foreign.remove(force=True)


def test_an_unreachable_docker_daemon_is_named_with_what_to_do():
    result = bkprov("destroy", "anything", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 2
    assert "cannot reach the Docker daemon" in result.stderr
    assert "dockerd" in result.stderr


def containers(docker_client) -> set[str]:
    return {c.name for c in docker_client.containers.list(all=True)}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tcp", "http://x"], "expected tcp://HOST:PORT"),
        (["--tcp", "tcp://0.0.0.0:notaport"], "expected tcp://HOST:PORT"),
        (["--name", "../x"], "'../x' is not a valid name"),
        (["--image", "bkprov/no-such-image:never"], "no such image here"),
        (["--network", "bkprov-no-such-network"], "no such Docker network"),
    ],
)
def test_a_refused_provision_creates_nothing(docker_client, tmp_path, flags, message):
    before = containers(docker_client)
    volumes = {v.name for v in docker_client.volumes.list()}
    result = bkprov("provision", "v0.10.6", *flags, env={"BKPROV_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert containers(docker_client) == before
    assert {v.name for v in docker_client.volumes.list()} == volumes
    assert not (tmp_path / "cache").exists()  # nothing fetched either


def fake_release(cache: Path, version: str) -> None:
    """A catalog overlay entry for ``version`` and release files that pass the import checks but cannot
    run BuildKit: a buildkitd that exits at once, a runc that only knows its version."""
    (cache / "catalog").mkdir(parents=True)
    (cache / "catalog" / "overlay.yml").write_text(f'versions:\n  {version}:\n    released: "2030-01-01"\n')
    work = cache.parent / "fake-release"
    (work / "bin").mkdir(parents=True)
    scripts = {
        "bin/buildkitd": "echo 'buildkitd: this is not BuildKit' >&2; exit 1",
        "bin/buildctl": f"echo 'buildctl github.com/moby/buildkit {version} fake'",
    }
    for name, body in scripts.items():
        (work / name).write_text(f"#!/bin/sh\n{body}\n")
        (work / name).chmod(0o755)
    subprocess.run(["tar", "-czf", str(work / "release.tar.gz"), "-C", str(work), "bin"], check=True)
    (work / "runc").write_text("#!/bin/sh\necho 'runc version 1.0.2'\n")
    env = {"BKPROV_CACHE": str(cache)}
    assert bkprov("artifacts", "import", "buildkit", version, str(work / "release.tar.gz"), env=env).returncode == 0
    assert bkprov("artifacts", "import", "runc", "v1.0.2", str(work / "runc"), env=env).returncode == 0


def test_a_failed_provision_keeps_its_target_and_says_how_to_look_and_remove(docker_client, base_image, tmp_path):
    cache, name = tmp_path / "cache", "bkprov-test-kept"
    ct.destroy(docker_client, name)
    fake_release(cache, "v0.10.99")
    try:
        result = bkprov("provision", "v0.10.99", "--name", name, env={"BKPROV_CACHE": str(cache), "COLUMNS": "300"})
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        last = result.stderr.strip().splitlines()[-3:]
        assert last == [
            f"bkprov: kept container {name} for inspection:",
            f"  bkprov exec {name} -- journalctl -u buildkit --no-pager",
            f"  bkprov destroy {name}",
        ]
        assert ct.get(docker_client, name).status == "running"  # kept, as said
        assert bkprov("destroy", name).returncode == 0
    finally:
        ct.destroy(docker_client, name)


@pytest.mark.real
def test_ctrl_c_stops_cleanly_and_a_rerun_converges(docker_client, base_image):
    require_real("v0.10.6")
    name = "bkprov-test-interrupt"
    ct.destroy(docker_client, name)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bkprov.cli", "provision", "v0.10.6", "--name", name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sh(name, "test -e /usr/local/sbin/runc").returncode != 0:
            time.sleep(0.2)  # interrupt in the middle of the Ansible run
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "interrupted" in err and "re-run" in err

        again = bkprov("provision", "v0.10.6", "--name", name, "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["build_output"].startswith("buildctl github.com/moby/buildkit v0.10.6")
        assert sh(name, "systemctl is-active buildkit.socket").stdout.strip() == "active"
    finally:
        ct.destroy(docker_client, name)
