"""The version catalog (collection/catalog/versions.yml): schema, per-tag facts, resolution, overlay, readers."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleError
from ansible_collections.bkprov.buildkit.plugins.module_utils import catalog as shared

from bkprov import catalog
from bkprov.errors import BkprovError

CATALOG_FILE = Path(__file__).resolve().parents[2] / "collection" / "catalog" / "versions.yml"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "upstream_facts.yml"
UPSTREAM = yaml.safe_load(FIXTURE.read_text(encoding="utf-8"))
TAGS = list(UPSTREAM["tags"])
COPY_V030 = "tonistiigi/copy:v0.1.7@sha256:9aab7d9ab369c6daf4831bf0653f7592110ab4b7e8a33fee2b9dca546e9d3089"
COPY_V040 = "docker/dockerfile-copy:v0.1.9@sha256:e8f159d3f00786604b93c675ee2783f8dc194bb565e61ca5788f6a6e9d304061"
SHA_V0106 = "9a21a41298c4a2a7a2b57cb90d37463d3a9057aedfe97a04b0e4fd6f622549d8"
SHA_V0123 = "01682ab9e8e7cada519396b5f7b72c964c0c30da0c2eb7ee46caf30622717fa1"


@pytest.fixture(scope="module")
def cat() -> dict:
    """The shipped catalog, expanded, without any user overlay."""
    return shared.load(overlay=False)


def raw_doc() -> dict:
    """The catalog file as written (compact), a private copy."""
    return yaml.safe_load(CATALOG_FILE.read_text(encoding="utf-8"))


def fresh(cat: dict) -> dict:
    return copy.deepcopy(cat)


def write_overlay(path: Path, doc: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def new_release(tag: str = "v0.33.0", **changes) -> dict:
    """An overlay entry the way `bkprov versions --refresh` writes it: every field explicit."""
    entry = {
        "released": "2026-09-01",
        "contents": "E",
        "provenance": True,
        "runc_pin": {"describe": "v1.4.3"},
        "runc_release": "v1.4.3",
        "socket_activation": True,
        "notify": True,
        "dockerfile_copy": {"mode": "fileop", "helper_opt_out": False},
        "flags_era": "E16",
        "cgroup_v2": True,
        "defects": [],
        "host_requirements": {"git": "optional"},
        "sha256": None,
    }
    entry.update(changes)
    return {"versions": {tag: entry}}


# ---------------------------------------------------------------- schema


def test_real_catalog_is_valid_compact_and_expanded(cat):
    assert shared.validate(raw_doc()) == []
    assert shared.validate(cat) == []


@pytest.mark.parametrize("version", TAGS)
def test_every_entry_is_complete_after_expansion(cat, version):
    entry = cat["versions"][version]
    for field, kind in shared.VERSION_FIELDS.items():
        assert isinstance(entry[field], kind), (version, field)
    assert entry["origin"] == "catalog"


@pytest.mark.parametrize("field", sorted(set(shared.VERSION_FIELDS) - {"tarball", "url", "prerelease", "runc_release"}))
def test_missing_field_is_reported(field):
    raw = raw_doc()
    raw["defaults"].pop(field, None)
    raw["series"]["v0.10"].pop(field, None)
    raw["versions"]["v0.10.6"].pop(field, None)
    assert f"v0.10.6: missing {field}" in shared.validate(raw)


def test_commit_pin_without_runc_release_is_reported():
    raw = raw_doc()
    del raw["series"]["v0.8"]["runc_release"]  # v0.8.0 pins a runc commit: no release to derive
    assert "v0.8.0: missing runc_release" in shared.validate(raw)


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("socket_activation", "yes"),
        ("notify", 1.5),
        ("sha256", 12345),
        ("defects", "none"),
        ("runc_pin", "v1.0.2"),
        ("dockerfile_copy", "fileop"),
        ("released", 20221110),
        ("url", None),
        ("host_requirements", ["git"]),
        ("commit", 42),
    ],
)
def test_wrong_type_is_reported(cat, field, bad):
    doc = fresh(cat)
    doc["versions"]["v0.10.6"][field] = bad
    assert f"v0.10.6: {field} has the wrong type" in shared.validate(doc)


@pytest.mark.parametrize("section", ["contents", "flag_eras", "defects", "runc_releases", "runc_defects", "versions"])
def test_missing_section_is_reported(cat, section):
    doc = fresh(cat)
    del doc[section]
    assert f"section {section!r} missing" in shared.validate(doc)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda e: e.update(contents="Z"), "v0.10.6: unknown contents Z"),
        (lambda e: e.update(flags_era="E99"), "v0.10.6: unknown flags_era E99"),
        (lambda e: e.update(runc_release="v9.9.9"), "v0.10.6: runc_release v9.9.9 not in runc_releases"),
        (lambda e: e.update(defects=["no-such-defect"]), "v0.10.6: unknown defect no-such-defect"),
        (
            lambda e: e.update(dockerfile_copy={"mode": "magic"}),
            "v0.10.6: dockerfile_copy.mode must be helper-image or fileop",
        ),
        (
            lambda e: e.update(dockerfile_copy={"mode": "helper-image"}),
            "v0.10.6: helper-image COPY needs dockerfile_copy.image",
        ),
        (
            lambda e: e.update(url=e["url"].replace("/v0.10.6/", "/v0.10.5/")),
            "v0.10.6: url does not match tarball and tag",
        ),
        (lambda e: e.update(tarball="other.tar.gz"), "v0.10.6: url does not match tarball and tag"),
        (lambda e: e.update(sha256="abc"), "v0.10.6: sha256 is not 64 hex digits"),
        (lambda e: e.pop("sha256_source"), "v0.10.6: sha256 needs sha256_source (who published it)"),
        (lambda e: e.update(runc_pin={"commit": "abc"}), "v0.10.6: runc_pin needs describe"),
        (lambda e: e.update(prerelease=True), "v0.10.6: prerelease must be False for this tag"),
        (
            lambda e: e.update(host_requirements={"git": "maybe"}),
            "v0.10.6: host_requirements.git must be one of required, optional",
        ),
        (
            lambda e: e.update(host_requirements={"svn": "required"}),
            "v0.10.6: host requirement svn has no entry in host_requirement_notes",
        ),
        (lambda e: e.update(released="10 Nov 2022"), "v0.10.6: released must be YYYY-MM-DD"),
        (lambda e: e.update(commit="0c9b5aeb"), "v0.10.6: commit is not 40 hex digits"),
        (lambda e: e.update(flags_era="E16"), "v0.10.6: flags_era E16 starts at v0.31.0-rc1, after this version"),
        (lambda e: e.update(notfy=True), "v0.10.6: unknown field notfy"),
    ],
)
def test_inconsistent_entry_is_reported(cat, change, problem):
    doc = fresh(cat)
    change(doc["versions"]["v0.10.6"])
    assert shared.validate(doc) == [problem]


def test_runc_release_problems_are_reported(cat):
    doc = fresh(cat)
    doc["runc_releases"]["v1.0.2"]["url"] = 5
    doc["runc_releases"]["v1.1.4"]["defects"] = ["no-such"]
    problems = shared.validate(doc)
    assert "runc v1.0.2: url has the wrong type" in problems
    assert "runc v1.1.4: unknown defect no-such" in problems


def test_series_era_and_defect_link_problems_are_reported():
    raw = raw_doc()
    raw["series"]["v0.10"]["colour"] = "blue"
    raw["flag_eras"]["E3"]["since"] = "v0.3.0"
    raw["defects"]["runc-masked-paths-old-kernel"]["bundled_runc_defect"] = "no-such"
    problems = shared.validate(raw)
    assert "defect runc-masked-paths-old-kernel: bundled_runc_defect no-such not in runc_defects" in problems
    assert "series v0.10: unknown field(s) colour" in problems
    assert "flag era E3: since v0.3.0 is not after the previous era's" in problems


def test_problems_in_one_version_do_not_hide_those_of_later_versions(cat):
    doc = fresh(cat)
    doc["versions"]["v0.3.0"]["notify"] = "no"
    doc["versions"]["v0.10.6"]["contents"] = "Z"
    problems = shared.validate(doc)
    assert "v0.3.0: notify has the wrong type" in problems
    assert "v0.10.6: unknown contents Z" in problems


def test_expand_is_idempotent(cat):
    assert shared.expand(cat)["versions"] == cat["versions"]


# ---------------------------------------------------------------- coverage: every release tag


def test_catalog_lists_every_upstream_release_tag_in_order(cat):
    assert list(cat["versions"]) == TAGS
    assert sorted(TAGS, key=shared.version_key) == TAGS
    releases = shared.releases(cat)
    assert len(releases) == 89
    assert (releases[0], releases[-1]) == ("v0.3.0", "v0.32.2")
    assert not any("-" in v for v in releases)


def test_release_candidates_are_listed_and_marked(cat):
    pre = [v for v in cat["versions"] if cat["versions"][v]["prerelease"]]
    assert len(pre) == 58  # 55 release candidates and v0.13.0-beta1..3
    assert {"v0.32.0-rc1", "v0.32.0-rc2", "v0.11.0-rc1", "v0.21.0-rc2", "v0.13.0-beta2"} <= set(pre)
    assert shared.releases(cat, pre=True) == TAGS


# ---------------------------------------------------------------- eras line up with the facts at each tag


@pytest.mark.parametrize("version", TAGS)
def test_entry_matches_the_facts_read_at_its_tag(cat, version):
    facts = UPSTREAM["tags"][version]
    entry = shared.resolve(cat, version)
    pin = entry["runc_pin"]
    if re.fullmatch(r"[0-9a-f]{40}", facts["runc"]):
        assert pin["commit"] == facts["runc"]
    else:
        assert (pin["describe"], "commit" in pin) == (facts["runc"], False)
    assert sorted(entry["flags"]) == UPSTREAM["flag_sets"][facts["flags"]]
    assert len(entry["flags"]) == len(set(entry["flags"]))
    assert entry["registry_keys"] == UPSTREAM["registry_key_sets"][facts["registry_keys"]]
    if facts["bin"] is not None:
        assert sorted(entry["binaries"]) == UPSTREAM["binary_sets"][facts["bin"]]
    assert entry["socket_activation"] == facts["fd"]
    assert entry["notify"] == facts["notify"]
    assert entry["dockerfile_copy"]["mode"] == facts["copy"]
    assert entry["dockerfile_copy"].get("image") == facts.get("copy_image")
    if facts["copy"] == "fileop":
        assert entry["dockerfile_copy"]["helper_opt_out"] == facts["helper_opt_out"]
    assert entry["provenance"] == facts["provenance"]
    assert entry["host_requirements"] == {"git": "required" if facts["git_required"] else "optional"}
    assert ("tlscacert-ignored" in entry["defects"]) == facts["tlsca_bug"]
    assert ("tls-on-every-listener" in entry["defects"]) == facts["tls_global"]
    assert ("cgroupns-cgroup-v1" in entry["defects"]) == facts["cgroupns_on_v1"]
    assert (entry["released"], entry["commit"]) == (facts["date"], facts["commit"])


def first_tag(predicate) -> str:
    return next(tag for tag in TAGS if predicate(UPSTREAM["tags"][tag]))


def test_feature_boundaries_are_where_upstream_put_them(cat):
    """First tags (semver order) of each feature, in the facts and in the catalog alike."""
    assert first_tag(lambda f: f["fd"]) == "v0.9.0-rc1"
    assert first_tag(lambda f: f["notify"]) == "v0.5.1"
    assert first_tag(lambda f: f["copy"] == "fileop") == "v0.5.0"
    assert first_tag(lambda f: f["copy"] == "fileop" and not f["helper_opt_out"]) == "v0.11.0-rc1"
    assert first_tag(lambda f: f["provenance"]) == "v0.11.0-rc3"
    assert first_tag(lambda f: not f["git_required"]) == "v0.4.0"
    assert first_tag(lambda f: not f["tls_global"]) == "v0.6.4"
    versions = cat["versions"]
    assert {v for v in TAGS if versions[v]["socket_activation"]} == set(TAGS[TAGS.index("v0.9.0-rc1") :])
    assert {v for v in TAGS if versions[v]["notify"]} == set(TAGS[TAGS.index("v0.5.1") :])
    cgroupns = {v for v in TAGS if "cgroupns-cgroup-v1" in versions[v]["defects"]}
    assert cgroupns == {"v0.12.0-rc2", "v0.12.0", "v0.12.1", "v0.12.2", "v0.13.0-beta1"}


def test_each_era_starts_at_its_since_tag(cat):
    """An era begins exactly where the flag set first changes, and no version is older than its era."""
    eras = list(cat["flag_eras"])
    for version in TAGS:
        era = cat["versions"][version]["flags_era"]
        nxt = eras.index(era) + 1
        assert shared.version_key(version) >= shared.version_key(cat["flag_eras"][era]["since"])
        if nxt < len(eras):
            assert shared.version_key(version) < shared.version_key(cat["flag_eras"][eras[nxt]]["since"])
    for era, facts in cat["flag_eras"].items():
        assert cat["versions"][facts["since"]]["flags_era"] == era


def test_host_requirement_git_for_v0_3_only(cat):
    required = {v for v in TAGS if shared.resolve(cat, v)["host_requirements"]["git"] == "required"}
    assert required == {"v0.3.0", "v0.3.1", "v0.3.2", "v0.3.3"}
    details = shared.resolve(cat, "v0.3.0")["host_requirement_details"]
    assert details == [{"name": "git", "level": "required", "why": cat["host_requirement_notes"]["git"]["required"]}]
    assert "failed to find git binary" in details[0]["why"]


# ---------------------------------------------------------------- runc pins and pairings


@pytest.mark.parametrize(
    ("version", "pin", "system_runc"),
    [
        ("v0.3.0", "v1.0.0-rc5-131", "v1.0.0-rc6"),
        ("v0.3.2", "v1.0.0-rc5-139", "v1.0.0-rc6"),
        ("v0.4.0", "v1.0.0-rc6-43", "v1.0.0-rc7"),
        ("v0.5.1", "v1.0.0-rc6-43", "v1.0.0-rc7"),
        ("v0.7.2", "v1.0.0-rc91", "v1.0.0-rc91"),
        ("v0.8.1", "v1.0.0-rc92-166", "v1.0.0-rc92"),
        ("v0.8.2", "v1.0.0-rc93", "v1.0.0-rc93"),
        ("v0.10.6", "v1.0.2", "v1.0.2"),
        ("v0.12.3", "v1.1.7", "v1.1.7"),
        ("v0.25.0", "v1.3.1", "v1.3.1"),
        ("v0.32.2", "v1.4.3", "v1.4.3"),
    ],
)
def test_runc_pins_and_pairing(cat, version, pin, system_runc):
    entry = shared.resolve(cat, version)
    assert entry["runc_pin"]["describe"] == pin
    assert entry["runc"]["version"] == system_runc
    assert entry["runc"]["url"] == f"https://github.com/opencontainers/runc/releases/download/{system_runc}/runc.amd64"


def test_release_pins_pair_with_themselves(cat):
    for version, entry in cat["versions"].items():
        if "commit" not in entry["runc_pin"]:
            assert entry["runc_release"] == entry["runc_pin"]["describe"], version


def test_bundled_runc_defects_follow_the_pin(cat):
    masked = {v for v in TAGS if "runc-masked-paths-old-kernel" in cat["versions"][v]["defects"]}
    assert masked == {v for v in TAGS if cat["versions"][v]["runc_pin"]["describe"] in ("v1.3.6", "v1.4.3")}
    assert "v0.31.0" in masked and "v0.31.0-rc2" not in masked
    assert shared.resolve_runc(cat, "v1.4.3")["defects"] == ["masked-paths-nr-inodes"]


# ---------------------------------------------------------------- checksums


def test_public_sha256_values_and_their_sources(cat):
    versions = cat["versions"]
    assert versions["v0.10.6"]["sha256"] == SHA_V0106
    assert versions["v0.12.3"]["sha256"] == SHA_V0123
    assert versions["v0.4.0"]["sha256"] is None
    hashed = {v: e for v, e in versions.items() if e["sha256"]}
    assert len(hashed) >= 60
    publisher = re.compile(r"(andrewrothstein/ansible-buildkit|kubernetes/minikube)@[0-9a-f]{7,40}")
    for version, entry in hashed.items():
        for source in entry["sha256_source"].split(", "):
            assert publisher.fullmatch(source), version
    assert not any(e["prerelease"] for e in hashed.values())


# ---------------------------------------------------------------- resolution: latest, minors, unknown


@pytest.mark.parametrize(
    ("spec", "version"),
    [
        ("latest", "v0.32.2"),
        ("v0.12", "v0.12.5"),
        ("0.12", "v0.12.5"),
        ("v0.13", "v0.13.2"),
        ("v0.21", "v0.21.1"),
        ("v0.3", "v0.3.3"),
        ("v0.12.3", "v0.12.3"),
        ("0.12.3", "v0.12.3"),
        ("v0.32.0-rc1", "v0.32.0-rc1"),
        (" v0.28.1 ", "v0.28.1"),
    ],
)
def test_resolve_alias(cat, spec, version):
    assert shared.resolve_alias(cat, spec) == version


@pytest.mark.parametrize(
    ("spec", "nearest"),
    [
        ("v0.99", "v0.32.2"),
        ("v0.99.0", "v0.32.2"),
        ("v0.12.6", "v0.12.5, v0.13.0"),
        ("0.2.0", "v0.3.0"),
    ],
)
def test_unknown_spec_names_the_nearest_releases(cat, spec, nearest):
    with pytest.raises(shared.UnknownVersion) as info:
        shared.resolve_alias(cat, spec)
    assert str(info.value) == f"unknown BuildKit version {spec!r}. Nearest known: {nearest}."


def test_latest_skips_release_candidates_and_a_minor_of_only_rcs_is_unknown(cat):
    doc = shared.expand(shared.merge_overlay(cat, new_release("v0.33.0-rc1")))
    assert shared.resolve_alias(doc, "latest") == "v0.32.2"
    assert shared.resolve_alias(doc, "v0.33.0-rc1") == "v0.33.0-rc1"
    with pytest.raises(shared.UnknownVersion):
        shared.resolve_alias(doc, "v0.33")


def test_same_commit_tags_are_named(cat):
    assert shared.resolve(cat, "v0.21.0")["same_commit_as"] == ["v0.21.0-rc2"]
    assert shared.resolve(cat, "v0.21.0-rc2")["same_commit_as"] == ["v0.21.0"]
    assert shared.resolve(cat, "v0.21.1")["same_commit_as"] == []


def test_resolve_accepts_a_compact_document():
    entry = shared.resolve(raw_doc(), "v0.12.3")
    assert entry["tarball"] == "buildkit-v0.12.3.linux-amd64.tar.gz"
    assert entry["flags_era"] == "E11"


# ---------------------------------------------------------------- the user's overlay


def test_overlay_adds_a_release_and_overrides_key_by_key(tmp_path):
    overlay = new_release()
    overlay["versions"]["v0.32.2"] = {"sha256": "a" * 64, "sha256_source": "provenance"}
    overlay["runc_releases"] = {"v1.5.1": {}}
    path = write_overlay(tmp_path / "overlay.yml", overlay)
    doc = shared.load_checked(overlay=path)
    added = shared.resolve(doc, "v0.33.0")
    assert added["origin"] == "overlay"
    assert (
        added["url"] == "https://github.com/moby/buildkit/releases/download/v0.33.0/buildkit-v0.33.0.linux-amd64.tar.gz"
    )
    assert "--proxy-network" in added["flags"]
    assert shared.resolve_alias(doc, "latest") == "v0.33.0"
    changed = doc["versions"]["v0.32.2"]
    assert (changed["sha256"], changed["origin"], changed["runc_pin"]) == ("a" * 64, "overlay", {"describe": "v1.4.3"})
    assert doc["runc_releases"]["v1.5.1"]["url"].endswith("/v1.5.1/runc.amd64")
    assert doc["_sources"]["overlay"] == str(path)


def test_overlay_defaults_to_the_cache_and_is_reread_when_it_changes(cache):
    assert shared.overlay_path() == cache / "catalog" / "overlay.yml"
    assert "v0.33.0" not in shared.load()["versions"]
    path = write_overlay(shared.overlay_path(), new_release())
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert shared.load()["versions"]["v0.33.0"]["origin"] == "overlay"
    write_overlay(path, new_release("v0.34.0"))
    os.utime(path, ns=(2_000_000_000, 2_000_000_000))
    versions = shared.load()["versions"]
    assert "v0.34.0" in versions and "v0.33.0" not in versions


def test_load_is_cached_while_files_are_unchanged(tmp_path):
    path = write_overlay(tmp_path / "overlay.yml", new_release())
    assert shared.load(overlay=path) is shared.load(overlay=path)


def test_broken_overlay_entry_fails_validation_naming_the_overlay(tmp_path):
    path = write_overlay(tmp_path / "overlay.yml", new_release(flags_era="E77"))
    with pytest.raises(shared.CatalogError) as info:
        shared.load_checked(overlay=path)
    assert f"with the overlay {path}" in str(info.value)
    assert "v0.33.0 (overlay): unknown flags_era E77" in str(info.value)


def test_unreadable_overlay_names_its_path(tmp_path):
    path = tmp_path / "overlay.yml"
    path.write_text("versions: [unclosed\n", encoding="utf-8")
    with pytest.raises(shared.CatalogError) as info:
        shared.load(overlay=path)
    assert str(path) in str(info.value) and "delete it or refresh again" in str(info.value)


def test_overlay_with_other_sections_is_refused(tmp_path):
    doc = new_release()
    doc["defects"] = {"mine": {}}
    path = write_overlay(tmp_path / "overlay.yml", doc)
    with pytest.raises(shared.CatalogError) as info:
        shared.load_checked(overlay=path)
    assert "unknown section(s) defects" in str(info.value)


# ---------------------------------------------------------------- the collection's lookup plugin


def test_lookup_derived_fields_for_v0_10_6(release_of, cat):
    entry = release_of("v0.10.6")
    assert entry["version"] == "v0.10.6"
    assert entry["binaries"] == cat["contents"]["C"]
    assert "--oci-worker-binary" in entry["flags"]
    assert "--containerd-worker-rootless" in entry["flags"]
    assert "--oci-worker-selinux" in entry["flags"]  # backported to v0.10.6
    assert "--oci-cni-pool-size" not in entry["flags"]
    assert "--trace" not in entry["flags"]
    assert "--config" in entry["flags"]
    assert {"mirrors", "http", "insecure"} <= set(entry["registry_keys"])
    assert entry["runc"]["version"] == "v1.0.2"
    assert entry["runc_pin"]["describe"] == "v1.0.2"
    assert entry["defect_details"] == []
    assert entry["sha256"] == SHA_V0106


def test_lookup_registry_keys_of_the_first_eras(release_of):
    assert release_of("v0.4.0")["registry_keys"] == ["mirrors", "http"]
    assert release_of("v0.7.0-rc1")["registry_keys"] == ["mirrors", "http", "insecure"]
    assert "--oci-worker-binary" not in release_of("v0.4.0")["flags"]
    assert "--allow-insecure-entitlement" not in release_of("v0.4.0")["flags"]
    assert "--allow-insecure-entitlement" in release_of("v0.5.0")["flags"]


def test_lookup_newest_era_has_every_flag(release_of):
    flags = release_of("v0.32.2")["flags"]
    assert {"--trace", "--save-cache-debug", "--cdi-spec-dir", "--log-level", "--proxy-network"} <= set(flags)
    assert len(flags) == len(set(flags))


def test_lookup_defect_details(release_of):
    details = release_of("v0.12.0")["defect_details"]
    assert [d["id"] for d in details] == ["cgroupns-cgroup-v1"]
    assert "4108" in details[0]["summary"]
    assert release_of("v0.12.3")["defect_details"] == []


def test_lookup_resolves_latest_and_minors(lookup_module):
    entries = lookup_module.LookupModule().run(["latest", "v0.12", "0.21"])
    assert [e["version"] for e in entries] == ["v0.32.2", "v0.12.5", "v0.21.1"]


def test_lookup_host_requirements(release_of):
    assert release_of("v0.3.0")["host_requirements"] == {"git": "required"}
    assert release_of("v0.4.0")["host_requirements"] == {"git": "optional"}


def test_lookup_runc_release(lookup_module):
    (entry,) = lookup_module.LookupModule().run(["runc:v1.0.0-rc7"])
    assert entry["version"] == "v1.0.0-rc7"
    assert entry["defects"] == ["keycreate"]
    assert entry["defect_details"][0]["id"] == "keycreate"
    assert "keycreate" in entry["defect_details"][0]["summary"]


def test_lookup_several_terms(lookup_module):
    entries = lookup_module.LookupModule().run([" v0.4.0 ", "v0.25.0"])
    assert [e["version"] for e in entries] == ["v0.4.0", "v0.25.0"]


def test_lookup_unknown_version_names_nearest_and_refresh(lookup_module):
    with pytest.raises(AnsibleError) as info:
        lookup_module.LookupModule().run(["v0.28.5"])
    message = str(info.value)
    assert "unknown BuildKit version 'v0.28.5'. Nearest known: v0.28.1, v0.29.0." in message
    assert "bkprov versions --refresh" in message


def test_lookup_unknown_runc_names_known(lookup_module):
    with pytest.raises(AnsibleError) as info:
        lookup_module.LookupModule().run(["runc:v1.0.3"])
    assert "v1.0.3" in str(info.value)
    assert "v1.0.2" in str(info.value)


def test_lookup_empty_for_unknown_when_asked(lookup_module):
    assert lookup_module.LookupModule().run(["v0.99.0"], unknown="empty") == [{}]


def test_lookup_reads_the_users_overlay(lookup_module, cache):
    write_overlay(shared.overlay_path(), new_release())
    (entry,) = lookup_module.LookupModule().run(["v0.33.0"])
    assert (entry["version"], entry["origin"]) == ("v0.33.0", "overlay")


def test_lookup_fails_on_a_broken_catalog_with_every_problem(lookup_module, cache):
    doc = new_release(flags_era="E77")
    doc["versions"]["v0.34.0"] = dict(doc["versions"]["v0.33.0"], contents="Q", flags_era="E16")
    write_overlay(shared.overlay_path(), doc)
    with pytest.raises(AnsibleError) as info:
        lookup_module.LookupModule().run(["v0.10.6"])
    message = str(info.value)
    assert "is broken" in message and str(shared.overlay_path()) in message
    assert "v0.33.0 (overlay): unknown flags_era E77" in message
    assert "v0.34.0 (overlay): unknown contents Q" in message


@pytest.mark.parametrize("version", TAGS)
def test_lookup_and_driver_agree(release_of, version):
    entry = release_of(version)
    release = catalog.get(version)
    assert tuple(entry["binaries"]) == release.binaries
    assert entry["runc_pin"]["describe"] == release.runc_pin
    assert entry["runc"]["url"] == release.runc_url
    assert entry["socket_activation"] == release.socket_activation
    assert entry["dockerfile_copy"]["mode"] == release.copy
    assert entry["sha256"] == release.sha256


# ---------------------------------------------------------------- the driver's typed view


def test_driver_unknown_version_fails_with_exit_code_2_and_nearest_versions():
    with pytest.raises(BkprovError) as info:
        catalog.get("v0.99.0")
    assert info.value.exit_code == 2
    message = str(info.value)
    assert "v0.99.0" in message and "v0.32.2" in message and "bkprov versions" in message


def test_driver_version_without_v_prefix_resolves():
    release = catalog.get("0.10.6")
    assert release.version == "v0.10.6"
    assert release.sha256 == SHA_V0106


def test_driver_as_json_has_the_cli_keys():
    data = catalog.get("v0.4.0").as_json()
    assert data["version"] == "v0.4.0"
    assert data["runc"] == "v1.0.0-rc6-43"
    assert data["copy"] == "helper-image"
    assert data["copy_image"] == COPY_V040
    assert data["sha256"] is None
    assert data["socket_activation"] is False
    assert catalog.get("v0.3.0").copy_image == COPY_V030
