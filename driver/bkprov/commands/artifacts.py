"""`bkprov artifacts list|import`: the artifact cache."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from bkprov import artifacts, catalog
from bkprov.commands.options import Subparsers, add_json
from bkprov.console import log, out, print_json
from bkprov.paths import cache_dir


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("artifacts", help="the artifact cache")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="cached artifacts and their hashes")
    listing.add_argument("--all", action="store_true", help="also list what is not cached")
    add_json(listing)
    importing = actions.add_parser("import", help="add a locally built file to the cache and record its sha256")
    importing.add_argument("kind", choices=["buildkit", "runc"])
    importing.add_argument("version")
    importing.add_argument("file")
    parser.set_defaults(run=run)


def run(options: argparse.Namespace) -> int:
    return run_import(options) if options.action == "import" else run_list(options)


def rows() -> list[dict[str, Any]]:
    """Every file the catalog's releases need (runc files once), with cache state and hash."""
    lock = artifacts.lock_entries()
    found: dict[str, dict[str, Any]] = {}
    for release in catalog.all_releases():
        for item in artifacts.needed(release.version):
            if item.relpath in found:
                continue
            entry = lock.get(item.relpath, {})
            found[item.relpath] = {
                "kind": item.kind,
                "version": item.version,
                "file": item.relpath,
                "cached": item.cached,
                "sha256": entry.get("sha256") or item.sha256,
                "origin": entry.get("origin") or ("catalog" if item.sha256 else None),
            }
    return list(found.values())


def run_list(options: argparse.Namespace) -> int:
    listed = rows()
    if options.json:
        print_json({"cache": str(cache_dir()), "artifacts": listed})
        return 0
    table = Table("kind", "version", "cached", "origin", "sha256", title=f"cache: {cache_dir()}")
    for row in listed:
        if row["cached"] or options.all:
            table.add_row(
                row["kind"],
                row["version"],
                "yes" if row["cached"] else "-",
                row["origin"] or "-",
                (row["sha256"] or "-")[:16],
            )
    out.print(table)
    return 0


def run_import(options: argparse.Namespace) -> int:
    kind, version, path = options.kind, options.version, options.file
    if kind == "buildkit":
        version = catalog.choose(version)
    result, checked = artifacts.import_file(kind, version, path)
    log(checked)
    log(f"imported {path} as {result.relpath} (sha256 {result.sha256}); provisions of {version} use it")
    return 0
