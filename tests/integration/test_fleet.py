"""Fleets: many hosts in one run, a broken host among them, rolling upgrades (issue 14).

The hosts are systemd containers made by the test setup and reached the way a user with a
pool of build hosts would: their own inventory file, the docker connection as root, and no
``ansible_become`` setting (the images have no sudo; bkprov escalates only where needed).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml

from tests.support.helpers import bkprov, require_real, sh


def write_inventory(path: Path, groups: dict[str, list[str]]) -> Path:
    """An inventory with groups of docker-connection hosts, as README's fleet section shows."""
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "community.docker.docker",
                "ansible_python_interpreter": "/usr/bin/python3",
            },
            "children": {group: {"hosts": {h: {} for h in hosts}} for group, hosts in groups.items()},
        }
    }
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))  # hosts in this order: the batches of --serial
    return path


def run_json(*args: str) -> tuple[int, dict]:
    result = bkprov(*args, "--json", timeout=1200)
    assert result.stdout.strip(), f"no JSON on stdout (exit {result.returncode}):\n{result.stderr[-3000:]}"
    return result.returncode, json.loads(result.stdout)


def broken_host(docker_client, base_image: str) -> str:
    """A container of the same image whose PID 1 is not systemd: a host BuildKit cannot run on."""
    name = f"bkprov-test-broken-{uuid.uuid4().hex[:6]}"
    docker_client.containers.run(base_image, ["sleep", "infinity"], name=name, detach=True, network_mode="none")
    return name


@pytest.fixture
def fleet(make_target, tmp_path):
    def make(count: int) -> tuple[list[str], Path]:
        hosts = [make_target() for _ in range(count)]
        return hosts, write_inventory(tmp_path / "fleet.yml", {"builders": hosts})

    return make


@pytest.mark.docker
@pytest.mark.real
def test_four_hosts_in_one_run_all_verified(fleet):
    require_real("v0.10.6")
    hosts, inventory = fleet(4)

    code, data = run_json("provision", "v0.10.6", "--inventory", str(inventory))

    assert code == 0, data
    assert sorted(data["hosts"]) == sorted(hosts)
    for host, result in data["hosts"].items():
        assert result["status"] == "ok", (host, result)
        assert result["phase"] == "done"
        assert "v0.10.6" in result["installed_version"]
        assert "buildctl github.com/moby/buildkit v0.10.6" in result["build_output"]

    # The fleet-wide verify and doctor report per host in the same shape.
    code, verified = run_json("verify", "--inventory", str(inventory))
    assert code == 0, verified
    assert {h: r["status"] for h, r in verified["hosts"].items()} == dict.fromkeys(hosts, "ok")
    code, diagnosed = run_json("doctor", "--inventory", str(inventory))
    assert code == 0, diagnosed
    assert sorted(diagnosed["hosts"]) == sorted(hosts)
    assert all(not [f for f in r["findings"] if f["status"] == "problem"] for r in diagnosed["hosts"].values())


@pytest.mark.docker
@pytest.mark.real
def test_a_broken_host_never_hides_the_others(make_target, docker_client, base_image, tmp_path):
    require_real("v0.10.6")
    healthy = [make_target() for _ in range(3)]
    broken = broken_host(docker_client, base_image)
    try:
        inventory = write_inventory(tmp_path / "fleet.yml", {"builders": [*healthy, broken]})

        code, data = run_json("provision", "v0.10.6", "--inventory", str(inventory))

        assert code == 1, data
        for host in healthy:
            assert data["hosts"][host]["status"] == "ok", data["hosts"][host]
            assert "v0.10.6" in data["hosts"][host]["build_output"]
        failed = data["hosts"][broken]
        assert failed["status"] == "failed"
        causes = " ".join(f"{f['summary']} {f['evidence']}" for f in failed["findings"])
        assert "systemd" in causes and "PID 1" in causes, failed

        # Without --json the summary names the broken host and its cause.
        text = bkprov("provision", "v0.10.6", "--inventory", str(inventory), timeout=1200)
        assert text.returncode == 1
        assert broken in text.stdout + text.stderr
        assert "PID 1" in text.stdout + text.stderr
    finally:
        docker_client.containers.get(broken).remove(force=True)


@pytest.mark.docker
@pytest.mark.real
def test_rolling_upgrade_stops_at_the_failed_batch(fleet):
    require_real("v0.10.6")
    require_real("v0.12.5")
    hosts, inventory = fleet(3)
    code, data = run_json("provision", "v0.10.6", "--inventory", str(inventory))
    assert code == 0, data

    # The second host cannot run anything but v0.10.6: a drop-in checks the binary before every start.
    second = hosts[1]
    sh(
        second,
        "mkdir -p /etc/systemd/system/buildkit.service.d && printf '%s\\n' '[Service]' "
        "\"ExecStartPre=/bin/sh -c '/usr/local/bin/buildkitd --version | grep -q v0.10.6'\" "
        "> /etc/systemd/system/buildkit.service.d/zz-pin.conf && systemctl daemon-reload",
    )

    code, data = run_json("provision", "v0.12.5", "--inventory", str(inventory), "--serial", "1")

    assert code == 1, data
    first, third = hosts[0], hosts[2]
    assert data["hosts"][first]["status"] == "ok"
    assert "v0.12.5" in data["hosts"][first]["build_output"]
    assert data["hosts"][second]["status"] == "failed"
    # The rollout stopped: the third host was not touched and still runs (and builds on) v0.10.6.
    assert data["hosts"][third]["status"] == "not reached", data["hosts"][third]
    assert "v0.10.6" in data["hosts"][third]["installed_version"]
    code, verified = run_json("verify", "--inventory", str(inventory), "--limit", third)
    assert code == 0, verified
    assert "buildctl github.com/moby/buildkit v0.10.6" in verified["hosts"][third]["build_output"]


@pytest.mark.docker
@pytest.mark.real
def test_rolling_upgrade_succeeds_batch_by_batch(fleet):
    require_real("v0.10.6")
    require_real("v0.12.5")
    hosts, inventory = fleet(2)
    assert run_json("provision", "v0.10.6", "--inventory", str(inventory))[0] == 0

    code, data = run_json("provision", "v0.12.5", "--inventory", str(inventory), "--serial", "1")

    assert code == 0, data
    for host in hosts:
        assert data["hosts"][host]["status"] == "ok"
        assert "v0.12.5" in data["hosts"][host]["installed_version"]
        assert "v0.12.5" in data["hosts"][host]["build_output"]


def test_bad_fleet_options_are_refused_before_anything_runs(tmp_path):
    inventory = write_inventory(tmp_path / "fleet.yml", {"builders": ["nowhere"]})
    for args in (["--serial", "0"], ["--serial", "many"], ["--max-fail", "101"], ["--forks", "0"]):
        result = bkprov("provision", "v0.10.6", "--inventory", str(inventory), *args)
        assert result.returncode == 2, (args, result.stderr)
        assert args[0] in result.stderr
