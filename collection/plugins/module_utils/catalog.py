# Copyright: bkprov developers
# Apache-2.0
"""Read, check and resolve the bkprov version catalog (catalog/versions.yml).

Pure Python (PyYAML only): the catalog lookup plugin and the bkprov driver both import
this module by its real name, so a version resolves and validates the same way for roles
and driver.

The file is compact: an entry names only what its release does not share with its minor
series (``series:``) or with every release (``defaults:``); tarball name, URL and the
runc pairing of a release pin are derived. ``load()`` returns the *expanded* catalog,
every version entry complete, with the user's overlay (``<cache>/catalog/overlay.yml``,
written by ``bkprov versions --refresh``) merged in. Treat what it returns as read-only:
it is cached per file and mtime, in the process and (checked) as JSON in the controller cache.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

try:
    from .artifacts import default_cache_dir
except ImportError:  # loaded by file path (no package): use the sibling file, still the one default
    import importlib.util as _util
    import sys as _sys

    _spec = _util.spec_from_file_location("bkprov_catalog_artifacts", Path(__file__).with_name("artifacts.py"))
    if _spec is None or _spec.loader is None:
        raise ImportError("cannot load artifacts.py beside " + __file__) from None
    _artifacts = _util.module_from_spec(_spec)
    _sys.modules[_spec.name] = _artifacts  # dataclasses look their module up while executing
    _spec.loader.exec_module(_artifacts)
    default_cache_dir = _artifacts.default_cache_dir

CATALOG = Path(__file__).resolve().parents[2] / "catalog" / "versions.yml"
OVERLAY_NAME = "catalog/overlay.yml"

UPSTREAM_TARBALL = "buildkit-{tag}.linux-amd64.tar.gz"
UPSTREAM_URL = "https://github.com/moby/buildkit/releases/download/{tag}/{tarball}"
RUNC_URL = "https://github.com/opencontainers/runc/releases/download/{tag}/runc.amd64"

# Fields every (expanded) version entry has, with their types.
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
    "prerelease": bool,
    "host_requirements": dict,
    "buildctl_frontend_opt": str,
}
# Fields an entry may also carry: the tag's commit, who published sha256, where the entry came
# from (catalog/overlay), and what `bkprov versions --refresh` derived or could not know.
OPTIONAL_FIELDS = {"commit": str, "sha256_source": str, "origin": str, "refresh": dict}
RUNC_FIELDS = {"url": str, "sha256": (str, type(None)), "defects": list}
SECTIONS = ("contents", "flag_eras", "defects", "runc_releases", "runc_defects", "versions")
OVERLAY_SECTIONS = ("schema", "versions", "runc_releases")
HOST_REQUIREMENT_LEVELS = ("required", "optional")

_TAG = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-(.+))?$")
_MINOR = re.compile(r"^v?(\d+)\.(\d+)$")
_RUNC_RELEASE = re.compile(r"^v\d+\.\d+\.\d+(?:-rc\d+)?$")


class UnknownVersion(ValueError):
    """A version the catalog does not list; the message names the nearest known ones."""


class CatalogError(ValueError):
    """The catalog or the user's overlay is unreadable or fails validation; the message lists why."""


# ---------------------------------------------------------------- versions as numbers


def version_key(tag: str) -> Tuple:
    """Sort key of a release tag: v0.12.0-rc1 < v0.12.0-rc2 < v0.12.0 < v0.12.1; non-tags sort last."""
    match = _TAG.match(tag)
    if not match:
        return (1 << 30, 0, 0, 1, tag)
    major, minor, patch, pre = match.groups()
    if pre is None:
        return (int(major), int(minor), int(patch), 1, "")
    digits = re.sub(r"\D", "", pre)
    return (int(major), int(minor), int(patch), 0, f"{pre.rstrip('0123456789')}{int(digits or 0):08d}")


def is_prerelease(tag: str) -> bool:
    match = _TAG.match(tag)
    return bool(match and match.group(4))


def minor_of(tag: str) -> str:
    """The series key of a tag: v0.12.5 -> v0.12."""
    match = _TAG.match(tag)
    return f"v{match.group(1)}.{match.group(2)}" if match else ""


# ---------------------------------------------------------------- reading


def _loader() -> Any:
    import yaml  # PyYAML: a dependency of ansible-core and of the driver

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml parses the catalog ~10x faster


def _read_yaml(path: Path) -> Any:
    import yaml

    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_loader())  # a SafeLoader


def overlay_path(cache_dir: Optional[Union[str, Path]] = None) -> Path:
    """The user's catalog overlay: <cache>/catalog/overlay.yml (never inside the installed package)."""
    return Path(cache_dir or default_cache_dir()) / OVERLAY_NAME


def expand(doc: Dict[str, Any]) -> Dict[str, Any]:
    """The catalog with every version entry complete: defaults < series[minor] < entry, plus derived fields.

    Idempotent, so expanding an expanded catalog changes nothing.
    """
    out = dict(doc)
    defaults = doc.get("defaults") or {}
    series = doc.get("series") or {}
    assets = doc.get("assets") or {}
    tarball_tpl = assets.get("tarball", UPSTREAM_TARBALL)
    url_tpl = assets.get("url", UPSTREAM_URL)
    runc_tpl = assets.get("runc_url", RUNC_URL)
    versions = {}
    for tag, given in (doc.get("versions") or {}).items():
        if not isinstance(given, dict):
            versions[tag] = given  # validate() reports it
            continue
        entry = {**_plain(defaults), **_plain(series.get(minor_of(tag)) or {}), **given}
        entry.setdefault("tarball", tarball_tpl.format(tag=tag))
        entry.setdefault("url", url_tpl.format(tag=tag, tarball=entry["tarball"]))
        pin = entry.get("runc_pin")
        if "runc_release" not in entry and isinstance(pin, dict) and _RUNC_RELEASE.match(str(pin.get("describe"))):
            entry["runc_release"] = pin["describe"]  # a release pin pairs with itself
        entry.setdefault("prerelease", is_prerelease(tag))
        entry.setdefault("origin", "catalog")
        versions[tag] = entry
    out["versions"] = dict(sorted(versions.items(), key=lambda item: version_key(item[0])))
    runcs = {}
    for tag, given in (doc.get("runc_releases") or {}).items():
        entry = dict(given) if isinstance(given, dict) else {}
        if not isinstance(given, dict) and given is not None:
            runcs[tag] = given
            continue
        entry.setdefault("url", runc_tpl.format(tag=tag))
        entry.setdefault("sha256", None)
        entry.setdefault("defects", [])
        entry.setdefault("origin", "catalog")
        runcs[tag] = entry
    out["runc_releases"] = dict(sorted(runcs.items(), key=lambda item: version_key(item[0])))
    return out


def _plain(mapping: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in mapping.items() if not k.startswith("_")}  # _note etc. are comments for readers


def merge_overlay(doc: Dict[str, Any], overlay: Dict[str, Any]) -> Dict[str, Any]:
    """The catalog with the overlay's versions and runc releases added or overridden (key by key)."""
    out = dict(doc)
    for section in ("versions", "runc_releases"):
        merged = dict(doc.get(section) or {})
        for tag, entry in (overlay.get(section) or {}).items():
            base = merged.get(tag) if isinstance(merged.get(tag), dict) else {}
            merged[tag] = {**base, **(entry if isinstance(entry, dict) else {}), "origin": "overlay"}
        out[section] = merged
    extra = sorted(set(overlay) - set(OVERLAY_SECTIONS))
    if extra:
        out["_overlay_problems"] = [
            f"unknown section(s) {', '.join(extra)}; an overlay holds only versions and runc_releases"
        ]
    return out


_CACHE: Dict[Tuple, Dict[str, Any]] = {}
STORED_PREFIX = ".expanded-"  # <cache>/catalog/.expanded-<key>.json: the checked catalog, as JSON


def _stamp(path: Path) -> Optional[Tuple[int, int]]:
    try:
        info = path.stat()
    except OSError:  # absent (or a file where its directory should be): no such file
        return None
    return info.st_mtime_ns, info.st_size


# Every Ansible task that reads the catalog runs in a new worker process, so the in-process cache above
# serves one task only; parsing and checking the YAML again costs ~50 ms a time. A checked catalog is kept
# as JSON in the controller cache, under a key made of both files' paths and stamps and this module's own
# (a newer bkprov expands differently), and read back in ~2 ms.
def _stored_path(key: Tuple) -> Path:
    digest = hashlib.sha256(repr((key, _stamp(Path(__file__)))).encode("utf-8")).hexdigest()[:24]
    return Path(default_cache_dir()) / "catalog" / (STORED_PREFIX + digest + ".json")


def _read_stored(key: Tuple) -> Optional[Dict[str, Any]]:
    try:
        with open(_stored_path(key), encoding="utf-8") as handle:
            stored = json.load(handle)
    except (OSError, ValueError):  # none yet, or unreadable: parse the YAML
        return None
    return stored if isinstance(stored, dict) and stored.get("_problems") == [] else None


def _store(key: Tuple, catalog: Dict[str, Any]) -> None:
    """Keep a checked catalog for the next process; silently not where the cache is not writable, and not
    before bkprov made its cache (a command that only reads, or refuses its input, leaves nothing behind)."""
    path = _stored_path(key)
    if not path.parent.parent.is_dir():
        return
    try:
        text = json.dumps(catalog)
        if json.loads(text) != catalog:  # something JSON does not carry (a date, a tuple): keep parsing
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=STORED_PREFIX, suffix=".tmp", dir=str(path.parent))
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
        for old in path.parent.glob(STORED_PREFIX + "*.json"):
            if old != path:
                old.unlink()
    except (OSError, TypeError, ValueError):
        pass


def _key(path: Union[str, Path], overlay: Union[str, Path, bool, None]) -> Tuple[Tuple, Path, Optional[Path]]:
    """(cache key, catalog path, overlay path or None): the key changes when either file does."""
    path = Path(path)
    over = None if overlay is False else Path(overlay) if overlay not in (None, True) else overlay_path()
    return (str(path), _stamp(path), str(over), _stamp(over) if over else None), path, over


def load(path: Union[str, Path] = CATALOG, overlay: Union[str, Path, bool, None] = None) -> Dict[str, Any]:
    """The expanded catalog with the user's overlay merged in (cached per path and stamp, in this process and,
    once checked, on disk).

    ``overlay``: None = <cache>/catalog/overlay.yml when it exists, a path = that file, False = none.
    Overlay entries carry ``origin: overlay``, the shipped ones ``origin: catalog``.
    """
    key, path, over = _key(path, overlay)
    cached = _CACHE.get(key) or _read_stored(key)
    if cached is not None:
        _CACHE.clear()
        _CACHE[key] = cached
        return cached
    doc = _read_yaml(path)
    if not isinstance(doc, dict):
        raise CatalogError(f"the catalog {path} is not a YAML mapping")
    overlay_doc = None
    if over is not None and key[3] is not None:
        try:
            overlay_doc = _read_yaml(over)
        except Exception as exc:  # a half-written or hand-broken overlay must say where it is
            raise CatalogError(f"the catalog overlay {over} is unreadable ({exc}); delete it or refresh again") from exc
        if overlay_doc is not None and not isinstance(overlay_doc, dict):
            raise CatalogError(f"the catalog overlay {over} is not a YAML mapping; delete it or refresh again")
    catalog = expand(merge_overlay(expand(doc), overlay_doc) if overlay_doc else doc)
    catalog["_sources"] = {"catalog": str(path), "overlay": str(over) if overlay_doc is not None else None}
    _CACHE.clear()  # one live catalog per process is enough; an edited file gets a new key
    _CACHE[key] = catalog
    return catalog


def source_text(catalog: Dict[str, Any]) -> str:
    """Which files a loaded catalog came from, for messages."""
    sources = catalog.get("_sources") or {"catalog": str(CATALOG), "overlay": None}
    return sources["catalog"] + (f" with the overlay {sources['overlay']}" if sources["overlay"] else "")


def load_checked(path: Union[str, Path] = CATALOG, overlay: Union[str, Path, bool, None] = None) -> Dict[str, Any]:
    """load(), validated once per loaded catalog; CatalogError lists every problem."""
    catalog = load(path, overlay)
    if "_problems" not in catalog:
        catalog["_problems"] = validate(catalog)
        if not catalog["_problems"]:
            _store(_key(path, overlay)[0], catalog)
    if catalog["_problems"]:
        raise CatalogError(f"the catalog {source_text(catalog)} is broken: " + "; ".join(catalog["_problems"]))
    return catalog


# ---------------------------------------------------------------- validation


def validate(catalog: Dict[str, Any]) -> List[str]:
    """Every problem in a catalog document (compact or expanded); empty when it is sound."""
    problems: List[str] = []
    for section in SECTIONS:
        if not isinstance(catalog.get(section), dict):
            problems.append(f"section {section!r} missing")
    if problems:
        return problems
    problems += list(catalog.get("_overlay_problems") or [])
    doc = expand(catalog)
    for version, entry in doc["versions"].items():
        problems += _version_problems(doc, version, entry)
    for version, entry in doc["runc_releases"].items():
        if not isinstance(entry, dict):
            problems.append(f"runc {version}: entry is not a mapping")
            continue
        problems += [f"runc {version}: missing {f}" for f in RUNC_FIELDS if f not in entry]
        problems += [
            f"runc {version}: {f} has the wrong type"
            for f, kind in RUNC_FIELDS.items()
            if f in entry and not isinstance(entry[f], kind)
        ]
        if isinstance(entry.get("defects"), list):
            problems += [
                f"runc {version}: unknown defect {d}" for d in entry["defects"] if d not in doc["runc_defects"]
            ]
    for defect, facts in doc["defects"].items():
        linked = facts.get("bundled_runc_defect") if isinstance(facts, dict) else None
        if linked is not None and linked not in doc["runc_defects"]:
            problems.append(f"defect {defect}: bundled_runc_defect {linked} not in runc_defects")
    previous = None
    for era, facts in doc["flag_eras"].items():
        if not isinstance(facts, dict) or not isinstance(facts.get("flags"), list):
            problems.append(f"flag era {era}: needs a flags list")
            continue
        since = facts.get("since")
        if since is not None and previous is not None and version_key(str(since)) <= version_key(previous):
            problems.append(f"flag era {era}: since {since} is not after the previous era's")
        previous = str(since) if since is not None else previous
    for minor, facts in (doc.get("series") or {}).items():
        if not _MINOR.match(str(minor)) or not isinstance(facts, dict):
            problems.append(f"series {minor}: must be vMAJOR.MINOR with a mapping of version fields")
            continue
        unknown = sorted(set(facts) - set(VERSION_FIELDS))
        if unknown:
            problems.append(f"series {minor}: unknown field(s) {', '.join(unknown)}")
    return problems


def _version_problems(doc: Dict[str, Any], version: str, entry: Any) -> List[str]:
    where = f"{version}{' (overlay)' if isinstance(entry, dict) and entry.get('origin') == 'overlay' else ''}"
    if not isinstance(entry, dict):
        return [f"{where}: entry is not a mapping"]
    if not _TAG.match(version) or not version.startswith("v"):
        return [f"{where}: not a release tag (vMAJOR.MINOR.PATCH[-PRE])"]
    shape = [f"{where}: missing {field}" for field in VERSION_FIELDS if field not in entry]
    shape += [
        f"{where}: {field} has the wrong type"
        for field, kind in VERSION_FIELDS.items()
        if field in entry and not isinstance(entry[field], kind)
    ]
    shape += [
        f"{where}: unknown field {field}"
        for field in entry
        if field not in VERSION_FIELDS and field not in OPTIONAL_FIELDS
    ]
    shape += [
        f"{where}: {field} has the wrong type"
        for field, kind in OPTIONAL_FIELDS.items()
        if field in entry and not isinstance(entry[field], kind)
    ]
    if shape:
        return shape
    problems = []
    if entry["contents"] not in doc["contents"]:
        problems.append(f"{where}: unknown contents {entry['contents']}")
    if entry["flags_era"] not in doc["flag_eras"]:
        problems.append(f"{where}: unknown flags_era {entry['flags_era']}")
    if entry["runc_release"] not in doc["runc_releases"]:
        problems.append(f"{where}: runc_release {entry['runc_release']} not in runc_releases")
    problems += [f"{where}: unknown defect {d}" for d in entry["defects"] if d not in doc["defects"]]
    copy = entry["dockerfile_copy"]
    if copy.get("mode") not in ("helper-image", "fileop"):
        problems.append(f"{where}: dockerfile_copy.mode must be helper-image or fileop")
    if copy.get("mode") == "helper-image" and not copy.get("image"):
        problems.append(f"{where}: helper-image COPY needs dockerfile_copy.image")
    if not entry["url"].endswith("/" + entry["tarball"]) or f"/download/{version}/" not in entry["url"]:
        problems.append(f"{where}: url does not match tarball and tag")
    if entry["sha256"] is not None:
        if not re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]):
            problems.append(f"{where}: sha256 is not 64 hex digits")
        elif not entry.get("sha256_source"):
            problems.append(f"{where}: sha256 needs sha256_source (who published it)")
    if "describe" not in entry["runc_pin"]:
        problems.append(f"{where}: runc_pin needs describe")
    if entry["prerelease"] != is_prerelease(version):
        problems.append(f"{where}: prerelease must be {is_prerelease(version)} for this tag")
    for name, level in entry["host_requirements"].items():
        if level not in HOST_REQUIREMENT_LEVELS:
            problems.append(f"{where}: host_requirements.{name} must be one of {', '.join(HOST_REQUIREMENT_LEVELS)}")
        elif name not in (doc.get("host_requirement_notes") or {}):
            problems.append(f"{where}: host requirement {name} has no entry in host_requirement_notes")
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry["released"]):
        problems.append(f"{where}: released must be YYYY-MM-DD")
    if "commit" in entry and not re.fullmatch(r"[0-9a-f]{40}", entry["commit"]):
        problems.append(f"{where}: commit is not 40 hex digits")
    era = doc["flag_eras"].get(entry["flags_era"]) or {}
    if era.get("since") and version_key(version) < version_key(str(era["since"])):
        problems.append(f"{where}: flags_era {entry['flags_era']} starts at {era['since']}, after this version")
    return problems


# ---------------------------------------------------------------- resolution


def nearest(wanted: str, known: List[str]) -> List[str]:
    """Known versions closest to ``wanted``: its neighbours by version number, else by spelling."""
    # Spelling is a poor guide for numbers (v0.14 "looks like" v0.4.0), so versions get neighbours.
    if _TAG.match(wanted) or _MINOR.match(wanted):
        probe = wanted if _TAG.match(wanted) else f"{wanted}.0"
        probe = probe if probe.startswith("v") else f"v{probe}"
        ordered = sorted(known, key=version_key)
        if not is_prerelease(probe) and any(not is_prerelease(v) for v in ordered):
            ordered = [v for v in ordered if not is_prerelease(v)]  # suggest releases for a release
        below = [v for v in ordered if version_key(v) < version_key(probe)]
        above = [v for v in ordered if version_key(v) > version_key(probe)]
        picks = below[-1:] + above[:1]
        if picks:
            return picks
    return difflib.get_close_matches(wanted, known, n=3, cutoff=0.5) or known[-3:]


def _unknown(kind: str, wanted: str, known: List[str]) -> UnknownVersion:
    return UnknownVersion(f"unknown {kind} version {wanted!r}. Nearest known: {', '.join(nearest(wanted, known))}.")


def releases(catalog: Dict[str, Any], pre: bool = False) -> List[str]:
    """Versions oldest first; release candidates only with ``pre``."""
    tags = sorted(catalog["versions"], key=version_key)
    return tags if pre else [t for t in tags if not is_prerelease(t)]


def resolve_alias(catalog: Dict[str, Any], spec: str) -> str:
    """The concrete version a user's spec means.

    ``latest`` = the newest release (no RC); ``v0.12``/``0.12`` = the newest release of that
    minor; a full version (with or without ``v``) = itself. Otherwise UnknownVersion with the nearest.
    """
    spec = str(spec).strip()
    stable = releases(catalog)
    if spec == "latest":
        if not stable:
            raise UnknownVersion("the catalog lists no release, so 'latest' means nothing")
        return stable[-1]
    minor = _MINOR.match(spec)
    if minor:
        prefix = f"v{minor.group(1)}.{minor.group(2)}."
        matching = [t for t in stable if t.startswith(prefix)]
        if matching:
            return matching[-1]
        raise _unknown("BuildKit", spec, list(catalog["versions"]))
    versions = catalog["versions"]
    for candidate in (spec, f"v{spec}"):
        if candidate in versions:
            return candidate
    raise _unknown("BuildKit", spec, list(versions))


def resolve(catalog: Dict[str, Any], version: str) -> Dict[str, Any]:
    """The entry of a BuildKit version (a full tag, with or without v) with its derived fields."""
    versions = catalog["versions"]
    if version not in versions and f"v{version}" in versions:
        version = f"v{version}"
    if version not in versions:
        raise _unknown("BuildKit", version, list(versions))
    if "prerelease" not in versions[version]:  # a document read without load(): expand it first
        catalog = expand(catalog)
        versions = catalog["versions"]
    entry = dict(versions[version], version=version)
    eras = list(catalog["flag_eras"])
    flags: List[str] = []
    registry_keys: List[str] = []
    for era in eras[: eras.index(entry["flags_era"]) + 1]:
        flags += catalog["flag_eras"][era]["flags"]
        registry_keys = catalog["flag_eras"][era].get("registry_keys", registry_keys)
    entry["binaries"] = catalog["contents"][entry["contents"]]
    entry["flags"] = flags
    entry["registry_keys"] = registry_keys
    entry["defect_details"] = [dict(catalog["defects"][d], id=d) for d in entry["defects"]]
    entry["host_requirements"] = dict(entry.get("host_requirements") or {})
    notes = catalog.get("host_requirement_notes") or {}
    entry["host_requirement_details"] = [
        {"name": name, "level": level, "why": (notes.get(name) or {}).get(level, "")}
        for name, level in entry["host_requirements"].items()
    ]
    commit = entry.get("commit")
    entry["same_commit_as"] = [v for v, e in versions.items() if commit and v != version and e.get("commit") == commit]
    entry["runc"] = resolve_runc(catalog, entry["runc_release"])
    return entry


def resolve_runc(catalog: Dict[str, Any], version: str) -> Dict[str, Any]:
    releases_ = catalog["runc_releases"]
    if version not in releases_:
        raise _unknown("runc", version, list(releases_))
    entry = dict(releases_[version], version=version)
    entry.setdefault("url", RUNC_URL.format(tag=version))
    entry.setdefault("sha256", None)
    entry.setdefault("defects", [])
    entry["defect_details"] = [dict(catalog["runc_defects"][d], id=d) for d in entry["defects"]]
    return entry
