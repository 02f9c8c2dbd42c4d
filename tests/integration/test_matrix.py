"""`bkprov matrix` on real targets: never more than --jobs of them alive, each freed when its row
is final; and a container whose systemd dies at boot says why.

The matrix runs over fake releases (tests/support/fakes.py) whose buildkitd exits 1 at start, in a
cache of their own: every row makes a real systemd container and runs the real playbooks, but
fails at start without real BuildKit binaries.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from bkprov import artifacts
from bkprov.errors import BkprovError
from bkprov.targets import container as ct
from tests.support import fakes
from tests.support.helpers import bkprov

pytestmark = pytest.mark.docker

# Versions before socket activation (fd://) with Type=notify: the fake buildkitd's exit fails
# `systemctl start` itself. (Socket-activated ones would leave the fake buildctl a socket that
# systemd holds, and its fake build could pass.)
FAKE_VERSIONS = ("v0.7.2", "v0.8.0", "v0.8.1", "v0.8.2", "v0.8.3")


def import_fake(version: str, workdir: Path, env: dict[str, str]) -> None:
    """A fake release whose buildkitd fails at start, and the runc it pairs with, into env's cache."""
    tarball = workdir / f"buildkit-{version}.linux-amd64.tar.gz"
    fakes.buildkit_tarball(tarball, version, fail=True)
    imported = bkprov("artifacts", "import", "buildkit", version, str(tarball), env=env)
    assert imported.returncode == 0, imported.stderr
    for item in artifacts.needed(version):
        if item.kind == "runc":
            runc = workdir / f"runc-{item.version}"
            fakes.runc_binary(runc, item.version)
            imported = bkprov("artifacts", "import", "runc", item.version, str(runc), env=env)
            assert imported.returncode == 0, imported.stderr


class AliveSampler(threading.Thread):
    """`docker ps -a` filtered by bkprov's target label and a name prefix, every 0.2 s."""

    def __init__(self, prefix: str) -> None:
        super().__init__(daemon=True)
        self.prefix = prefix
        self.most = 0  # the most targets that existed at one sample
        self.seen: set[str] = set()
        self.samples = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            listed = subprocess.run(
                [
                    "docker",
                    "ps",
                    "-a",
                    "--filter",
                    f"label={ct.KIND_LABEL}=container",
                    "--filter",
                    f"name=^{self.prefix}-",
                    "--format",
                    "{{.Names}}",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            names = set(listed.stdout.split())
            self.most = max(self.most, len(names))
            self.seen |= names
            self.samples += 1
            time.sleep(0.2)


def test_matrix_never_has_more_than_jobs_targets_alive(tmp_path, docker_client, base_image):
    env = {"BKPROV_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"}
    for version in FAKE_VERSIONS:
        import_fake(version, tmp_path, env)
    prefix = f"bkprov-mx-{uuid.uuid4().hex[:6]}"
    report = tmp_path / "report"
    sampler = AliveSampler(prefix)
    sampler.start()
    try:
        result = bkprov(
            "matrix", *FAKE_VERSIONS, "--jobs", "2", "--prefix", prefix, "--report", str(report), env=env, timeout=1200
        )
    finally:
        sampler.stopping.set()
        sampler.join()
    assert result.returncode == 1, result.stderr  # the fakes never start: not all ok

    names = {f"{prefix}-{v.replace('.', '-')}" for v in FAKE_VERSIONS}
    assert sampler.seen == names, f"every row made its own target: {sampler.seen}"
    assert 1 <= sampler.most <= 2, f"{sampler.most} targets alive at once with --jobs 2"
    rows = {r["version"]: r for r in json.loads(report.with_suffix(".json").read_text())}
    assert sorted(rows) == sorted(FAKE_VERSIONS)
    for version, row in rows.items():
        assert row["phase"] == "install failed" and row["provision_ok"] is False, (version, row)
        assert "buildkit" in row["cause"], (version, row)
    left = docker_client.containers.list(all=True, filters={"name": f"^{prefix}-"})
    assert not left, [c.name for c in left]


def test_keep_is_refused_before_anything_when_inotify_cannot_hold_the_targets(tmp_path, monkeypatch, capsys):
    """With --keep every target stays alive: refused (exit 2, nothing made) when the limit is too low."""
    from bkprov import cli

    use = ct.inotify_use()
    limits = tmp_path / "inotify"
    limits.mkdir()
    # Room for one more systemd container, not for five.
    (limits / "max_user_instances").write_text(f"{use.instances + ct.INOTIFY_PER_TARGET + 1}\n")
    (limits / "max_user_watches").write_text(f"{use.max_watches}\n")
    monkeypatch.setattr(ct, "INOTIFY_SYSCTL", limits)
    prefix = f"bkprov-mx-{uuid.uuid4().hex[:6]}"

    code = cli.main(["matrix", *FAKE_VERSIONS, "--keep", "--prefix", prefix, "--report", str(tmp_path / "r")])
    message = capsys.readouterr().err
    assert code == 2, message
    assert "cannot hold 5 more systemd containers" in message
    assert "sysctl -w fs.inotify.max_user_instances=" in message and "without --keep" in message
    assert not (tmp_path / "r.json").exists()
    assert not subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"name=^{prefix}-"], capture_output=True, text=True, check=True
    ).stdout.strip()


BOOT_DEATH_DOCKERFILE = """\
FROM {base}
CMD ["/bin/sh", "-c", "echo 'stand-in for systemd: Failed to mount API filesystems: Operation not permitted'; exit 3"]
"""


def test_a_container_that_dies_at_boot_says_exit_code_state_error_and_console(tmp_path, docker_client, base_image):
    """An image whose PID 1 exits at once, made through the normal create path."""
    (tmp_path / "Dockerfile").write_text(BOOT_DEATH_DOCKERFILE.format(base=base_image))
    tag = f"bkprov-test/boot-death:{uuid.uuid4().hex[:6]}"
    docker_client.images.build(path=str(tmp_path), tag=tag, rm=True)
    name = f"bkprov-test-death-{uuid.uuid4().hex[:6]}"
    try:
        with pytest.raises(BkprovError) as caught:
            ct.create(docker_client, name, tag, "", print)
    finally:
        ct.destroy(docker_client, name)
        docker_client.images.remove(tag, force=True)
    message = str(caught.value)
    first = message.splitlines()[0]
    assert first == (
        f"container {name} exited while booting systemd (exit code 3): "
        "stand-in for systemd: Failed to mount API filesystems: Operation not permitted"
    )
    assert "Docker's State.Error: (empty)" in message
    assert "fs.inotify.max_user_instances=" in message  # the inotify check


def test_systemd_without_inotify_dies_at_boot_and_the_message_has_its_console(docker_client, base_image):
    """The real failure of a host out of inotify instances, made with a seccomp filter: systemd's
    inotify_init1 gets EMFILE, as when fs.inotify.max_user_instances is used up."""
    profile = json.dumps(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["inotify_init", "inotify_init1"], "action": "SCMP_ACT_ERRNO", "errnoRet": 24}],
        }
    )
    extra = {
        "cap_add": ["ALL"],
        "cap_drop": ct.bounding_set_missing(),
        "security_opt": [f"seccomp={profile}", "apparmor=unconfined"],
    }
    name = f"bkprov-test-inotify-{uuid.uuid4().hex[:6]}"
    try:
        made = ct._run(docker_client, base_image, name, "", extra, "test", "none")
        with pytest.raises(BkprovError) as caught:
            ct.wait_for_systemd(made)
    finally:
        ct.destroy(docker_client, name)
    message = str(caught.value)
    assert message.splitlines()[0].startswith(
        f"container {name} exited while booting systemd (exit code 255): "
        "Failed to allocate manager object: Too many open files"
    ), message
    assert "Docker's State.Error:" in message
    assert "Failed to create control group inotify object: Too many open files" in message  # the console
    assert "\x1b[" not in message  # colours stripped
    # The inotify check, with the host's own numbers.
    assert message.splitlines()[-1].startswith("inotify: root holds ") or "sysctl -w fs.inotify" in message
