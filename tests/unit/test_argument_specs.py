"""meta/argument_specs.yml mirrors defaults/main.yml in every role; variables are role-prefixed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "collection" / "roles"
ROLES_WITH_SPECS = sorted(p.parent.parent.name for p in ROLES.glob("*/meta/argument_specs.yml"))
ALL_ROLES = sorted(p.name for p in ROLES.iterdir() if p.is_dir())
VALID_TYPES = {"str", "path", "bool", "int", "float", "list", "dict", "raw", "bits", "bytes", "jsonarg", "json"}


def load(path: Path):
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def defaults_of(role: str) -> dict:
    return load(ROLES / role / "defaults" / "main.yml") or {}


def specs_of(role: str) -> dict:
    return load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]


def test_every_role_has_argument_specs_and_defaults():
    assert ALL_ROLES == ["buildkit", "runc", "verify"]
    assert ROLES_WITH_SPECS == ALL_ROLES
    for role in ALL_ROLES:
        assert (ROLES / role / "defaults" / "main.yml").is_file(), role


@pytest.mark.parametrize("role", ROLES_WITH_SPECS)
def test_main_options_are_exactly_the_defaults(role):
    options = specs_of(role)["main"]["options"]
    assert set(options) == set(defaults_of(role))


@pytest.mark.parametrize("role", ROLES_WITH_SPECS)
def test_option_defaults_equal_role_defaults(role):
    defaults = defaults_of(role)
    for name, option in specs_of(role)["main"]["options"].items():
        if option.get("required"):
            # Required options carry an empty placeholder in defaults/main.yml and no spec default.
            assert name in defaults, name
            continue
        assert "default" in option, f"{role}: {name} has no default in argument_specs"
        assert option["default"] == defaults[name], f"{role}: {name}"
        assert str(option["default"]) == str(defaults[name]), f"{role}: {name}"


@pytest.mark.parametrize("role", ROLES_WITH_SPECS)
def test_every_option_has_description_and_type(role):
    for entry_point, spec in specs_of(role).items():
        assert spec.get("short_description"), f"{role}/{entry_point}"
        for name, option in spec.get("options", {}).items():
            assert option.get("description"), f"{role}/{entry_point}: {name} has no description"
            assert option.get("type") in VALID_TYPES, f"{role}/{entry_point}: {name} type {option.get('type')!r}"
            if option["type"] == "list":
                assert option.get("elements"), f"{role}/{entry_point}: {name} list without elements"


@pytest.mark.parametrize("role", ROLES_WITH_SPECS)
def test_option_types_match_default_values(role):
    python_types = {"str": str, "path": str, "bool": bool, "int": int, "list": list, "dict": dict}
    for name, option in specs_of(role)["main"]["options"].items():
        value = defaults_of(role)[name]
        if isinstance(value, str) and "{{" in value:
            continue  # templated default (from the environment or another role): its type shows at run time
        assert isinstance(value, python_types[option["type"]]), f"{role}: {name}={value!r} is not {option['type']}"


def test_buildkit_uninstall_entry_point():
    specs = specs_of("buildkit")
    defaults = defaults_of("buildkit")
    assert "uninstall" in specs
    options = specs["uninstall"]["options"]
    assert options
    assert set(options) <= set(defaults)
    assert "buildkit_purge" in options
    for name, option in options.items():
        assert option["default"] == defaults[name], name


def test_required_options():
    assert specs_of("buildkit")["main"]["options"]["buildkit_version"]["required"] is True
    assert specs_of("runc")["main"]["options"]["runc_version"]["required"] is True


@pytest.mark.parametrize("role", ALL_ROLES)
def test_defaults_are_role_prefixed(role):
    unprefixed = [name for name in defaults_of(role) if not name.startswith(role + "_")]
    assert unprefixed == []


@pytest.mark.parametrize("role", ALL_ROLES)
def test_internal_vars_are_role_prefixed(role):
    path = ROLES / role / "vars" / "main.yml"
    names = list(load(path) or {}) if path.is_file() else []
    assert [n for n in names if not n.startswith(f"__{role}_")] == []
