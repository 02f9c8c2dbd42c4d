"""Where things live: the shipped playbooks and collection, and the user's cache.

One layout in the checkout and in the wheel: ``playbooks/`` holds the playbooks and
``playbooks/collections/``, a collections root where ``ansible_collections/bkprov/buildkit``
is the collection (a symlink to ``collection/`` in the checkout, the files themselves in the
wheel, under ``bkprov/_data/``). Ansible and Python find the collection there by its name.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bkprov.errors import EXIT_USAGE, BkprovError

PACKAGE = Path(__file__).resolve().parent
COLLECTION = Path("ansible_collections", "bkprov", "buildkit")


def playbooks_dir() -> Path:
    """The playbooks: inside the wheel (bkprov/_data), else in the source checkout."""
    for candidate in (PACKAGE / "_data" / "playbooks", PACKAGE.parents[1] / "playbooks"):
        if (candidate / "collections" / COLLECTION / "galaxy.yml").is_file():
            return candidate
    raise BkprovError(f"bkprov's playbooks and collection are missing next to {PACKAGE}; reinstall bkprov")


def collections_root() -> Path:
    """The collections root that holds bkprov.buildkit (for ANSIBLE_COLLECTIONS_PATH and sys.path)."""
    return playbooks_dir() / "collections"


def collection_dir() -> Path:
    return collections_root() / COLLECTION


def catalog_file() -> Path:
    return collection_dir() / "catalog" / "versions.yml"


def expose_collection() -> None:
    """Make ``ansible_collections.bkprov.buildkit`` importable (``ansible_collections`` is a namespace package).

    Called once when the bkprov package is imported. When the data is missing, the import of
    the collection's module_utils fails later and the CLI says to reinstall.
    """
    try:
        root = str(collections_root())
    except BkprovError:
        return
    if root not in sys.path:
        sys.path.insert(0, root)


def cache_dir() -> Path:
    """The artifact cache (release layout); the roles use the same default."""
    # Imported here: module_utils is importable only once bkprov/__init__ has exposed the collection.
    from ansible_collections.bkprov.buildkit.plugins.module_utils.artifacts import default_cache_dir

    return Path(default_cache_dir())


def state_dir() -> Path:
    """bkprov's own files (runner data, VM disks, locks), kept out of the user's cwd."""
    path = cache_dir() / ".bkprov"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BkprovError(
            f"cannot write bkprov's cache {cache_dir()} ({exc.strerror}); "
            "make it writable or point BKPROV_CACHE at a writable directory",
            exit_code=EXIT_USAGE,
        ) from exc
    return path
