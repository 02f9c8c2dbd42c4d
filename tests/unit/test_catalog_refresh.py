"""`bkprov versions --refresh`: new releases from a release list served on 127.0.0.1, into the user's overlay."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest
import yaml
from ansible_collections.bkprov.buildkit.plugins.module_utils import catalog as shared

from bkprov import catalog_refresh
from bkprov.errors import BkprovError
from tests.support.release_server import Mirror, ReleaseServer

CATALOG_FILE = Path(shared.CATALOG)


def newest_flags(era: str = "E16") -> list[str]:
    """buildkitd's flag set up to ``era``: what a release of that era declares in cmd/buildkitd."""
    eras = shared.load(overlay=False)["flag_eras"]
    flags: list[str] = []
    for name, facts in eras.items():
        flags += facts["flags"]
        if name == era:
            return flags
    raise AssertionError(era)


@pytest.fixture
def mirror(tmp_path) -> Mirror:
    m = Mirror(tmp_path / "mirror")
    m.publish("v0.32.2", flags=newest_flags())  # known to the catalog: left alone
    return m


def run_refresh(base: str, cache: Path) -> tuple[catalog_refresh.RefreshReport, list[str]]:
    logged: list[str] = []
    report = catalog_refresh.refresh(base, cache=cache, log=logged.append)
    return report, logged


def test_a_release_the_catalog_has_never_seen_becomes_resolvable(mirror, cache):
    installed = hashlib.sha256(CATALOG_FILE.read_bytes()).hexdigest()
    sha = mirror.publish("v0.33.0", runc="v1.5.1", flags=newest_flags())
    with ReleaseServer(mirror.root) as server:
        report, logged = run_refresh(server.url, cache)
    assert logged[0] == f"Reading the BuildKit release list from {server.url}/moby/buildkit/releases.json"
    assert [item.version for item in report.added] == ["v0.33.0"]
    assert report.overlay == cache / "catalog" / "overlay.yml" and report.overlay.is_file()
    item = report.added[0]
    assert item.template == "v0.32.2"
    assert item.derived["runc_pin"] == "v1.5.1 (Dockerfile ARG RUNC_VERSION)"
    assert item.derived["flags_era"] == "E16 (cmd/buildkitd flags)"
    assert item.derived["sha256"].startswith(sha[:12])
    assert item.derived["provenance"] == "yes"
    assert item.derived["released"] == "2026-09-01 (published_at)"
    assert item.unknown == {}
    assert "/moby/buildkit/raw/v0.32.2/Dockerfile" not in server.requested  # known releases are not re-read

    doc = shared.load_checked()  # the default overlay under BKPROV_CACHE
    entry = shared.resolve(doc, "v0.33.0")
    assert entry["origin"] == "overlay"
    assert entry["sha256"] == sha
    assert (
        entry["sha256_source"]
        == "moby/buildkit release v0.33.0: buildkit-v0.33.0.linux-amd64.tar.gz.provenance.json subject digest"
    )
    assert (
        entry["url"] == "https://github.com/moby/buildkit/releases/download/v0.33.0/buildkit-v0.33.0.linux-amd64.tar.gz"
    )
    assert entry["runc"]["version"] == "v1.5.1" and entry["runc"]["origin"] == "overlay"
    assert entry["binaries"] == doc["contents"]["E"]
    assert "--proxy-network" in entry["flags"]
    assert entry["refresh"]["from_era"] == {
        "release": "v0.32.2",
        "facts": ["cgroup_v2", "contents", "dockerfile_copy", "host_requirements", "notify", "socket_activation"],
    }
    assert shared.resolve_alias(doc, "latest") == "v0.33.0"
    assert doc["versions"]["v0.32.2"]["origin"] == "catalog"
    assert hashlib.sha256(CATALOG_FILE.read_bytes()).hexdigest() == installed  # never the installed package


def test_report_lines_say_what_was_derived_and_what_is_unknown(mirror, cache):
    mirror.publish("v0.33.0", runc="v1.5.1", flags=newest_flags())
    mirror.publish("v0.33.1", provenance=False, runc=None, flags=None)
    with ReleaseServer(mirror.root) as server:
        report, _ = run_refresh(server.url, cache)
    lines = report.lines()
    assert lines[0] == f"release list: {server.url}/moby/buildkit/releases.json"
    text = "\n".join(lines)
    assert f"v0.33.0: added to {cache / 'catalog' / 'overlay.yml'}" in lines
    assert "runc_pin v1.5.1 (Dockerfile ARG RUNC_VERSION)" in text
    unknown = next(line for line in lines if line.startswith("  unknown:") and "sha256" in line)
    assert "sha256 (no asset digest and no provenance published; recorded on first download" in unknown
    assert (
        f"runc_pin (no Dockerfile at {server.url}/moby/buildkit/raw/v0.33.1/Dockerfile; assumed v0.32.2's)" in unknown
    )
    assert "flags_era (" in unknown and "not served, flags unchecked; assumed E16" in unknown
    assert '  as v0.32.2 (newest known release of its era): contents "E"' in text
    entry = shared.resolve(shared.load_checked(), "v0.33.1")
    assert entry["sha256"] is None
    assert entry["provenance"] is False
    assert entry["refresh"]["unknown"] == ["flags_era", "runc_pin", "sha256"]


def test_asset_digest_from_the_release_list_is_used_first(mirror, cache):
    sha = mirror.publish("v0.33.0", digest=True, provenance=False, flags=newest_flags())
    with ReleaseServer(mirror.root) as server:
        report, _ = run_refresh(server.url, cache)
    entry = shared.load_checked()["versions"]["v0.33.0"]
    assert entry["sha256"] == sha
    assert entry["sha256_source"] == "moby/buildkit release v0.33.0: asset digest in the release list"
    assert not any("provenance.json" in path for path in server.requested)
    assert report.added[0].derived["provenance"] == "no (not among the assets)"


def test_flags_no_era_knows_are_named(mirror, cache):
    mirror.publish("v0.33.0", flags=[*newest_flags(), "--fancy-new-flag"])
    with ReleaseServer(mirror.root) as server:
        report, _ = run_refresh(server.url, cache)
    assert report.added[0].unknown["flags_era"] == "flags no era knows: --fancy-new-flag; assumed E16"


def test_a_new_patch_of_an_older_minor_follows_its_minor(mirror, cache):
    mirror.publish("v0.12.6", runc="v1.1.12", flags=newest_flags("E11"))
    with ReleaseServer(mirror.root) as server:
        report, _ = run_refresh(server.url, cache)
    assert report.added[0].template == "v0.12.5"
    entry = shared.resolve(shared.load_checked(), "v0.12.6")
    assert (entry["flags_era"], entry["contents"], entry["runc_release"]) == ("E11", "C", "v1.1.12")
    assert shared.resolve_alias(shared.load_checked(), "v0.12") == "v0.12.6"


def test_release_candidates_are_added_as_prereleases(mirror, cache):
    mirror.publish("v0.33.0-rc1", flags=newest_flags())
    with ReleaseServer(mirror.root) as server:
        run_refresh(server.url, cache)
    doc = shared.load_checked()
    assert doc["versions"]["v0.33.0-rc1"]["prerelease"] is True
    assert "v0.33.0-rc1" not in shared.releases(doc)
    assert shared.resolve_alias(doc, "latest") == "v0.32.2"


def test_release_without_a_linux_amd64_tarball_is_skipped(mirror, cache):
    mirror.publish("v0.33.0", tarball=False)
    with ReleaseServer(mirror.root) as server:
        report, _ = run_refresh(server.url, cache)
    assert report.added == [] and not report.written
    assert report.skipped == [("v0.33.0", "the release has no linux-amd64 tarball")]
    assert not (cache / "catalog" / "overlay.yml").exists()


def test_up_to_date_catalog_writes_nothing(mirror, cache):
    with ReleaseServer(mirror.root) as server:
        report, _ = run_refresh(server.url, cache)
    assert report.lines()[1] == "no release newer than the catalog's; newest known: v0.32.2"
    assert not (cache / "catalog" / "overlay.yml").exists()


def test_bkprov_mirror_directory_is_honoured(mirror, cache, monkeypatch):
    mirror.publish("v0.33.0", flags=newest_flags())
    monkeypatch.setenv("BKPROV_MIRROR", str(mirror.root))
    report, logged = run_refresh(None, cache)
    assert logged[0] == f"Reading the BuildKit release list from {mirror.root}/moby/buildkit/releases.json"
    assert [item.version for item in report.added] == ["v0.33.0"]
    assert report.added[0].unknown == {}


def test_refresh_replaces_its_own_entries_and_keeps_the_users(mirror, cache):
    overlay = cache / "catalog" / "overlay.yml"
    mirror.publish("v0.33.0", flags=newest_flags())
    with ReleaseServer(mirror.root) as server:
        run_refresh(server.url, cache)
    doc = yaml.safe_load(overlay.read_text())
    doc["versions"]["v0.32.2"] = {"sha256": "b" * 64, "sha256_source": "my own download"}  # the user's
    overlay.write_text(yaml.safe_dump(doc))
    mirror.releases = [r for r in mirror.releases if r["tag_name"] != "v0.33.0"]  # withdrawn upstream
    mirror.publish("v0.33.1", flags=newest_flags())
    with ReleaseServer(mirror.root) as server:
        run_refresh(server.url, cache)
    versions = yaml.safe_load(overlay.read_text())["versions"]
    assert list(versions) == ["v0.32.2", "v0.33.1"]
    assert shared.load_checked()["versions"]["v0.32.2"]["sha256"] == "b" * 64


def test_the_lookup_plugin_sees_refreshed_releases(mirror, cache, release_of):
    mirror.publish("v0.33.0", flags=newest_flags())
    with ReleaseServer(mirror.root) as server:
        run_refresh(server.url, cache)
    assert release_of("v0.33.0")["origin"] == "overlay"
    assert release_of("latest")["version"] == "v0.33.0"


def test_unreachable_mirror_fails_and_says_what_to_do(cache):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(BkprovError) as info:
        catalog_refresh.refresh(f"http://127.0.0.1:{port}", cache=cache, log=lambda _: None)
    message = str(info.value)
    assert f"could not read http://127.0.0.1:{port}/moby/buildkit/releases.json" in message
    assert "Point BKPROV_MIRROR at a mirror" in message
    assert not (cache / "catalog" / "overlay.yml").exists()


def test_a_mirror_without_a_release_list_is_named(tmp_path, cache):
    with pytest.raises(BkprovError) as info:
        catalog_refresh.refresh(str(tmp_path), cache=cache, log=lambda _: None)
    assert str(info.value) == (
        f"no release list at {tmp_path}/moby/buildkit/releases.json; a mirror serves it as moby/buildkit/releases.json"
    )


def test_a_release_list_that_is_not_json_is_refused(mirror, cache):
    (mirror.base / "releases.json").write_text("<html>rate limited</html>")
    with pytest.raises(BkprovError) as info:
        catalog_refresh.refresh(str(mirror.root), cache=cache, log=lambda _: None)
    assert "is not JSON" in str(info.value)


def test_a_commit_pin_is_kept_and_its_pairing_reported_unknown(mirror, cache):
    commit = "939ad4e3fcfa1ab531458355a73688c6f4ee5003"
    mirror.publish("v0.33.0", runc=commit, flags=newest_flags())
    with ReleaseServer(mirror.root) as server:
        report, _ = run_refresh(server.url, cache)
    item = report.added[0]
    assert item.unknown["runc_release"] == "the pin is no runc release; paired with v1.4.3"
    assert item.unknown["defects"] == "the pinned runc commit's defects are unknown"
    entry = shared.resolve(shared.load_checked(), "v0.33.0")
    assert entry["runc_pin"] == {"describe": commit[:12], "commit": commit}
    assert entry["defects"] == []
    assert "&id" not in (cache / "catalog" / "overlay.yml").read_text()  # plain YAML, no anchors
