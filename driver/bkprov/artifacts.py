"""The artifact cache, seen from the driver.

The logic (fetch, verify, lock file) lives once, in the collection's
plugins/module_utils/artifacts.py, which the roles' artifact action also uses;
this module adds what only the CLI needs: which files a release needs, and errors
turned into messages with exit codes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ansible_collections.bkprov.buildkit.plugins.module_utils import artifacts as core

from bkprov import catalog
from bkprov.errors import EXIT_USAGE, BkprovError
from bkprov.paths import cache_dir

BUILDKIT_MEMBERS = ("bin/buildkitd", "bin/buildctl")
GZIP_MAGIC = b"\x1f\x8b"
ELF_MAGIC = b"\x7fELF"


class Unavailable(BkprovError):
    """A release file that could not be fetched (``reason`` "missing") or failed its hash ("checksum")."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Needed:
    kind: str  # buildkit | runc
    version: str
    url: str
    sha256: str | None

    @property
    def relpath(self) -> str:
        return core.relpath_for(self.url)

    @property
    def cached(self) -> bool:
        return (cache_dir() / self.relpath).is_file()


def needed(version: str, with_runc: bool = True) -> list[Needed]:
    release = catalog.get(version)
    items = [Needed("buildkit", release.version, release.url, release.sha256)]
    if with_runc:
        items.append(Needed("runc", release.runc_release, release.runc_url, release.runc_sha256))
    return items


def url_for(kind: str, version: str) -> str:
    return catalog.get(version).url if kind == "buildkit" else catalog.runc_url(version)


def import_file(kind: str, version: str, path: str) -> tuple[core.Artifact, str]:
    """Check a locally built file and put it in the cache; (the artifact, a note on what was checked).

    The file is copied aside first and that copy is checked and imported, so what was checked
    is what lands in the cache; a refused file leaves the cache exactly as it was.
    """
    url = url_for(kind, version)
    source = Path(path)
    if not source.is_file():
        raise BkprovError(f"{path}: no such file", EXIT_USAGE)
    with tempfile.TemporaryDirectory(prefix="bkprov-import-") as tmp:
        copy = Path(tmp) / source.name
        shutil.copyfile(source, copy)
        note = check_buildkit(copy, version, path) if kind == "buildkit" else check_runc(copy, version, path)
        try:
            return core.import_file(url, str(cache_dir()), str(copy)), note
        except core.CacheUnwritable as exc:
            raise BkprovError(str(exc), EXIT_USAGE) from exc
        except core.ArtifactError as exc:
            raise BkprovError(str(exc)) from exc


def check_buildkit(tarball: Path, version: str, shown: str) -> str:
    """Refuse (exit 2) what is not a BuildKit release tarball of ``version``; a note on what was checked."""
    with tarball.open("rb") as handle:
        if handle.read(2) != GZIP_MAGIC:
            raise BkprovError(
                f"{shown} is not a gzip tarball; a BuildKit release is buildkit-VERSION.linux-ARCH.tar.gz", EXIT_USAGE
            )
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            members = {m.name.removeprefix("./"): m for m in archive.getmembers() if m.isfile()}
            missing = [name for name in BUILDKIT_MEMBERS if name not in members]
            if missing:
                raise BkprovError(
                    f"{shown} has no {', '.join(missing)}; "
                    "a BuildKit release tarball holds bin/buildkitd and bin/buildctl",
                    EXIT_USAGE,
                )
            buildctl = tarball.with_name("buildctl")
            source = archive.extractfile(members["bin/buildctl"])
            assert source is not None  # a regular file
            buildctl.write_bytes(source.read())
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BkprovError(f"{shown} is not a readable gzip tarball ({exc})", EXIT_USAGE) from exc
    return check_version(buildctl, ["--version"], version, shown + ":bin/buildctl")


def check_runc(binary: Path, version: str, shown: str) -> str:
    """Refuse (exit 2) what is not a runc executable of release ``version``; a note on what was checked."""
    with binary.open("rb") as handle:
        head = handle.read(4)
    if head != ELF_MAGIC and not head.startswith(b"#!"):
        raise BkprovError(
            f"{shown} is not an executable (no ELF header); a runc release is the runc.ARCH binary", EXIT_USAGE
        )
    return check_version(binary, ["--version"], version, shown)


def names_version(output: str, version: str) -> bool:
    """Whether --version output names ``version``: v0.10.6 in buildctl's, 1.0.2 in runc's ("runc version 1.0.2").

    Build metadata is allowed (1.1.12+noseccomp names v1.1.12); a tag with metadata must match it whole.
    """
    want = version.removeprefix("v")
    first = output.strip().splitlines()[0] if output.strip() else ""  # later lines name other versions (spec:, go:)
    for token in re.findall(r"v?\d+\.\d+\.\d+[^\s]*", first):
        said = token.removeprefix("v")
        if said == want or ("+" not in want and said.split("+")[0] == want):
            return True
    return False


def check_version(binary: Path, argv: list[str], version: str, shown: str) -> str:
    """Run ``binary --version`` where it can run here; refuse (exit 2) when it names another version."""
    binary.chmod(0o755)
    try:
        proc = subprocess.run([str(binary), *argv], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{shown} cannot run here ({exc}); its version was not checked"
    said = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        return f"{shown} --version exited {proc.returncode} here; its version was not checked"
    if not names_version(said, version):
        first = said.splitlines()[0] if said else "nothing"
        raise BkprovError(f"{shown} says {first!r}, not {version}; import it under the version it is", EXIT_USAGE)
    return f"{shown} --version: {said.splitlines()[0]}"


def fetch(item: Needed, progress: core.Progress | None = None) -> core.Artifact:
    try:
        return core.ensure(item.url, str(cache_dir()), os.environ.get("BKPROV_MIRROR", ""), item.sha256 or "", progress)
    except core.ChecksumMismatch as exc:
        raise Unavailable(str(exc), "checksum") from exc
    except core.DownloadError as exc:
        raise Unavailable(str(exc), "missing") from exc
    except core.CacheUnwritable as exc:
        raise BkprovError(str(exc), EXIT_USAGE) from exc
    except core.ArtifactError as exc:
        raise BkprovError(str(exc)) from exc


def lock_entries() -> dict[str, dict[str, str]]:
    return core.read_lock(str(cache_dir()))
