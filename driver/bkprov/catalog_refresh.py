"""New BuildKit releases without a new bkprov: read the upstream release list, write the user's overlay.

``refresh()`` reads the release list, and for every release the shipped catalog does not list it
derives an entry from the release's own files and, for what those files cannot say, from the era
rules of the newest known release. The entries go to ``<cache>/catalog/overlay.yml`` (never into
the installed package), which module_utils/catalog.py merges into every catalog read, so roles,
lookup and driver see the new versions at once. The report says, per version, which facts were
derived, which were carried over from the newest known release, and which are unknown.

Where it reads (``base`` = BKPROV_MIRROR, a URL or a directory, else upstream):

- release list: ``<base>/moby/buildkit/releases.json``;
  upstream ``https://api.github.com/repos/moby/buildkit/releases?per_page=100&page=N``
- release asset: ``<base>/moby/buildkit/releases/download/<tag>/<file>`` (the artifact cache's layout);
  upstream ``https://github.com/moby/buildkit/releases/download/<tag>/<file>``
- a source file at the tag: ``<base>/moby/buildkit/raw/<tag>/<path>`` (``Dockerfile`` for the runc pin,
  ``cmd/buildkitd/main*.go`` for the flags); upstream ``https://raw.githubusercontent.com/moby/buildkit/<tag>/<path>``

``releases.json`` has the shape of GitHub's "list releases" API answer (a JSON array; a mirror
can save that answer as is): per release ``tag_name``, ``draft``, ``prerelease``,
``published_at``, optionally ``target_commitish`` and ``assets`` (``name``, and ``digest``
``sha256:…`` where GitHub publishes it). It is ``releases.json`` rather than ``releases`` because
a directory mirror already has a ``releases/`` directory for the downloads.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ansible_collections.bkprov.buildkit.plugins.module_utils import catalog as shared
from ansible_collections.bkprov.buildkit.plugins.module_utils.artifacts import default_cache_dir

from bkprov.errors import EXIT_USAGE, BkprovError

UPSTREAM_API = "https://api.github.com/repos/moby/buildkit/releases"
UPSTREAM_DOWNLOAD = "https://github.com"
UPSTREAM_RAW = "https://raw.githubusercontent.com/moby/buildkit"
MAX_PAGES = 20  # 2,000 releases; upstream has ~150
TIMEOUT = 30
# Files whose cli flag names make up buildkitd's flag set (the era rule's input).
FLAG_FILES = ("cmd/buildkitd/main.go", "cmd/buildkitd/main_oci_worker.go", "cmd/buildkitd/main_containerd_worker.go")
FLAG = re.compile(r"cli\.\w*Flag\{\s*Name:\s*\"([^\"]+)\"", re.S)
# Facts no release file states: they follow the newest known release (its era).
ERA_FACTS = ("contents", "socket_activation", "notify", "dockerfile_copy", "cgroup_v2", "host_requirements")


@dataclass
class VersionReport:
    """What one release's entry rests on: fact -> where it came from."""

    version: str
    template: str  # the known release whose era facts it shares: newest of its minor, else newest overall
    derived: dict[str, str] = field(default_factory=dict)
    from_era: dict[str, str] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)


@dataclass
class RefreshReport:
    source: str
    overlay: Path
    newest_known: str
    added: list[VersionReport] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    written: bool = False

    def lines(self) -> list[str]:
        out = [f"release list: {self.source}"]
        if not self.added:
            out.append(f"no release newer than the catalog's; newest known: {self.newest_known}")
        for item in self.added:
            out.append(f"{item.version}: added to {self.overlay}")
            out.append("  derived: " + "; ".join(f"{k} {v}" for k, v in item.derived.items()))
            if item.from_era:
                facts = "; ".join(f"{k} {v}" for k, v in item.from_era.items())
                out.append(f"  as {item.template} (newest known release of its era): {facts}")
            if item.unknown:
                out.append("  unknown: " + "; ".join(f"{k} ({v})" for k, v in item.unknown.items()))
        out += [f"{tag}: skipped ({why})" for tag, why in self.skipped]
        return out


class Source:
    """Reads the three kinds of documents from a mirror (URL or directory) or from upstream."""

    def __init__(self, base: str | None) -> None:
        self.base = (base or "").rstrip("/")
        self.is_dir = bool(self.base) and not re.match(r"^[a-z][a-z0-9+.-]*://", self.base)

    @property
    def release_list(self) -> str:
        return f"{self.base}/moby/buildkit/releases.json" if self.base else UPSTREAM_API

    def asset(self, tag: str, name: str) -> str:
        return f"{self.base or UPSTREAM_DOWNLOAD}/moby/buildkit/releases/download/{tag}/{name}"

    def raw(self, tag: str, path: str) -> str:
        return f"{self.base}/moby/buildkit/raw/{tag}/{path}" if self.base else f"{UPSTREAM_RAW}/{tag}/{path}"

    def read(self, where: str) -> bytes | None:
        """The document, or None when it does not exist (404 / missing file); other failures raise."""
        if self.is_dir:
            path = Path(where)
            return path.read_bytes() if path.is_file() else None
        request = urllib.request.Request(where, headers={"User-Agent": "bkprov", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise BkprovError(f"could not read {where} (HTTP {exc.code} {exc.reason})") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise BkprovError(
                f"could not read {where} ({getattr(exc, 'reason', exc)}). Offline? Point BKPROV_MIRROR at a "
                "mirror (URL or directory) that serves moby/buildkit/releases.json in the upstream layout."
            ) from exc

    def releases(self) -> list[dict[str, Any]]:
        if self.base:
            pages = [self._json(self.release_list)]
        else:  # the API pages its answer
            pages = []
            for page in range(1, MAX_PAGES + 1):
                answer = self._json(f"{self.release_list}?per_page=100&page={page}")
                pages.append(answer)
                if len(answer) < 100:
                    break
        found = [release for answer in pages for release in answer]
        if not all(isinstance(r, dict) and isinstance(r.get("tag_name"), str) for r in found):
            raise BkprovError(f"{self.release_list} is not a release list (objects with tag_name)", EXIT_USAGE)
        return found

    def _json(self, where: str) -> list[dict[str, Any]]:
        data = self.read(where)
        if data is None:
            raise BkprovError(f"no release list at {where}; a mirror serves it as moby/buildkit/releases.json")
        try:
            answer = json.loads(data)
        except ValueError as exc:
            raise BkprovError(f"the release list {where} is not JSON ({exc})") from exc
        if not isinstance(answer, list):
            raise BkprovError(f"the release list {where} is not a JSON array of releases")
        return answer


def refresh(
    base_url: str | None = None, cache: Path | None = None, log: Callable[[str], None] = print
) -> RefreshReport:
    """Add every release the catalog does not know to the user's overlay; see the module docstring."""
    source = Source(base_url if base_url is not None else os.environ.get("BKPROV_MIRROR") or None)
    overlay = shared.overlay_path(cache or default_cache_dir())
    shipped = shared.load(overlay=False)
    known = shared.releases(shipped)
    report = RefreshReport(source=source.release_list, overlay=overlay, newest_known=known[-1])
    log(f"Reading the BuildKit release list from {source.release_list}")
    entries: dict[str, dict[str, Any]] = {}
    runcs: dict[str, dict[str, Any]] = {}
    for release in sorted(source.releases(), key=lambda r: shared.version_key(r["tag_name"])):
        tag = release["tag_name"]
        if release.get("draft"):
            continue
        if not re.fullmatch(r"v\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?", tag):
            report.skipped.append((tag, "not a BuildKit release tag"))
            continue
        if tag in shipped["versions"]:
            continue
        log(f"Deriving {tag}")
        same_minor = [v for v in known if shared.minor_of(v) == shared.minor_of(tag)]
        derived = derive(source, release, shipped, (same_minor or known)[-1])
        if derived is None:
            report.skipped.append((tag, "the release has no linux-amd64 tarball"))
            continue
        entry, item, runc = derived
        entries[tag] = entry
        report.added.append(item)
        if runc and runc not in shipped["runc_releases"]:
            runcs[runc] = {}
    if entries:
        write_overlay(overlay, entries, runcs)
        report.written = True
    return report


def derive(
    source: Source, release: dict[str, Any], shipped: dict[str, Any], newest: str
) -> tuple[dict[str, Any], VersionReport, str | None] | None:
    """One release's overlay entry, its report, and the runc release it pairs with (None: none new).

    ``newest`` is the known release whose era facts the new one shares.
    """
    tag = release["tag_name"]
    template = shipped["versions"][newest]
    item = VersionReport(tag, newest)
    tarball = shared.UPSTREAM_TARBALL.format(tag=tag)
    assets = {a.get("name"): a for a in release.get("assets") or [] if isinstance(a, dict)}
    if assets and tarball not in assets:
        return None
    entry: dict[str, Any] = {}
    _release_facts(source, release, tarball, assets, template, entry, item)
    pairs_with = _runc_facts(source, tag, template, entry, item)
    era, era_note = flags_era(source, tag, shipped)
    entry["flags_era"] = era
    if era_note.startswith("derived"):
        item.derived["flags_era"] = f"{era} ({era_note[len('derived: ') :]})"
    else:
        item.unknown["flags_era"] = f"{era_note}; assumed {era}"
    for name in ERA_FACTS:
        entry[name] = copy.deepcopy(template[name])
        item.from_era[name] = json.dumps(template[name], separators=(",", ":"))
    # Defects follow the bundled runc (catalog: defects.*.bundled_runc_defect); others are release-specific.
    assumed_pin = "runc_pin" in item.unknown
    entry["defects"] = bundled_runc_defects(shipped, pairs_with or (entry["runc_release"] if assumed_pin else None))
    note = f"{', '.join(entry['defects']) or 'none known'} (from the pinned runc)"
    if pairs_with:
        item.derived["defects"] = note
    elif assumed_pin:
        item.from_era["defects"] = note
    else:
        item.unknown["defects"] = "the pinned runc commit's defects are unknown"
    entry["refresh"] = {
        "derived": sorted(item.derived),
        "from_era": {"release": newest, "facts": sorted(item.from_era)},
        "unknown": sorted(item.unknown),
    }
    return entry, item, pairs_with


def _release_facts(
    source: Source,
    release: dict[str, Any],
    tarball: str,
    assets: dict[str, Any],
    template: dict[str, Any],
    entry: dict[str, Any],
    item: VersionReport,
) -> None:
    """What the release list and the release's assets say: tarball, date, commit, sha256, provenance."""
    tag = release["tag_name"]
    if assets:
        item.derived["tarball"] = f"{tarball} (release assets)"
    else:
        item.unknown["tarball"] = f"the release list names no assets; assumed {tarball}"
    published = str(release.get("published_at") or release.get("created_at") or "")[:10]
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", published):
        entry["released"] = published
        item.derived["released"] = f"{published} (published_at)"
    else:
        entry["released"] = "1970-01-01"  # the schema wants a date; the report says it is unknown
        item.unknown["released"] = "no publication date in the release list"
    commitish = str(release.get("target_commitish") or "")
    if re.fullmatch(r"[0-9a-f]{40}", commitish):
        entry["commit"] = commitish
        item.derived["commit"] = commitish[:12]
    sha, sha_source = checksum(source, tag, tarball, assets)
    entry["sha256"] = sha
    if sha:
        entry["sha256_source"] = sha_source
        item.derived["sha256"] = f"{sha[:12]}… ({sha_source})"
    else:
        item.unknown["sha256"] = sha_source + "; recorded on first download, trust on first use"
    if assets:
        entry["provenance"] = f"{tarball}.provenance.json" in assets
        item.derived["provenance"] = "yes" if entry["provenance"] else "no (not among the assets)"
    else:
        entry["provenance"] = bool(template["provenance"])
        item.from_era["provenance"] = str(entry["provenance"]).lower()


def _runc_facts(
    source: Source, tag: str, template: dict[str, Any], entry: dict[str, Any], item: VersionReport
) -> str | None:
    """runc_pin from the tag's Dockerfile, and the runc release it pairs with (None unless a release)."""
    runc = runc_pin(source, tag)
    if runc and re.fullmatch(r"v\d+\.\d+\.\d+(-rc\d+)?", runc):  # a runc release pairs with itself
        entry["runc_pin"] = {"describe": runc}
        entry["runc_release"] = runc
        item.derived["runc_pin"] = f"{runc} (Dockerfile ARG RUNC_VERSION)"
        return runc
    entry["runc_release"] = template["runc_release"]
    if runc:  # a commit (or other ref): nothing says which release it pairs with
        entry["runc_pin"] = {"describe": runc[:12], "commit": runc} if len(runc) == 40 else {"describe": runc}
        item.derived["runc_pin"] = f"{runc} (Dockerfile ARG RUNC_VERSION)"
        item.unknown["runc_release"] = f"the pin is no runc release; paired with {template['runc_release']}"
    else:
        entry["runc_pin"] = copy.deepcopy(template["runc_pin"])
        item.unknown["runc_pin"] = f"no Dockerfile at {source.raw(tag, 'Dockerfile')}; assumed {item.template}'s"
    return None


def checksum(source: Source, tag: str, tarball: str, assets: dict[str, Any]) -> tuple[str | None, str]:
    """sha256 of the tarball: GitHub's asset digest, else the provenance statement's subject digest."""
    digest = str((assets.get(tarball) or {}).get("digest") or "")
    if re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        return digest.split(":", 1)[1], f"moby/buildkit release {tag}: asset digest in the release list"
    name = f"{tarball}.provenance.json"
    if assets and name not in assets:
        return None, "no asset digest and no provenance published"
    url = source.asset(tag, name)
    data = source.read(url)
    if data is None:
        return None, f"no asset digest; {name} not found"
    try:
        statement = json.loads(data)
    except ValueError:
        return None, f"{name} is not JSON"
    for subject in statement.get("subject") or [] if isinstance(statement, dict) else []:
        sha = str(((subject or {}).get("digest") or {}).get("sha256") or "")
        if Path(str(subject.get("name") or "")).name == tarball and re.fullmatch(r"[0-9a-f]{64}", sha):
            return sha, f"moby/buildkit release {tag}: {name} subject digest"
    return None, f"{name} names no sha256 for {tarball}"


def runc_pin(source: Source, tag: str) -> str | None:
    data = source.read(source.raw(tag, "Dockerfile"))
    match = re.search(r"^ARG RUNC_VERSION=(\S+)", data.decode("utf-8", "replace"), re.M) if data else None
    return match.group(1) if match else None


def flags_era(source: Source, tag: str, shipped: dict[str, Any]) -> tuple[str, str]:
    """The era whose flag set is the tag's (cmd/buildkitd), else the newest era with a note why."""
    eras = list(shipped["flag_eras"])
    newest = eras[-1]
    flags: set[str] = set()
    for path in FLAG_FILES:
        data = source.read(source.raw(tag, path))
        if data is None:
            return newest, f"{source.raw(tag, path)} not served, flags unchecked"
        text = data.decode("utf-8", "replace")
        flags.update("--" + name for name in FLAG.findall(text))
        if re.search(r"Name:\s*n,", text):  # n := "oci-worker-rootless"; the default differs in a userns
            flags.update("--" + n for n in re.findall(r'\bn := "([^"]+)"', text))
    cumulative: set[str] = set()
    for era in eras:
        cumulative |= set(shipped["flag_eras"][era]["flags"])
        if cumulative == flags:
            return era, "derived: cmd/buildkitd flags"
    known = cumulative
    if flags > known:
        return newest, f"flags no era knows: {', '.join(sorted(flags - known))}"
    return newest, f"flags of no known era (missing {', '.join(sorted(known - flags)) or '-'})"


def bundled_runc_defects(shipped: dict[str, Any], runc_release: str | None) -> list[str]:
    if not runc_release or runc_release not in shipped["runc_releases"]:
        return []
    runc_defects = set(shipped["runc_releases"][runc_release].get("defects") or [])
    return [d for d, facts in shipped["defects"].items() if facts.get("bundled_runc_defect") in runc_defects]


def write_overlay(path: Path, entries: dict[str, dict[str, Any]], runcs: dict[str, dict[str, Any]]) -> None:
    """Replace the overlay atomically, keeping entries the user added by hand; refuse an invalid result."""
    previous: dict[str, Any] = {}
    if path.is_file():
        previous = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    versions = {t: e for t, e in (previous.get("versions") or {}).items() if "refresh" not in (e or {})}
    versions.update(entries)
    doc = {
        "schema": 2,
        "versions": dict(sorted(versions.items(), key=lambda item: shared.version_key(item[0]))),
        "runc_releases": {**(previous.get("runc_releases") or {}), **runcs},
    }
    merged = shared.expand(shared.merge_overlay(shared.load(overlay=False), doc))
    problems = shared.validate(merged)
    if problems:
        raise BkprovError(f"refusing to write {path}: the derived entries are invalid: " + "; ".join(problems))
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Written by `bkprov versions --refresh`: BuildKit releases published after this bkprov's catalog.\n"
        "# Each entry's `refresh` says which facts were derived from the release and which are unknown.\n"
        "# Entries without `refresh` are yours and are kept. Delete this file to forget them all.\n"
    )
    fd, tmp = tempfile.mkstemp(prefix=".overlay.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=120))
    os.replace(tmp, path)
