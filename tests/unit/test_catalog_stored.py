"""The checked catalog is kept as JSON in the controller cache, so each Ansible worker (a new process)
reads it back instead of parsing and checking the YAML again; it never outlives a change to either file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from ansible_collections.bkprov.buildkit.plugins.module_utils import catalog as shared

# Runs in a new process, as a worker does; with yaml importable or not (--no-yaml: only the stored copy can answer).
LOAD = """
import json, sys
if "--no-yaml" in sys.argv:
    sys.modules["yaml"] = None
from ansible_collections.bkprov.buildkit.plugins.module_utils import catalog
try:
    doc = catalog.load_checked(sys.argv[1], overlay=None)
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__ + ": " + str(exc)}))
else:
    released = doc["versions"]["v0.10.6"]["released"]
    print(json.dumps({"versions": sorted(doc["versions"]), "released": released, "sources": doc["_sources"]}))
"""


def load_in_new_process(catalog_file: Path, *flags: str) -> dict:
    collections = Path(shared.__file__).parents[5]  # the directory holding ansible_collections/bkprov
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(collections), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, "-c", LOAD, str(catalog_file), *flags], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def copy_of_the_catalog(tmp_path: Path, cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)  # bkprov keeps the copy only in a cache it already made
    path = tmp_path / "versions.yml"
    path.write_bytes(shared.CATALOG.read_bytes())
    return path


def stored(cache: Path) -> list[Path]:
    return sorted((cache / "catalog").glob(shared.STORED_PREFIX + "*.json"))


def test_a_checked_catalog_is_read_back_without_parsing_the_yaml(cache, tmp_path):
    catalog_file = copy_of_the_catalog(tmp_path, cache)
    first = load_in_new_process(catalog_file)
    assert "v0.10.6" in first["versions"]
    assert len(stored(cache)) == 1
    # yaml cannot even be imported now: the answer can only come from the stored copy.
    assert load_in_new_process(catalog_file, "--no-yaml") == first


def test_an_edited_catalog_is_parsed_again_and_replaces_the_stored_copy(cache, tmp_path):
    catalog_file = copy_of_the_catalog(tmp_path, cache)
    assert load_in_new_process(catalog_file)["released"] == "2022-11-10"
    before = stored(cache)
    doc = yaml.safe_load(catalog_file.read_text(encoding="utf-8"))
    doc["versions"]["v0.10.6"]["released"] = "2022-11-11"
    catalog_file.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    assert load_in_new_process(catalog_file)["released"] == "2022-11-11"
    assert stored(cache) != before and len(stored(cache)) == 1  # the old copy is gone
    assert load_in_new_process(catalog_file, "--no-yaml")["released"] == "2022-11-11"


def test_a_new_overlay_is_merged_not_hidden_by_the_stored_copy(cache, tmp_path):
    catalog_file = copy_of_the_catalog(tmp_path, cache)
    assert load_in_new_process(catalog_file)["sources"]["overlay"] is None
    overlay = cache / "catalog" / "overlay.yml"
    overlay.write_text(yaml.safe_dump({"schema": 1, "versions": {}}), encoding="utf-8")
    assert load_in_new_process(catalog_file)["sources"]["overlay"] == str(overlay)


def test_nothing_is_stored_before_bkprov_made_its_cache(cache, tmp_path):
    catalog_file = copy_of_the_catalog(tmp_path, cache)
    cache.rmdir()
    assert "v0.10.6" in load_in_new_process(catalog_file)["versions"]
    assert not cache.exists()


def test_a_broken_catalog_is_refused_every_time_and_never_stored(cache, tmp_path):
    catalog_file = copy_of_the_catalog(tmp_path, cache)
    doc = yaml.safe_load(catalog_file.read_text(encoding="utf-8"))
    doc["versions"]["v0.10.6"]["flags_era"] = "E999"
    catalog_file.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    for _ in range(2):
        assert "v0.10.6: unknown flags_era E999" in load_in_new_process(catalog_file)["error"]
    assert stored(cache) == []


def test_an_unwritable_cache_still_loads(cache, tmp_path):
    catalog_file = copy_of_the_catalog(tmp_path, cache)
    (cache / "catalog").write_text("a file where the directory would go", encoding="utf-8")
    assert "v0.10.6" in load_in_new_process(catalog_file)["versions"]
