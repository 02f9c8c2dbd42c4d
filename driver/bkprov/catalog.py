"""The version catalog (collection/catalog/versions.yml), typed for the driver.

Reading and resolving is the collection's (module_utils/catalog.py, which the roles' lookup
uses too); this module turns entries into ``Release`` values and errors into exit codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ansible_collections.bkprov.buildkit.plugins.module_utils import catalog as shared

from bkprov.errors import EXIT_USAGE, BkprovError
from bkprov.paths import catalog_file

# The schema and its check live with the catalog, in the collection (the lookup plugin uses them too).
VERSION_FIELDS = shared.VERSION_FIELDS
RUNC_FIELDS = shared.RUNC_FIELDS
validate = shared.validate


@dataclass(frozen=True)
class Release:
    version: str
    released: str
    tarball: str
    url: str
    sha256: str | None
    binaries: tuple[str, ...]
    runc_pin: str
    runc_release: str
    runc_url: str
    runc_sha256: str | None
    socket_activation: bool
    notify: bool
    copy: str  # "helper-image" | "fileop"
    copy_image: str | None
    flags_era: str
    cgroup_v2: bool
    defects: tuple[str, ...]
    prerelease: bool = False  # a release candidate (-rcN)

    def as_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "released": self.released,
            "runc": self.runc_pin,
            "runc_release": self.runc_release,
            "socket_activation": self.socket_activation,
            "notify": self.notify,
            "copy": self.copy,
            "copy_image": self.copy_image,
            "sha256": self.sha256,
            "tarball": self.tarball,
            "url": self.url,
            "flags_era": self.flags_era,
            "cgroup_v2": self.cgroup_v2,
            "defects": list(self.defects),
            "prerelease": self.prerelease,
        }


def load_raw() -> dict[str, Any]:
    """The expanded, validated catalog with the user's overlay (<cache>/catalog/overlay.yml) merged in."""
    try:
        return shared.load_checked(catalog_file())
    except shared.CatalogError as exc:
        raise BkprovError(str(exc), exit_code=EXIT_USAGE) from exc


def versions(pre: bool = True) -> list[str]:
    """Catalog versions, oldest first; without release candidates unless ``pre``."""
    return list(shared.releases(load_raw(), pre=pre))


def choose(spec: str) -> str:
    """The concrete version a user's spec names: latest, a minor (v0.12), or a version with or without v."""
    try:
        return str(shared.resolve_alias(load_raw(), spec))
    except shared.UnknownVersion as exc:
        raise BkprovError(f"{exc} `bkprov versions` lists all.", exit_code=EXIT_USAGE) from exc


def is_alias(spec: str, version: str) -> bool:
    """Whether ``spec`` named ``version`` indirectly (latest, v0.12), so the choice is worth saying."""
    return spec not in (version, version.removeprefix("v"))


def get(version: str) -> Release:
    """The release a spec names (see ``choose``), typed."""
    version = choose(version)
    try:
        entry = shared.resolve(load_raw(), version)  # the same resolution the roles' lookup does
    except shared.UnknownVersion as exc:
        raise BkprovError(f"{exc} `bkprov versions` lists all.", exit_code=EXIT_USAGE) from exc
    runc = entry["runc"]
    return Release(
        version=entry["version"],
        released=entry["released"],
        tarball=entry["tarball"],
        url=entry["url"],
        sha256=entry["sha256"],
        binaries=tuple(entry["binaries"]),
        runc_pin=entry["runc_pin"]["describe"],
        runc_release=entry["runc_release"],
        runc_url=runc["url"],
        runc_sha256=runc["sha256"],
        socket_activation=entry["socket_activation"],
        notify=entry["notify"],
        copy=entry["dockerfile_copy"]["mode"],
        copy_image=entry["dockerfile_copy"].get("image"),
        flags_era=entry["flags_era"],
        cgroup_v2=entry["cgroup_v2"],
        defects=tuple(entry["defects"]),
        prerelease=bool(entry.get("prerelease")),
    )


def all_releases(pre: bool = True) -> list[Release]:
    return [get(v) for v in versions(pre)]


def runc_url(version: str) -> str:
    """The download URL of a runc release the catalog knows."""
    try:
        return str(shared.resolve_runc(load_raw(), version)["url"])
    except shared.UnknownVersion as exc:
        known = ", ".join(load_raw()["runc_releases"])
        raise BkprovError(f"{exc} Known runc releases: {known}.", exit_code=EXIT_USAGE) from exc
