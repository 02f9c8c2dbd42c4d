"""Real builds across the catalog's eras (issue 16): one `bkprov matrix --jobs 2` over one cached
version per era, each row ok or failing with the cause its era has on this host.

Eras are read from the catalog's facts, not from version numbers: git required at start
(v0.3.x), helper-image COPY (before FileOp), no Type=notify, no fd:// socket activation, the
cgroupns defect, and modern (socket activation, no defect). Each era prefers the version named
in the issue and otherwise takes any cached version of that era; an era with nothing cached is
skipped, naming the files to import.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.bkprov.buildkit.plugins.module_utils import catalog as shared

from bkprov import artifacts, catalog
from bkprov.catalog import Release
from bkprov.paths import cache_dir
from tests.support.helpers import bkprov

pytestmark = [pytest.mark.docker, pytest.mark.real]

RAW = catalog.load_raw()


def git_required(release: Release) -> bool:
    return (shared.resolve(RAW, release.version).get("host_requirements") or {}).get("git") == "required"


@dataclass(frozen=True)
class Era:
    name: str
    member: Callable[[Release], bool]
    preferred: tuple[str, ...]
    newest: bool = False  # take the newest cached member (else the first preferred, then the oldest)


CGROUPNS = "cgroupns-cgroup-v1"
ERAS = (
    Era("git-required", git_required, ("v0.3.0",)),
    Era("helper-image-copy", lambda r: r.copy == "helper-image" and not git_required(r), ("v0.4.0",)),
    Era("pre-notify", lambda r: r.copy == "fileop" and not r.notify, ("v0.5.0",)),
    Era("pre-fd", lambda r: r.notify and not r.socket_activation, ("v0.8.0",)),
    Era("cgroupns-defect", lambda r: CGROUPNS in r.defects, ("v0.12.0",)),
    Era("modern", lambda r: r.socket_activation and CGROUPNS not in r.defects, ("v0.10.6",)),
    Era("modern-newest", lambda r: r.socket_activation and CGROUPNS not in r.defects, ("v0.12.5",), newest=True),
)


def cached(version: str) -> bool:
    return all(item.cached for item in artifacts.needed(version))


def pick(era: Era) -> str | None:
    members = [v for v in catalog.versions() if era.member(catalog.get(v))]
    present = [v for v in members if cached(v)]
    if not present:
        return None
    if era.newest:
        return present[-1]
    return next((v for v in era.preferred if v in present), present[0])


def cgroup_v2_host() -> bool:
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        return any(line.split()[4] == "/sys/fs/cgroup" and " - cgroup2 " in line for line in handle)


def expected_causes(release: Release) -> tuple[str, ...]:
    """Words one of which the row's cause holds when this host cannot build the release; () when it can."""
    if cgroup_v2_host() and not release.cgroup_v2:
        return ("old-runc-cgroup-v2", "mountpoint for cgroup not found")
    if not cgroup_v2_host() and CGROUPNS in release.defects:
        return (CGROUPNS, "cgroup namespace")
    return ()


PICKS = {era.name: pick(era) for era in ERAS}


@pytest.fixture(scope="module")
def matrix_rows(tmp_path_factory) -> dict[str, dict[str, Any]]:
    versions = sorted({v for v in PICKS.values() if v}, key=shared.version_key)
    if not versions:
        pytest.skip(f"no real BuildKit release of any era in {cache_dir()}")
    report: Path = tmp_path_factory.mktemp("eras") / "report"
    prefix = f"bkprov-eras-{uuid.uuid4().hex[:6]}"
    result = bkprov(
        "matrix", *versions, "--jobs", "2", "--prefix", prefix, "--report", str(report), env={"COLUMNS": "200"}
    )
    print(report.with_suffix(".md").read_text() if report.with_suffix(".md").exists() else result.stderr)
    assert report.with_suffix(".json").exists(), result.stderr
    rows = {r["version"]: r for r in json.loads(report.with_suffix(".json").read_text())}
    assert sorted(rows, key=shared.version_key) == versions
    assert result.returncode == (0 if all(r["phase"] == "ok" for r in rows.values()) else 1)
    return rows


@pytest.mark.parametrize("era", ERAS, ids=[era.name for era in ERAS])
def test_each_era_builds_or_fails_with_its_own_cause(era: Era, matrix_rows):
    version = PICKS[era.name]
    if version is None:
        wanted = era.preferred[0]
        missing = [item.relpath for item in artifacts.needed(wanted) if not item.cached]
        pytest.skip(
            f"era {era.name}: no version of it in {cache_dir()}; e.g. {wanted} needs {', '.join(missing)} "
            f"(`bkprov artifacts import buildkit|runc VERSION FILE`)"
        )
    row = matrix_rows[version]
    release = catalog.get(version)
    causes = expected_causes(release)
    if not causes:
        assert row["phase"] == "ok", f"{version} ({era.name}): {row['phase']}: {row['cause']}"
        assert row["build_ok"] is True
        assert row["build_output"].startswith(f"buildctl github.com/moby/buildkit {version}"), row
        return
    if row["phase"] == "ok" and CGROUPNS in release.defects:
        # moby/buildkit#4108 hits only some cgroup v1 hierarchies ("a non-standard hierarchy"); where
        # the build works, its proof must still be real.
        assert row["build_output"].startswith(f"buildctl github.com/moby/buildkit {version}"), row
        return
    # Known not to build on this host: refused in preflight or failed, naming the version's defect.
    assert row["phase"] != "ok", f"{version} built on a host its defect should break: {row}"
    assert any(word in row["cause"] for word in causes), f"{version}: cause {row['cause']!r}, expected {causes}"
