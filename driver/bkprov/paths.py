"""Where things live: the shipped collection and playbooks, and the user's cache."""

from __future__ import annotations

import importlib.util
import os
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).resolve().parent


def data_root() -> Path:
    """The directory holding collection/ and playbooks/: inside the wheel, or the source checkout."""
    for root in (PACKAGE / "_data", PACKAGE.parents[1]):
        if (root / "collection" / "galaxy.yml").is_file() and (root / "playbooks").is_dir():
            return root
    raise RuntimeError(f"bkprov's collection/ and playbooks/ are missing next to {PACKAGE}; reinstall bkprov")


def collection_dir() -> Path:
    return data_root() / "collection"


def playbooks_dir() -> Path:
    return data_root() / "playbooks"


def catalog_file() -> Path:
    return collection_dir() / "catalog" / "versions.yml"


def cache_dir() -> Path:
    """The artifact cache (release layout); the roles use the same default."""
    configured = os.environ.get("BKPROV_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "bkprov"


def state_dir() -> Path:
    """bkprov's own files (runner data, collections link, VM disks), kept out of the user's cwd."""
    path = cache_dir() / ".bkprov"
    path.mkdir(parents=True, exist_ok=True)
    return path


def collections_path() -> Path:
    """A collections root where bkprov.buildkit resolves to the shipped collection."""
    root = state_dir() / "collections"
    link = root / "ansible_collections" / "bkprov" / "buildkit"
    link.parent.mkdir(parents=True, exist_ok=True)
    target = collection_dir()
    if not link.is_symlink() or Path(os.readlink(link)) != target:
        tmp = link.with_name(".buildkit.new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        tmp.replace(link)
    return root


@cache
def collection_module(name: str) -> ModuleType:
    """plugins/module_utils/<name>.py of the shipped collection: logic roles and driver share."""
    path = collection_dir() / "plugins" / "module_utils" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bkprov_collection_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while executing
    spec.loader.exec_module(module)
    return module
