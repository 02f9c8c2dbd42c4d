"""Fixtures shared by the unit tests: repository paths, the collection's plugins, an isolated cache."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "collection"
ROLES = COLLECTION / "roles"
CATALOG_FILE = COLLECTION / "catalog" / "versions.yml"
LOOKUP_FILE = COLLECTION / "plugins" / "lookup" / "catalog.py"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def roles_dir() -> Path:
    return ROLES


@pytest.fixture(scope="session")
def lookup_module() -> ModuleType:
    """collection/plugins/lookup/catalog.py, imported by file path (no installed collection needed)."""
    return _load("bkprov_unit_lookup_catalog", LOOKUP_FILE)


@pytest.fixture(scope="session")
def release_of(lookup_module):
    """The lookup plugin's resolved entry of one version (what roles see as __buildkit_release)."""

    def resolve(version: str) -> dict:
        (entry,) = lookup_module.LookupModule().run([version])
        return entry

    return resolve


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty artifact cache, set as BKPROV_CACHE; no mirror."""
    path = tmp_path / "cache"
    monkeypatch.setenv("BKPROV_CACHE", str(path))
    monkeypatch.delenv("BKPROV_MIRROR", raising=False)
    return path
