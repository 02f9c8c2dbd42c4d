"""`bkprov verify NAME|--inventory|--host|--container`: run the verify build on installed BuildKit."""

from __future__ import annotations

import argparse
import time
from typing import Any

from bkprov.commands.options import (
    Subparsers,
    add_fleet,
    add_json,
    add_registry,
    add_selection,
    add_verbose,
    fleet,
    selection,
)
from bkprov.plays import auto_doctor, run_play
from bkprov.report import report


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("verify", help="run the verify build on an existing target")
    add_selection(parser)
    add_registry(parser)
    add_fleet(parser)
    add_json(parser)
    add_verbose(parser)
    parser.set_defaults(run=run)


def run(options: argparse.Namespace) -> int:
    from bkprov.targets import resolve

    as_json, verbose, hosts = bool(options.json), int(options.verbose), fleet(options)
    target = resolve(selection(options))
    target.start()
    extra: dict[str, Any] = {}
    if target.version:
        extra["verify_buildkit_version"] = target.version
    if options.registry:
        extra["verify_registry"] = options.registry
    started = time.monotonic()
    inventory = target.inventory()
    result = run_play("verify.yml", inventory, extra, f"verify {target.name}", verbose, hosts)
    problems = auto_doctor(result, inventory, verbose, show=not as_json, fleet=hosts)
    summary = {
        "version": target.version,
        "target": target.kind,
        "name": target.name,
        "seconds": {"total": round(time.monotonic() - started, 2)},
        "doctor": problems,
    }
    return report(result, summary, as_json)
