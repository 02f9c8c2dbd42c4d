"""`bkprov create NAME`: make a target without installing anything (molecule's create step uses it)."""

from __future__ import annotations

import argparse

from bkprov.commands.options import Subparsers, add_json, add_new_target, spec, target_name
from bkprov.console import log, print_json


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("create", help="make a target without installing anything")
    parser.add_argument("name", type=target_name)
    add_new_target(parser)
    parser.add_argument("--version", dest="version", default="", help="label the target with this BuildKit version")
    add_json(parser)
    parser.set_defaults(run=run)


def run(options: argparse.Namespace) -> int:
    from bkprov import targets

    target = targets.make(spec(options, options.name, options.version), log)
    target.start()
    if options.json:
        print_json({"name": target.name, "target": target.kind, "inventory": target.inventory()})
    else:
        log(f"created {target.kind} {target.name}")
    return 0
