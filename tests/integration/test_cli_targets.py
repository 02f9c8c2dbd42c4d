"""The CLI against the real Docker engine: refusals, an unreachable daemon, Ctrl-C and re-run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

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
    assert result.returncode == 1
    assert "cannot reach the Docker daemon" in result.stderr
    assert "dockerd" in result.stderr


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
