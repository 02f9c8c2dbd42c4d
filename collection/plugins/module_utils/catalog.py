# Copyright: bkprov developers
# Apache-2.0
"""Resolve entries of the bkprov version catalog (catalog/versions.yml).

Pure Python: the catalog lookup plugin and the bkprov driver both use it, so a version
resolves the same way for roles and driver (derived binaries, flags, registry keys,
defects, runc pairing; nearest versions for an unknown one).
"""

from __future__ import annotations

import difflib
from pathlib import Path

CATALOG = Path(__file__).resolve().parents[2] / "catalog" / "versions.yml"


class UnknownVersion(ValueError):
    """A version the catalog does not list; the message names the nearest known ones."""


def load(path: Path = CATALOG) -> dict:
    import yaml  # PyYAML: a dependency of ansible-core and of the driver

    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def nearest(wanted: str, known: list[str]) -> list[str]:
    return difflib.get_close_matches(wanted, known, n=3, cutoff=0.5) or known[-3:]


def resolve(catalog: dict, version: str) -> dict:
    """The entry of a BuildKit version with its derived fields."""
    versions = catalog["versions"]
    if version not in versions and f"v{version}" in versions:
        version = f"v{version}"
    if version not in versions:
        raise UnknownVersion(
            f"unknown BuildKit version {version!r}. Nearest known: {', '.join(nearest(version, list(versions)))}."
        )
    entry = dict(versions[version], version=version)
    eras = list(catalog["flag_eras"])
    flags: list[str] = []
    registry_keys: list[str] = []
    for era in eras[: eras.index(entry["flags_era"]) + 1]:
        flags += catalog["flag_eras"][era]["flags"]
        registry_keys = catalog["flag_eras"][era].get("registry_keys", registry_keys)
    entry["binaries"] = catalog["contents"][entry["contents"]]
    entry["flags"] = flags
    entry["registry_keys"] = registry_keys
    entry["defect_details"] = [dict(catalog["defects"][d], id=d) for d in entry["defects"]]
    entry["runc"] = resolve_runc(catalog, entry["runc_release"])
    return entry


def resolve_runc(catalog: dict, version: str) -> dict:
    releases = catalog["runc_releases"]
    if version not in releases:
        raise UnknownVersion(
            f"unknown runc version {version!r}. Nearest known: {', '.join(nearest(version, list(releases)))}."
        )
    entry = dict(releases[version], version=version)
    entry["defect_details"] = [dict(catalog["runc_defects"][d], id=d) for d in entry["defects"]]
    return entry
