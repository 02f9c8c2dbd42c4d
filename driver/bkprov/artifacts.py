"""The artifact cache, seen from the driver.

The logic (fetch, verify, lock file) lives once, in the collection's
plugins/module_utils/artifacts.py, which the roles' artifact action also uses;
this module loads that file and adds what only the CLI needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import ModuleType

from bkprov import catalog
from bkprov.errors import BkprovError
from bkprov.paths import cache_dir, collection_module


def core() -> ModuleType:
    return collection_module("artifacts")


@dataclass
class Needed:
    kind: str  # buildkit | runc
    version: str
    url: str
    sha256: str | None

    @property
    def relpath(self) -> str:
        return core().relpath_for(self.url)

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
    if kind == "buildkit":
        return catalog.get(version).url
    runc = catalog.load_raw()["runc_releases"].get(version)
    if runc is None:
        known = ", ".join(catalog.load_raw()["runc_releases"])
        raise BkprovError(f"unknown runc version {version!r}; known: {known}", exit_code=2)
    return runc["url"]


def import_file(kind: str, version: str, path: str) -> object:
    try:
        return core().import_file(url_for(kind, version), str(cache_dir()), path)
    except core().ArtifactError as exc:
        raise BkprovError(str(exc)) from exc


def fetch(item: Needed, progress=None) -> object:  # noqa: ANN001 - callback from rich
    try:
        return core().ensure(
            item.url, str(cache_dir()), os.environ.get("BKPROV_MIRROR", ""), item.sha256 or "", progress
        )
    except core().ArtifactError as exc:
        raise BkprovError(str(exc)) from exc


def lock_entries() -> dict[str, dict[str, str]]:
    return core().read_lock(str(cache_dir()))
