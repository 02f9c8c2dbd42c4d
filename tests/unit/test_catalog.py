"""The version catalog (collection/catalog/versions.yml): schema, facts, and both of its readers."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleError

from bkprov import catalog
from bkprov.errors import BkprovError

# The reference table (shared/reference/buildkit-versions.md), oldest first.
REFERENCE_VERSIONS = [
    "v0.3.0",
    "v0.4.0",
    "v0.5.0",
    "v0.6.0",
    "v0.7.0",
    "v0.8.0",
    "v0.9.0",
    "v0.10.0",
    "v0.10.3",
    "v0.10.5",
    "v0.10.6",
    "v0.11.0-rc1",
    "v0.11.0-rc2",
    "v0.11.0",
    "v0.12.0",
    "v0.12.4",
    "v0.12.5",
    "v0.13.0",
    "v0.15.0",
    "v0.17.0",
    "v0.20.2",
    "v0.21.0-rc1",
    "v0.21.0-rc2",
    "v0.21.0",
    "v0.21.1",
    "v0.23.0",
    "v0.25.0",
]
COPY_V030 = "tonistiigi/copy:v0.1.7@sha256:9aab7d9ab369c6daf4831bf0653f7592110ab4b7e8a33fee2b9dca546e9d3089"
COPY_V040 = "docker/dockerfile-copy:v0.1.9@sha256:e8f159d3f00786604b93c675ee2783f8dc194bb565e61ca5788f6a6e9d304061"
CATALOG_FILE = Path(__file__).resolve().parents[2] / "collection" / "catalog" / "versions.yml"
SHA_V0106 = "9a21a41298c4a2a7a2b57cb90d37463d3a9057aedfe97a04b0e4fd6f622549d8"


def fresh_raw() -> dict:
    """A private copy of the real catalog document (load_raw is cached: never mutate it)."""
    return copy.deepcopy(catalog.load_raw())


def releases_by_version() -> dict[str, catalog.Release]:
    return {r.version: r for r in catalog.all_releases()}


def since(first: str) -> set[str]:
    return set(REFERENCE_VERSIONS[REFERENCE_VERSIONS.index(first) :])


# ---------------------------------------------------------------- schema


def test_real_catalog_is_valid():
    with CATALOG_FILE.open(encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    assert catalog.validate(raw) == []


def test_catalog_has_exactly_the_reference_versions_in_order():
    assert catalog.versions() == REFERENCE_VERSIONS
    assert len(catalog.all_releases()) == 27


def test_versions_are_listed_oldest_first():
    dates = [r.released for r in catalog.all_releases()]
    assert dates == sorted(dates)


@pytest.mark.parametrize("field", sorted(catalog.VERSION_FIELDS))
def test_missing_field_is_reported(field):
    raw = fresh_raw()
    del raw["versions"]["v0.10.6"][field]
    assert f"v0.10.6: missing {field}" in catalog.validate(raw)


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
    ],
)
def test_wrong_type_is_reported(field, bad):
    raw = fresh_raw()
    raw["versions"]["v0.10.6"][field] = bad
    assert f"v0.10.6: {field} has the wrong type" in catalog.validate(raw)


@pytest.mark.parametrize("section", ["contents", "flag_eras", "defects", "runc_releases", "runc_defects", "versions"])
def test_missing_section_is_reported(section):
    raw = fresh_raw()
    del raw[section]
    assert f"section {section!r} missing" in catalog.validate(raw)


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
        (lambda e: e.update(runc_pin={"commit": "abc"}), "v0.10.6: runc_pin needs describe"),
    ],
)
def test_inconsistent_entry_is_reported(change, problem):
    raw = fresh_raw()
    change(raw["versions"]["v0.10.6"])
    assert catalog.validate(raw) == [problem]


def test_runc_release_missing_field_is_reported():
    raw = fresh_raw()
    del raw["runc_releases"]["v1.0.2"]["url"]
    assert "runc v1.0.2: missing url" in catalog.validate(raw)


# ---------------------------------------------------------------- facts


def test_socket_activation_exactly_from_v0_9_0():
    active = {r.version for r in catalog.all_releases() if r.socket_activation}
    assert active == since("v0.9.0")


def test_notify_exactly_from_v0_6_0():
    notify = {r.version for r in catalog.all_releases() if r.notify}
    assert notify == since("v0.6.0")


def test_helper_image_copy_exactly_for_v0_3_0_and_v0_4_0():
    by_version = releases_by_version()
    helper = {v: r.copy_image for v, r in by_version.items() if r.copy == "helper-image"}
    assert helper == {"v0.3.0": COPY_V030, "v0.4.0": COPY_V040}
    assert {r.copy for v, r in by_version.items() if v not in helper} == {"fileop"}


@pytest.mark.parametrize(
    ("version", "pin", "system_runc"),
    [
        ("v0.4.0", "v1.0.0-rc6-43", "v1.0.0-rc7"),
        ("v0.10.6", "v1.0.2", "v1.0.2"),
        ("v0.25.0", "v1.3.1", "v1.3.1"),
    ],
)
def test_runc_pins(version, pin, system_runc):
    release = catalog.get(version)
    assert release.runc_pin == pin
    assert release.runc_release == system_runc
    assert release.runc_url == f"https://github.com/opencontainers/runc/releases/download/{system_runc}/runc.amd64"


def test_sha256_known_and_unknown():
    assert catalog.get("v0.10.6").sha256 == SHA_V0106
    assert catalog.get("v0.4.0").sha256 is None


def test_cgroupns_defect_only_on_v0_12_0():
    affected = {r.version for r in catalog.all_releases() if "cgroupns-cgroup-v1" in r.defects}
    assert affected == {"v0.12.0"}


@pytest.mark.parametrize("version", REFERENCE_VERSIONS)
def test_url_and_tarball(version):
    release = catalog.get(version)
    assert release.tarball == f"buildkit-{version}.linux-amd64.tar.gz"
    assert (
        release.url
        == f"https://github.com/moby/buildkit/releases/download/{version}/buildkit-{version}.linux-amd64.tar.gz"
    )


def test_binaries_come_from_the_contents_letter():
    release = catalog.get("v0.10.6")
    assert release.binaries == tuple(catalog.load_raw()["contents"]["C"])
    assert {"buildctl", "buildkitd", "buildkit-runc"} <= set(release.binaries)


def test_as_json_has_the_cli_keys():
    data = catalog.get("v0.4.0").as_json()
    assert data["version"] == "v0.4.0"
    assert data["runc"] == "v1.0.0-rc6-43"
    assert data["copy"] == "helper-image"
    assert data["copy_image"] == COPY_V040
    assert data["sha256"] is None
    assert data["socket_activation"] is False


# ---------------------------------------------------------------- lookups by name


def test_unknown_version_fails_with_exit_code_2_and_nearest_versions():
    with pytest.raises(BkprovError) as info:
        catalog.get("v0.99.0")
    assert info.value.exit_code == 2
    message = str(info.value)
    assert "v0.99.0" in message
    assert "v0.9.0" in message
    assert "bkprov versions" in message


def test_version_without_v_prefix_resolves():
    release = catalog.get("0.10.6")
    assert release.version == "v0.10.6"
    assert release.sha256 == SHA_V0106


def test_unknown_version_without_v_prefix_still_fails():
    with pytest.raises(BkprovError) as info:
        catalog.get("0.99.0")
    assert info.value.exit_code == 2


# ---------------------------------------------------------------- the collection's lookup plugin


def test_lookup_derived_fields_for_v0_10_6(release_of):
    entry = release_of("v0.10.6")
    assert entry["version"] == "v0.10.6"
    assert entry["binaries"] == catalog.load_raw()["contents"]["C"]
    assert "--oci-worker-binary" in entry["flags"]  # era E3
    assert "--containerd-worker-rootless" in entry["flags"]  # era E6
    assert "--trace" not in entry["flags"]  # era E8
    assert "--config" in entry["flags"]  # era E0
    assert {"mirrors", "http", "insecure"} <= set(entry["registry_keys"])
    assert entry["runc"]["version"] == "v1.0.2"
    assert entry["runc_pin"]["describe"] == "v1.0.2"
    assert entry["defect_details"] == []


def test_lookup_registry_keys_of_the_first_eras(release_of):
    assert release_of("v0.4.0")["registry_keys"] == ["mirrors", "http"]
    assert "--oci-worker-binary" not in release_of("v0.4.0")["flags"]


def test_lookup_newest_era_has_every_flag(release_of):
    flags = release_of("v0.25.0")["flags"]
    assert {"--trace", "--save-cache-debug", "--cdi-spec-dir", "--oci-worker-binary"} <= set(flags)
    assert len(flags) == len(set(flags))


def test_lookup_defect_details(release_of):
    details = release_of("v0.12.0")["defect_details"]
    assert [d["id"] for d in details] == ["cgroupns-cgroup-v1"]
    assert "4108" in details[0]["summary"]


def test_lookup_runc_release(lookup_module):
    (entry,) = lookup_module.LookupModule().run(["runc:v1.0.0-rc7"])
    assert entry["version"] == "v1.0.0-rc7"
    assert entry["defects"] == ["keycreate"]
    assert entry["defect_details"][0]["id"] == "keycreate"
    assert "keycreate" in entry["defect_details"][0]["summary"]


def test_lookup_several_terms(lookup_module):
    entries = lookup_module.LookupModule().run([" v0.4.0 ", "v0.25.0"])
    assert [e["version"] for e in entries] == ["v0.4.0", "v0.25.0"]


def test_lookup_unknown_version_names_nearest(lookup_module):
    with pytest.raises(AnsibleError) as info:
        lookup_module.LookupModule().run(["v0.99.0"])
    assert "v0.99.0" in str(info.value)
    assert "v0.9.0" in str(info.value)


def test_lookup_unknown_runc_names_known(lookup_module):
    with pytest.raises(AnsibleError) as info:
        lookup_module.LookupModule().run(["runc:v1.0.3"])
    assert "v1.0.3" in str(info.value)
    assert "v1.0.2" in str(info.value)


@pytest.mark.parametrize("version", REFERENCE_VERSIONS)
def test_lookup_and_driver_agree(release_of, version):
    entry = release_of(version)
    release = catalog.get(version)
    assert tuple(entry["binaries"]) == release.binaries
    assert entry["runc_pin"]["describe"] == release.runc_pin
    assert entry["runc"]["url"] == release.runc_url
    assert entry["socket_activation"] == release.socket_activation
    assert entry["dockerfile_copy"]["mode"] == release.copy


def test_problems_in_one_version_do_not_hide_those_of_later_versions():
    raw = fresh_raw()
    del raw["versions"]["v0.3.0"]["notify"]
    raw["versions"]["v0.10.6"]["contents"] = "Z"
    problems = catalog.validate(raw)
    assert "v0.3.0: missing notify" in problems
    assert "v0.10.6: unknown contents Z" in problems
