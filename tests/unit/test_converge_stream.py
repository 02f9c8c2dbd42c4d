"""The converge core reads an artifact once, as it arrives: unpacked (or installed) while hashed, kept by a
rename, and nothing of it left behind when its sha256 is not the verified one. Real files and tarballs."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from ansible_collections.bkprov.buildkit.plugins.module_utils import converge as cv
from ansible_collections.bkprov.buildkit.plugins.plugin_utils import piped

from tests.support.fakes import script_tarball


def release(tmp_path: Path, digest: str) -> dict:
    return {
        "root": str(tmp_path / "lib"),
        "dest": str(tmp_path / "lib" / "v1"),
        "bin_dir": str(tmp_path / "bin"),
        "keep": str(tmp_path / "cache" / "release.tar.gz"),
        "required": ["buildctl", "buildkitd", "buildkit-runc"],
        "sha256": digest,
    }


def pipe(params: dict, artifact: bytes) -> dict:
    """converge run as the action runs it (plugin_utils/piped.py): its code, its arguments, then the artifact."""
    data = piped.stdin_for("converge:main", dict(params, artifact_follows=True), call="main", tail=artifact)
    proc = subprocess.run([sys.executable, "-c", piped.BOOTSTRAP], input=data, capture_output=True, check=True)
    return json.loads(proc.stdout.decode().splitlines()[-1])


def leftovers(directory: Path) -> list[str]:
    names = (p.name for p in directory.rglob("*") if p.name != cv.MARKER)
    return sorted(n for n in names if n.startswith((".bkprov-", ".unpack-")))


def test_a_streamed_tarball_is_unpacked_and_kept_by_rename(tmp_path):
    source = tmp_path / "v1.tar.gz"
    spec = release(tmp_path, script_tarball(source))
    out = pipe({"release": spec}, source.read_bytes())
    assert out["changed"] is True and out["install"]["unpacked"] is True
    assert (tmp_path / "lib" / "v1" / "bin" / "buildkitd").read_text() == "#!/bin/sh\necho buildkitd v1\n"
    assert os.readlink(tmp_path / "bin" / "buildctl") == str(tmp_path / "lib" / "v1" / "bin" / "buildctl")
    assert (tmp_path / "cache" / "release.tar.gz").read_bytes() == source.read_bytes()
    assert oct((tmp_path / "cache" / "release.tar.gz").stat().st_mode & 0o777) == "0o644"
    assert leftovers(tmp_path) == []


def test_a_tarball_with_another_sha256_changes_nothing_and_leaves_nothing(tmp_path):
    source = tmp_path / "v1.tar.gz"
    spec = release(tmp_path, script_tarball(source))
    tampered = tmp_path / "other.tar.gz"
    script_tarball(tampered, tag="evil")
    out = pipe({"release": spec}, tampered.read_bytes())
    assert out["failed"] is True and "another sha256 than the verified" in out["msg"]
    assert not (tmp_path / "lib" / "v1").exists() and not (tmp_path / "bin").exists()
    assert not (tmp_path / "cache" / "release.tar.gz").exists()
    assert leftovers(tmp_path) == []


def test_a_truncated_tarball_is_refused(tmp_path):
    source = tmp_path / "v1.tar.gz"
    spec = release(tmp_path, script_tarball(source))
    out = pipe({"release": spec}, source.read_bytes()[:-40])
    assert out["failed"] is True and "another sha256 than the verified" in out["msg"]
    assert not (tmp_path / "lib" / "v1").exists() and leftovers(tmp_path) == []


def test_an_artifact_sent_to_an_up_to_date_host_is_read_and_dropped(tmp_path):
    source = tmp_path / "v1.tar.gz"
    spec = release(tmp_path, script_tarball(source))
    assert pipe({"release": spec}, source.read_bytes())["changed"] is True
    again = pipe({"release": spec}, source.read_bytes() * 3)  # a wrong guess: the host had it
    assert again["changed"] is False and again["needs_artifact"] is False
    assert leftovers(tmp_path) == []


def test_a_streamed_binary_replaces_the_old_one_only_when_verified(tmp_path):
    runc = tmp_path / "runc-new"
    runc.write_text("#!/bin/sh\necho 'runc version 1.0.2'\n")
    digest = hashlib.sha256(runc.read_bytes()).hexdigest()
    path = tmp_path / "sbin" / "runc"
    path.parent.mkdir()
    path.write_text("old")
    spec = {"binary": {"path": str(path), "sha256": digest, "version": "1.0.2"}}
    bad = pipe(spec, b"#!/bin/sh\necho 'runc version 6.6.6'\n")
    assert bad["failed"] is True and path.read_text() == "old" and leftovers(tmp_path) == []
    good = pipe(spec, runc.read_bytes())
    assert good["changed"] is True and path.read_bytes() == runc.read_bytes()
    assert oct(path.stat().st_mode & 0o777) == "0o755" and leftovers(tmp_path) == []


def random_release(path: Path, payload: bytes) -> Path:
    """A release tarball whose three binaries are ``payload`` (random bytes: gzip cannot shrink them)."""
    with tarfile.open(path, "w:gz") as tar:
        for name in ("buildctl", "buildkitd", "buildkit-runc"):
            info = tarfile.TarInfo(f"bin/{name}")
            info.size, info.mode = len(payload), 0o755
            tar.addfile(info, io.BytesIO(payload))
    return path


def test_a_release_of_many_chunks_arrives_byte_for_byte(tmp_path):
    """Larger than the reader thread's chunks (1 MiB) and not compressible: tar's small reads cross chunk ends."""
    payload = os.urandom(3 * cv.Artifact.CHUNK + 12345)
    source = random_release(tmp_path / "big.tar.gz", payload)
    spec = release(tmp_path, hashlib.sha256(source.read_bytes()).hexdigest())
    out = pipe({"release": spec}, source.read_bytes())
    assert out["changed"] is True, out
    for name in ("buildctl", "buildkitd", "buildkit-runc"):
        assert (tmp_path / "lib" / "v1" / "bin" / name).read_bytes() == payload
    assert (tmp_path / "cache" / "release.tar.gz").read_bytes() == source.read_bytes()
    assert leftovers(tmp_path) == []


class DroppedConnection(io.RawIOBase):
    """The first ``keep`` bytes of a file, then the error of a connection that went away."""

    def __init__(self, path: Path, keep: int) -> None:
        self.data = io.BytesIO(path.read_bytes()[:keep])

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.data.read(size)
        if not data:
            raise ConnectionResetError("connection reset by peer")
        return data


def test_a_stream_that_breaks_off_changes_nothing_and_leaves_nothing(tmp_path):
    payload = os.urandom(2 * cv.Artifact.CHUNK)
    source = random_release(tmp_path / "big.tar.gz", payload)
    spec = release(tmp_path, hashlib.sha256(source.read_bytes()).hexdigest())
    out = cv.converge({"release": spec}, cv.Artifact(DroppedConnection(source, keep=source.stat().st_size // 2)))
    assert out["failed"] is True and "another sha256 than the verified" in out["msg"]
    assert not (tmp_path / "lib" / "v1").exists() and not (tmp_path / "bin").exists()
    assert not (tmp_path / "cache" / "release.tar.gz").exists()
    assert leftovers(tmp_path) == []
