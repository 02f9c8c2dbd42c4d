"""The artifact cache, seen from the driver.

The logic (fetch, verify, lock file) lives once, in the collection's
plugins/module_utils/artifacts.py, which the roles' artifact action also uses;
this module adds what only the CLI needs: which files a release needs, and errors
turned into messages with exit codes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ansible_collections.bkprov.buildkit.plugins.module_utils import artifacts as core

from bkprov import catalog
from bkprov.errors import BkprovError
from bkprov.paths import cache_dir


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


def import_file(kind: str, version: str, path: str) -> core.Artifact:
    try:
        return core.import_file(url_for(kind, version), str(cache_dir()), path)
    except core.ArtifactError as exc:
        raise BkprovError(str(exc)) from exc


def fetch(item: Needed, progress: core.Progress | None = None) -> core.Artifact:
    try:
        return core.ensure(item.url, str(cache_dir()), os.environ.get("BKPROV_MIRROR", ""), item.sha256 or "", progress)
    except core.ChecksumMismatch as exc:
        raise Unavailable(str(exc), "checksum") from exc
    except core.DownloadError as exc:
        raise Unavailable(str(exc), "missing") from exc
    except core.ArtifactError as exc:
        raise BkprovError(str(exc)) from exc


def lock_entries() -> dict[str, dict[str, str]]:
    return core.read_lock(str(cache_dir()))
