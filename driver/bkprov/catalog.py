"""The version catalog (collection/catalog/versions.yml), typed for the driver."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml

from bkprov.errors import BkprovError
from bkprov.paths import catalog_file, collection_module

# Fields every version entry must have (the schema check in tests uses this).
VERSION_FIELDS = {
    "released": str,
    "tarball": str,
    "url": str,
    "sha256": (str, type(None)),
    "contents": str,
    "provenance": bool,
    "runc_pin": dict,
    "runc_release": str,
    "socket_activation": bool,
    "notify": bool,
    "dockerfile_copy": dict,
    "flags_era": str,
    "cgroup_v2": bool,
    "defects": list,
}
RUNC_FIELDS = {"url": str, "sha256": (str, type(None)), "defects": list}
EXIT_UNKNOWN = 2


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
        }


def validate(raw: dict[str, Any]) -> list[str]:
    """Every problem in a catalog document; empty when it is sound."""
    problems: list[str] = []
    for section in ("contents", "flag_eras", "defects", "runc_releases", "runc_defects", "versions"):
        if not isinstance(raw.get(section), dict):
            problems.append(f"section {section!r} missing")
    if problems:
        return problems
    for version, entry in raw["versions"].items():
        shape = [f"{version}: missing {field}" for field in VERSION_FIELDS if field not in entry]
        shape += [
            f"{version}: {field} has the wrong type"
            for field, kind in VERSION_FIELDS.items()
            if field in entry and not isinstance(entry[field], kind)
        ]
        if shape:
            problems += shape
            continue
        if entry["contents"] not in raw["contents"]:
            problems.append(f"{version}: unknown contents {entry['contents']}")
        if entry["flags_era"] not in raw["flag_eras"]:
            problems.append(f"{version}: unknown flags_era {entry['flags_era']}")
        if entry["runc_release"] not in raw["runc_releases"]:
            problems.append(f"{version}: runc_release {entry['runc_release']} not in runc_releases")
        problems += [f"{version}: unknown defect {d}" for d in entry["defects"] if d not in raw["defects"]]
        if entry["dockerfile_copy"].get("mode") not in ("helper-image", "fileop"):
            problems.append(f"{version}: dockerfile_copy.mode must be helper-image or fileop")
        if entry["dockerfile_copy"].get("mode") == "helper-image" and not entry["dockerfile_copy"].get("image"):
            problems.append(f"{version}: helper-image COPY needs dockerfile_copy.image")
        if not entry["url"].endswith("/" + entry["tarball"]) or f"/download/{version}/" not in entry["url"]:
            problems.append(f"{version}: url does not match tarball and tag")
        if entry["sha256"] is not None and not re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]):
            problems.append(f"{version}: sha256 is not 64 hex digits")
        if "describe" not in entry["runc_pin"]:
            problems.append(f"{version}: runc_pin needs describe")
    for version, entry in raw["runc_releases"].items():
        problems += [f"runc {version}: missing {f}" for f in RUNC_FIELDS if f not in entry]
    return problems


@cache
def load_raw() -> dict[str, Any]:
    with catalog_file().open(encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    problems = validate(raw)
    if problems:
        raise BkprovError(f"the catalog {catalog_file()} is broken: " + "; ".join(problems))
    return raw


def versions() -> list[str]:
    return list(load_raw()["versions"])


def get(version: str) -> Release:
    core = collection_module("catalog")  # the same resolution the roles' lookup does
    try:
        entry = core.resolve(load_raw(), version)
    except core.UnknownVersion as exc:
        raise BkprovError(f"{exc} `bkprov versions` lists all.", exit_code=EXIT_UNKNOWN) from exc
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
    )


def all_releases() -> list[Release]:
    return [get(v) for v in versions()]
