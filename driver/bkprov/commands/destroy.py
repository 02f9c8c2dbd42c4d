"""`bkprov destroy NAME|--all`: remove bkprov's targets (a container with its BuildKit volume, a VM)."""

from __future__ import annotations

import argparse

from bkprov.commands.options import Subparsers
from bkprov.console import log
from bkprov.errors import EXIT_USAGE, BkprovError


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("destroy", help="remove a target and its BuildKit volume")
    parser.add_argument("name", nargs="?")
    parser.add_argument("--all", action="store_true", help="every bkprov target")
    parser.set_defaults(run=run)


def run(options: argparse.Namespace) -> int:
    from bkprov import recorded
    from bkprov.targets import all_targets, find

    if options.all:
        targets = all_targets()
    elif options.name:
        targets = [find(options.name)]
    else:
        raise BkprovError("name a target or pass --all", exit_code=EXIT_USAGE)
    for target in targets:
        target.destroy()
        recorded.forget(target.kind, target.name)
        log(f"destroyed {target.kind} {target.name}" + (" and its volume" if target.kind == "container" else ""))
    return 0
