"""Hatchling build hook: the wheel carries every playbook and the whole collection.

The list is derived from the tree, never written by hand: every file under playbooks/ and under
collection/, in the checkout's layout, under bkprov/_data/ (bkprov.paths finds them there). In
the checkout, playbooks/collections/ansible_collections/bkprov/buildkit is a symlink to
collection/; it is skipped and the collection mapped to its path, so a wheel built from the
checkout and one built from the sdist (which keeps no symlinks) are the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

DATA = "bkprov/_data/playbooks"
COLLECTIONS = Path("collections")  # inside playbooks/: the symlinked collections root
TREES = {
    "playbooks": DATA,
    "collection": f"{DATA}/collections/ansible_collections/bkprov/buildkit",
}
SKIPPED_PARTS = {"__pycache__", ".pytest_cache", "output"}  # bytecode; ansible-test's tests/output


class DataFilesHook(BuildHookInterface):
    PLUGIN_NAME = "bkprov-data"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return  # an editable install reads playbooks/ and collection/ in place
        root = Path(self.root)
        for source, target in TREES.items():
            for path in sorted((root / source).rglob("*")):
                relative = path.relative_to(root / source)
                if source == "playbooks" and relative.parts[:1] == COLLECTIONS.parts:
                    continue
                if path.is_file() and not SKIPPED_PARTS & set(relative.parts) and path.suffix != ".pyc":
                    build_data["force_include"][str(path)] = f"{target}/{relative.as_posix()}"
