"""No traceback reaches a user: each failure of the world around bkprov is one line with the
cause and what to do, and a documented exit code (bkprov --help)."""

from __future__ import annotations

import http.server
import json
import os
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def bkprov(*argv: str, env: dict[str, str] | None = None, preexec=None, timeout: int = 300):
    return subprocess.run(
        [sys.executable, "-m", "bkprov.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "1000", **(env or {})},
        preexec_fn=preexec,
        timeout=timeout,
        check=False,
    )


def one_line(result) -> str:
    """The error a user reads: exactly one line, no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# ---------------------------------------------------------------- Docker


@pytest.mark.parametrize(
    "argv",
    [
        ["provision", "v0.10.6", "--name", "bkprov-test-nodaemon"],
        ["create", "bkprov-test-nodaemon"],
        ["destroy", "bkprov-test-nodaemon"],
        ["doctor", "--container", "bkprov-test-nodaemon"],
        ["image"],
    ],
)
def test_a_docker_daemon_that_is_not_running(tmp_path, argv):
    result = bkprov(*argv, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock", "BKPROV_CACHE": str(tmp_path)})
    assert result.returncode == 2
    line = one_line(result)
    assert "cannot reach the Docker daemon" in line and "dockerd" in line and "DOCKER_HOST" in line
    assert not list(tmp_path.rglob("*.tar.gz"))  # refused before fetching anything


class FakeDockerd(http.server.BaseHTTPRequestHandler):
    """A Docker API that answers ping and version, and fails everything else as a sick daemon does."""

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path.endswith("/_ping"):
            self.answer(200, b"OK", "text/plain")
        elif path.endswith("/version"):
            self.answer(200, json.dumps({"ApiVersion": "1.41", "Version": "20.10.0"}).encode())
        else:
            self.answer(500, json.dumps({"message": "fake daemon: the storage driver is wedged"}).encode())

    do_POST = do_DELETE = do_GET

    def answer(self, code: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sick_docker():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeDockerd)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"tcp://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.mark.parametrize(
    "argv", [["destroy", "bkprov-test-sick"], ["list"], ["exec", "bkprov-test-sick", "--", "true"]]
)
def test_a_docker_api_error_is_one_line(tmp_path, sick_docker, argv):
    result = bkprov(*argv, env={"DOCKER_HOST": sick_docker, "BKPROV_CACHE": str(tmp_path)})
    assert result.returncode == 1
    line = one_line(result)
    assert "Docker refused" in line and "the storage driver is wedged" in line and "docker info" in line


# ---------------------------------------------------------------- the cache and the disk


def test_an_unwritable_cache_refuses_an_import(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x\n")
    runc = tmp_path / "runc"
    runc.write_text("#!/bin/sh\necho 'runc version 1.0.2'\n")
    result = bkprov("artifacts", "import", "runc", "v1.0.2", str(runc), env={"BKPROV_CACHE": str(blocker / "c")})
    assert result.returncode == 2
    assert "BKPROV_CACHE" in one_line(result)


def file_size_limit(limit: int):
    """preexec_fn: writes beyond ``limit`` bytes fail with EFBIG, as on a full disk (not killed: SIGXFSZ ignored)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_disk_while_downloading(tmp_path):
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    relpath = "moby/buildkit/releases/download/v0.10.6/buildkit-v0.10.6.linux-amd64.tar.gz"
    (mirror / relpath).parent.mkdir(parents=True)
    (mirror / relpath).write_bytes(os.urandom(3 << 20))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    h:\n      ansible_connection: local\n")
    result = bkprov(
        "provision",
        "v0.10.6",
        "--inventory",
        str(inventory),
        env={"BKPROV_CACHE": str(cache), "BKPROV_MIRROR": str(mirror)},
        preexec=file_size_limit(1 << 20),
    )
    assert result.returncode == 2
    line = one_line(result)
    assert "File too large" in line and "BKPROV_CACHE" in line and "free space" in line
    assert not list(cache.rglob("*.tar.gz*"))  # no partial download left behind


# ---------------------------------------------------------------- QEMU and SSH


def fake_vm_image(cache: Path) -> None:
    """A VM image bkprov takes as current (its recipe hash) with a kernel QEMU cannot load."""
    from bkprov.targets.vm_image import RECIPE

    directory = cache / ".bkprov" / "vm-image" / RECIPE
    directory.mkdir(parents=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(directory / "base.qcow2"), "64M"], check=True)
    (directory / "vmlinux").write_bytes(b"not a kernel")
    (directory / "initrd.cpio").write_bytes(b"not an initrd")
    (directory / "image.json").write_text(json.dumps({"recipe": RECIPE, "kernel": "vmlinuz-fake"}))


@pytest.mark.vm
def test_qemu_that_will_not_start_is_one_line_and_leaves_no_vm(tmp_path):
    for tool in ("qemu-system-x86_64", "qemu-img", "ssh", "ssh-keygen"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            pytest.skip(f"{tool} not installed")
    cache = tmp_path / "cache"
    fake_vm_image(cache)
    result = bkprov(
        "create", "bkprov-test-badkernel", "--target", "vm", "--accel", "tcg", env={"BKPROV_CACHE": str(cache)}
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert lines[-1].startswith("bkprov: QEMU did not start:") and "kernel" in lines[-1]
    assert not (cache / ".bkprov" / "vms" / "bkprov-test-badkernel").exists()


@pytest.mark.parametrize("command", ["verify", "doctor"])
def test_an_ssh_host_that_cannot_be_reached(tmp_path, command):
    result = bkprov(command, "--host", "root@127.0.0.1:1", env={"BKPROV_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 2, result.stdout + result.stderr  # could not be reached / checked
    assert "Traceback" not in result.stdout + result.stderr
    assert "ssh: connect to host 127.0.0.1 port 1: Connection refused" in result.stdout + result.stderr
