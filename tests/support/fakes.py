"""Fake BuildKit releases for tests that need a daemon's lifecycle but not real builds.

The fake ``buildkitd`` is a Python script: it tells systemd it is ready (Type=notify) and answers
"ok" on its socket (systemd's with socket activation, else its own); with ``fail`` it prints an error
and exits 1 at start, like a buildkitd missing a dependency. The fake ``buildctl`` answers
``--version``, ``debug workers`` (when it can connect to the socket) and ``build`` (printing the
RUN line the verify role looks for). They speak no gRPC and run no containers.

    python -m tests.support.fakes DIR v0.10.6 [--fail]   # writes DIR/buildkit-<v>.linux-amd64.tar.gz and DIR/runc.amd64
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import tarfile
from pathlib import Path

FAIL_MESSAGE = 'buildkitd: failed to find git binary: exec: "git": executable file not found in $PATH (bkprov fake)'

BUILDKITD = r"""#!/usr/bin/python3
# Fake buildkitd (bkprov tests): ready for systemd, answers "ok" on its socket (its own or systemd's), sleeps.
import os, socket, sys, threading
args = sys.argv[1:]
if "--version" in args:
    print("buildkitd github.com/moby/buildkit @VERSION@ fake")
    sys.exit(0)
if @FAIL@:
    print(@MESSAGE@, file=sys.stderr, flush=True)
    sys.exit(1)
listeners = []
if os.environ.get("LISTEN_FDS"):  # socket activation (--addr fd://): systemd passes fd 3
    listeners.append(socket.socket(fileno=3))
for i, arg in enumerate(args):
    if arg == "--addr" and args[i + 1].startswith("unix://"):
        path = args[i + 1][len("unix://"):]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(path)
        sock.listen(16)
        listeners.append(sock)


def serve(listener):
    while True:
        conn, _ = listener.accept()
        conn.sendall(b"ok\n")
        conn.close()


for listener in listeners:
    threading.Thread(target=serve, args=(listener,), daemon=True).start()
notify = os.environ.get("NOTIFY_SOCKET")
if notify:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.connect("\0" + notify[1:] if notify.startswith("@") else notify)
    sock.send(b"READY=1")
threading.Event().wait()
"""

BUILDCTL = r"""#!/usr/bin/python3
# Fake buildctl (bkprov tests): --version, debug workers, build; connects to the socket only.
import socket, sys
args = sys.argv[1:]
if "--version" in args:
    print("buildctl github.com/moby/buildkit @VERSION@ fake")
    sys.exit(0)
addr = args[args.index("--addr") + 1] if "--addr" in args else "unix:///run/buildkit/buildkitd.sock"
try:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(5)
    sock.connect(addr[len("unix://"):])
    if sock.recv(3) != b"ok\n":  # systemd holds the socket; only a running daemon answers
        raise OSError("connection closed")
    sock.close()
except OSError as exc:
    print(f"error: connection error: {exc}", file=sys.stderr)
    sys.exit(1)
if "workers" in args:
    print("ID\tPLATFORMS\nfake\tlinux/amd64")
elif "build" in args:
    print('#5 [2/2] RUN ["/bkprov-verify", "--version"]')
    print("#5 0.101 buildctl github.com/moby/buildkit @VERSION@ fake")
    print("#5 DONE 0.1s")
"""

RUNC = "#!/bin/sh\necho 'runc version @VERSION@'\necho 'commit: fake'\n"


def _script(text: str, version: str, fail: bool = False) -> bytes:
    return (
        text.replace("@VERSION@", version).replace("@FAIL@", repr(fail)).replace("@MESSAGE@", repr(FAIL_MESSAGE))
    ).encode()


def tools_on_path(directory: Path, monkeypatch, tools: dict[str, str]) -> Path:
    """Stand-in commands (name -> shell script body) in ``directory``, put first on PATH."""
    directory.mkdir(exist_ok=True)
    for name, body in tools.items():
        (directory / name).write_text("#!/bin/sh\n" + body)
        (directory / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
    return directory


def systemctl_showing(path: Path) -> str:
    """The body of a systemctl whose `show` prints the file ``path``; every other call succeeds."""
    return f'[ "$1" = show ] && cat {path}\nexit 0\n'


def script_tarball(
    path: Path, names: tuple[str, ...] = ("buildctl", "buildkitd", "buildkit-runc"), tag: str = "v1", mode: int = 0o755
) -> str:
    """A tarball in the release layout (bin/<name>) of tiny scripts printing "<name> <tag>"; its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            data = f"#!/bin/sh\necho {name} {tag}\n".encode()
            info = tarfile.TarInfo(f"bin/{name}")
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def buildkit_tarball(path: Path, version: str, fail: bool = False) -> str:
    """Write a fake release tarball (bin/buildkitd, bin/buildctl, bin/buildkit-runc); return its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    files = {
        "buildkitd": _script(BUILDKITD, version, fail),
        "buildctl": _script(BUILDCTL, version),
        "buildkit-runc": _script(RUNC, "1.0.0-fake"),
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"bin/{name}")
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def runc_binary(path: Path, release: str) -> str:
    """Write a fake runc.amd64 whose --version names ``release`` (v1.0.2 → 1.0.2); return its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_script(RUNC, release.removeprefix("v")))
    path.chmod(0o755)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dir", type=Path)
    parser.add_argument("version")
    parser.add_argument("--runc", default="v1.0.2")
    parser.add_argument("--fail", action="store_true")
    args = parser.parse_args()
    tarball = args.dir / f"buildkit-{args.version}.linux-amd64.tar.gz"
    buildkit_tarball(tarball, args.version, args.fail)
    runc_binary(args.dir / "runc.amd64", args.runc)
    print(tarball)


if __name__ == "__main__":
    main()


def fake_cache(cache: Path, version: str = "v0.10.6", runc: str = "v1.0.2", fail: bool = False) -> dict[str, str]:
    """An artifact cache holding a fake release of ``version`` and its runc, imported as a user would
    (`bkprov artifacts import`); returns the environment that points bkprov and the roles at it."""
    import os
    import subprocess
    import sys

    files = cache.parent / f"{cache.name}-files"
    tarball = files / f"buildkit-{version}.linux-amd64.tar.gz"
    buildkit_tarball(tarball, version, fail)
    runc_binary(files / "runc.amd64", runc)
    env = {"BKPROV_CACHE": str(cache), "BKPROV_MIRROR": ""}
    for kind, release, path in (("buildkit", version, tarball), ("runc", runc, files / "runc.amd64")):
        subprocess.run(
            [sys.executable, "-m", "bkprov.cli", "artifacts", "import", kind, release, str(path)],
            check=True,
            capture_output=True,
            env={**os.environ, **env},
        )
    return env
