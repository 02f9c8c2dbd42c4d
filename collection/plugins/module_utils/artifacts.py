# Copyright: bkprov developers
# Apache-2.0
"""The controller-side artifact cache: fetch once, verify sha256, record hashes.

The cache uses the upstream release layout (``moby/buildkit/releases/download/
<tag>/<file>``), so a cache directory is also a valid mirror for another machine.
``sha256.lock.json`` beside the files records hashes the catalog does not know:
those of imported (custom) builds and those seen on first use. Used by the
``bkprov.buildkit.artifact`` action and by the bkprov driver.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterator, Optional

UPSTREAM = "https://github.com/"
LOCK_FILE = "sha256.lock.json"
CHUNK = 1 << 20

Progress = Callable[[int, Optional[int]], None]


def default_cache_dir() -> str:
    """The controller cache: $BKPROV_CACHE, else ~/.cache/bkprov (the one place this default lives)."""
    return os.path.expanduser(os.environ.get("BKPROV_CACHE") or "~/.cache/bkprov")


class ArtifactError(Exception):
    """A failure the user can act on; the message says what and how."""


class DownloadError(ArtifactError):
    """The file could not be fetched from upstream or the mirror."""


class ChecksumMismatch(ArtifactError):
    """The file is there but its sha256 is not the expected one."""


class CacheUnwritable(ArtifactError):
    """The cache directory cannot be created or written (permissions, read-only, full disk)."""


# Errors of the local disk, not of the network: retrying a download does not help.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR)


def unwritable(path: str, exc: OSError) -> CacheUnwritable:
    return CacheUnwritable(
        f"cannot write {path} ({exc.strerror}): free space or fix permissions there, "
        "or point BKPROV_CACHE at a writable directory with room"
    )


@dataclass
class Artifact:
    path: str
    relpath: str
    sha256: str
    origin: str  # catalog | import | first-use
    downloaded: bool
    warning: str = ""


def relpath_for(url: str) -> str:
    """The cache/mirror path of an upstream URL (the URL without https://github.com/)."""
    if url.startswith(UPSTREAM):
        return url[len(UPSTREAM) :]
    return url.split("://", 1)[-1]


def source_for(url: str, mirror: str) -> str:
    """Where to fetch from: the mirror (URL or directory) in place of github.com, else the URL."""
    if not mirror:
        return url
    return mirror.rstrip("/") + "/" + relpath_for(url)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def file_lock(path: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (made if missing) for the with-block; waits for other holders."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def locked(cache_dir: str, relpath: str = "") -> Iterator[None]:
    """Serialise cache writers (two provisions at once share one cache); with ``relpath``, only of that file."""
    with contextlib.ExitStack() as stack:
        try:
            locks = os.path.join(cache_dir, ".locks") if relpath else cache_dir
            os.makedirs(locks, exist_ok=True)
            # A per-file lock is named by its path's hash: nothing in .locks/ looks like an artifact.
            name = hashlib.sha256(relpath.encode()).hexdigest()[:24] + ".lock" if relpath else ".lock"
            stack.enter_context(file_lock(os.path.join(locks, name)))
        except OSError as exc:
            raise unwritable(cache_dir, exc) from exc
        yield


def read_lock(cache_dir: str) -> dict:
    try:
        with open(os.path.join(cache_dir, LOCK_FILE), encoding="utf-8") as handle:
            return json.load(handle).get("files", {})
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise ArtifactError(
            f"{os.path.join(cache_dir, LOCK_FILE)} is not valid JSON ({exc}); fix or delete it"
        ) from exc


def record(cache_dir: str, relpath: str, sha256: str, origin: str) -> None:
    """Write one hash into the lock file (atomically; caller holds ``locked``)."""
    files = read_lock(cache_dir)
    files[relpath] = {
        "sha256": sha256,
        "origin": origin,
        "recorded": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".lock-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"files": dict(sorted(files.items()))}, handle, indent=2)
        handle.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache doubles as a mirror
    os.replace(tmp, os.path.join(cache_dir, LOCK_FILE))


def _transient(exc: Exception) -> bool:
    """Whether another attempt may succeed: not for a name that does not resolve or a 4xx answer."""
    if isinstance(getattr(exc, "reason", None), socket.gaierror):
        return False  # offline, or no such host: waiting does not change that
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code in (408, 429)
    return True


def _download(source: str, dest: str, progress: Optional[Progress], attempts: int = 3) -> None:
    """Fetch ``source`` (URL or local path) to ``dest`` via a partial file; never leave a partial behind."""
    partial = dest + ".partial"
    last_error: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            if "://" not in source or source.startswith("file://"):
                local = source[len("file://") :] if source.startswith("file://") else source
                if not os.path.isfile(local):
                    raise DownloadError(f"the mirror has no {local}")
                shutil.copyfile(local, partial)
            else:
                with urllib.request.urlopen(source, timeout=60) as response, open(partial, "wb") as out:
                    total = response.headers.get("Content-Length")
                    done = 0
                    for block in iter(lambda: response.read(CHUNK), b""):
                        out.write(block)
                        done += len(block)
                        if progress:
                            progress(done, int(total) if total else None)
                if total and done != int(total):
                    raise OSError(f"connection closed after {done} of {total} bytes")
            os.replace(partial, dest)
            return
        except ArtifactError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise
        except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
            last_error = exc
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
                raise unwritable(partial, exc) from exc
            if attempt == attempts or not _transient(exc):
                break
            time.sleep(2**attempt)
    raise DownloadError(
        f"could not download {source} ({last_error}). Offline? Point BKPROV_MIRROR at a mirror "
        "(URL or directory in the release layout) or add the file with `bkprov artifacts import`."
    )


def ensure(
    url: str,
    cache_dir: str,
    mirror: str = "",
    expected: str = "",
    progress: Optional[Progress] = None,
) -> Artifact:
    """Make ``url``'s file present and verified in the cache; return where it is.

    Expected hash, strongest first: the hash recorded when the file was imported,
    the catalog's ``expected``, the hash recorded on first use. With none, the
    file's hash is recorded now (trust on first use) and a warning returned.
    """
    relpath = relpath_for(url)
    dest = os.path.join(cache_dir, relpath)
    downloaded = False
    # One download per file (concurrent fetches of it wait, then find it); the cache-wide lock is
    # held only to check and record hashes, so one slow download never blocks the other files.
    with locked(cache_dir, relpath):
        if not os.path.isfile(dest):
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            _download(source_for(url, mirror), dest, progress)
            downloaded = True
    with locked(cache_dir):
        actual = sha256_of(dest)
        lock = read_lock(cache_dir).get(relpath)
        if lock and lock["origin"] == "import":
            want, origin = lock["sha256"], "import"
        elif expected:
            want, origin = expected, "catalog"
        elif lock:
            want, origin = lock["sha256"], lock["origin"]
        else:
            record(cache_dir, relpath, actual, "first-use")
            return Artifact(
                dest,
                relpath,
                actual,
                "first-use",
                downloaded,
                f"no published sha256 for {relpath}; recorded {actual} on first use "
                f"in {os.path.join(cache_dir, LOCK_FILE)} and enforced from now on",
            )
        if actual != want:
            raise ChecksumMismatch(
                f"sha256 mismatch for {dest}: expected {want} ({origin}), actual {actual}. "
                "Nothing was installed. Delete the file to fetch it again, or import your own build "
                "with `bkprov artifacts import`."
            )
        return Artifact(dest, relpath, actual, origin, downloaded)


def import_file(url: str, cache_dir: str, source_file: str) -> Artifact:
    """Put a locally built file in the cache in place of ``url``'s and record its hash."""
    if not os.path.isfile(source_file):
        raise ArtifactError(f"{source_file}: no such file")
    relpath = relpath_for(url)
    dest = os.path.join(cache_dir, relpath)
    with locked(cache_dir):
        partial = dest + ".partial"
        try:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(source_file, partial)
            os.replace(partial, dest)
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise unwritable(dest, exc) from exc
        digest = sha256_of(dest)
        record(cache_dir, relpath, digest, "import")
    return Artifact(dest, relpath, digest, "import", True)
