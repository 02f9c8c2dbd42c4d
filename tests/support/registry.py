"""A real registry on 127.0.0.1 (Debian's docker-registry) seeded with images the tests build.

BuildKit before v0.5.0 runs Dockerfile COPY in a helper image pulled from a registry; the
helper here is busybox (Debian's busybox-static) plus the verify role's files/copy.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import docker

HERE = Path(__file__).resolve().parent
COPY_SCRIPT = HERE.parents[1] / "collection" / "roles" / "verify" / "files" / "copy"  # the role's own
COPY_IMAGE = "bkprov/copy:1"
APPLETS = ["sh", "cp", "mkdir", "chown", "tar", "dirname", "ls", "cat"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Registry:
    """docker-registry listening on 127.0.0.1:<port>, storage in a temporary directory."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.workdir = Path(tempfile.mkdtemp(prefix="bkprov-registry-"))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Registry:
        config = self.workdir / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {self.workdir / 'data'}\nhttp:\n  addr: {self.address}\n"
        )
        log = open(self.workdir / "registry.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise RuntimeError(
            f"docker-registry did not listen on {self.address}: {(self.workdir / 'registry.log').read_text()}"
        )

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def seed_copy_helper(self, client: docker.DockerClient) -> str:
        """Build the COPY helper image from busybox-static and push it; return its reference."""
        busybox = shutil.which("busybox") or "/bin/busybox"
        rootfs = self.workdir / "copy-rootfs.tar"
        with tarfile.open(rootfs, "w") as tar:
            tar.add(busybox, arcname="bin/busybox")
            tar.add(COPY_SCRIPT, arcname="bin/copy")
            for applet in APPLETS:
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type = tarfile.SYMTYPE
                info.linkname = "busybox"
                tar.addfile(info)
        reference = f"{self.address}/{COPY_IMAGE}"
        repository, tag = reference.rsplit(":", 1)
        client.api.import_image_from_file(str(rootfs), repository=repository, tag=tag, changes=['CMD ["/bin/sh"]'])
        try:
            for line in client.images.push(repository, tag=tag, stream=True, decode=True):
                if "error" in line:
                    raise RuntimeError(f"pushing {reference} failed: {line['error']}")
        finally:
            client.images.remove(reference, force=True)  # the registry has it; keep the engine clean
        return reference


def registry_available() -> str:
    """Empty when a registry can be run here, else why not."""
    missing = [tool for tool in ("docker-registry", "busybox") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (Debian packages docker-registry, busybox-static)"
    if not os.path.exists("/var/run/docker.sock") and not os.environ.get("DOCKER_HOST"):
        return "no Docker daemon"
    return ""


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.support.registry start|stop STATE_FILE [--port N]` for molecule's prepare/cleanup."""
    import argparse
    import json
    import signal

    parser = argparse.ArgumentParser(prog="python -m tests.support.registry")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("state", help="JSON file recording the running registry")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    state = Path(args.state)
    if args.action == "stop":
        if state.exists():
            info = json.loads(state.read_text())
            with contextlib.suppress(ProcessLookupError):
                os.kill(info["pid"], signal.SIGTERM)
            shutil.rmtree(info["workdir"], ignore_errors=True)
            state.unlink()
        return 0
    why = registry_available()
    if why:
        raise SystemExit(f"cannot run a local registry: {why}")
    registry = Registry(port=args.port or None).start()
    reference = registry.seed_copy_helper(docker.from_env())
    assert registry.process is not None
    state.write_text(
        json.dumps(
            {
                "pid": registry.process.pid,
                "workdir": str(registry.workdir),
                "address": registry.address,
                "copy_image": reference,
            }
        )
    )
    print(registry.address)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
