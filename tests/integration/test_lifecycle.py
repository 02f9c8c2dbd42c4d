"""Lifecycle on real targets: socket access by group, a killed provision, uninstall, the matrix."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from bkprov import artifacts
from bkprov.paths import cache_dir
from bkprov.targets import container as ct
from tests.support.helpers import bkprov, require_real, sh

pytestmark = [pytest.mark.docker, pytest.mark.real]


def test_group_members_can_build_others_cannot_and_uninstall_keeps_data(make_target):
    require_real("v0.10.6")
    name = make_target()
    assert bkprov("provision", "v0.10.6", "--name", name).returncode == 0
    sh(name, "useradd -m -G buildkit alice && useradd -m bob")

    member = sh(name, "su alice -c 'buildctl debug workers'")
    assert member.returncode == 0, member.stderr
    other = sh(name, "su bob -c 'buildctl debug workers' 2>&1")
    assert other.returncode != 0 and "permission denied" in other.stdout

    removed = bkprov("uninstall", name)
    assert removed.returncode == 0, removed.stderr
    state = sh(
        name,
        "ls -A /usr/local/bin; ls /etc/systemd/system | grep -c buildkit; getent group buildkit; "
        "ls /var/lib/buildkit | wc -l",
    ).stdout.split()
    assert state == ["0", state[-1]] and state[-1] != "0"  # no links, no units, no group; data kept
    assert sh(name, "systemctl is-active buildkit.socket").stdout.strip() == "inactive"

    purged = bkprov("uninstall", name, "--purge")
    assert (
        purged.returncode == 0
        and sh(name, "test -e /var/lib/buildkit/buildkitd.toml || ls -A /var/lib/buildkit").stdout == ""
    )


def test_a_killed_provision_is_converged_by_the_next_run(docker_client):
    require_real("v0.10.6")
    name = "bkprov-test-killed"
    ct.destroy(docker_client, name)
    rng = random.Random(7)
    try:
        for delay in (rng.uniform(2, 5), rng.uniform(5, 9)):
            proc = subprocess.Popen(
                [sys.executable, "-m", "bkprov.cli", "provision", "v0.10.6", "--name", name],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)  # the driver only; its ansible-playbook may run on or die
            proc.wait()
            # Whatever state this left, no half-unpacked release is linked as installed.
            links = sh(
                name,
                "for l in /usr/local/bin/buildkitd /usr/local/bin/buildctl; do "
                "[ -L $l ] && [ ! -e $l ] && echo dangling $l; done; ls /usr/local/lib/bkprov/buildkit 2>/dev/null",
            )
            assert "dangling" not in links.stdout
        time.sleep(3)  # let an orphaned ansible-playbook finish or die
        again = bkprov("provision", "v0.10.6", "--name", name, "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["build_output"].startswith("buildctl github.com/moby/buildkit v0.10.6")
    finally:
        ct.destroy(docker_client, name)


def test_matrix_reports_each_version_including_missing_artifacts(tmp_path, docker_client):
    require_real("v0.10.6")
    report = tmp_path / "report"
    empty_mirror = tmp_path / "mirror"
    empty_mirror.mkdir()
    # v0.9.0 is not cached and the (empty, local) mirror has nothing: reported, not dropped.
    result = bkprov(
        "matrix",
        "v0.10.6",
        "v0.9.0",
        "--jobs",
        "2",
        "--report",
        str(report),
        env={"BKPROV_MIRROR": str(empty_mirror), "COLUMNS": "200"},
    )
    assert result.returncode == 1  # not all ok
    rows = {r["version"]: r for r in json.loads(report.with_suffix(".json").read_text())}
    assert rows["v0.10.6"]["phase"] == "ok" and rows["v0.10.6"]["build_ok"] is True
    assert rows["v0.10.6"]["build_output"].startswith("buildctl github.com/moby/buildkit v0.10.6")
    assert rows["v0.9.0"]["phase"] == "artifacts missing"
    assert "v0.9.0" in report.with_suffix(".md").read_text()
    # Cleaned up: no matrix target left.
    assert not [t for t in ct.list_targets(docker_client) if t.name.startswith("bkprov-matrix-")]


def test_matrix_tells_a_failed_build_from_a_failed_install(tmp_path, docker_client):
    """A release installed and started whose verify build does not print its version: 'build failed',
    reached verify, provision ok, build failed, in the JSON and the Markdown report."""
    require_real("v0.10.6")
    cache, fake = tmp_path / "cache", "v0.10.99"
    (cache / "catalog").mkdir(parents=True)
    (cache / "catalog" / "overlay.yml").write_text(f'versions:\n  {fake}:\n    released: "2030-01-01"\n')
    # v0.10.6's real files under the name of a release that does not exist: it installs and starts,
    # and its build prints v0.10.6 where the verify role wants v0.10.99.
    for item in artifacts.needed("v0.10.6"):
        relpath = item.relpath.replace("v0.10.6", fake)
        (cache / relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cache_dir() / item.relpath, cache / relpath)
    report = tmp_path / "report"
    result = bkprov(
        "matrix", fake, "--report", str(report), "--prefix", "bkprov-test-mx", env={"BKPROV_CACHE": str(cache)}
    )
    assert result.returncode == 1, result.stderr
    (row,) = json.loads(report.with_suffix(".json").read_text())
    assert (row["phase"], row["reached"], row["provision_ok"], row["build_ok"]) == (
        "build failed",
        "verify",
        True,
        False,
    )
    assert f"| {fake} | container | build failed | verify | True | False |" in report.with_suffix(".md").read_text()
    assert not [t for t in ct.list_targets(docker_client) if t.name.startswith("bkprov-test-mx")]
