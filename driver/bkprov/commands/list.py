"""`bkprov list`: the targets bkprov made."""

from __future__ import annotations

import argparse

from rich.table import Table

from bkprov.commands.options import Subparsers, add_json
from bkprov.console import out, print_json


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("list", help="list bkprov's targets")
    add_json(parser)
    parser.set_defaults(run=run)


def run(options: argparse.Namespace) -> int:
    from bkprov.targets import all_targets

    targets = all_targets()
    if options.json:
        print_json(
            [
                {"name": t.name, "target": t.kind, "version": t.version, "status": t.status, "detail": t.detail}
                for t in targets
            ]
        )
        return 0
    table = Table("name", "target", "version", "status", "detail")
    for t in targets:
        table.add_row(t.name, t.kind, t.version, t.status, t.detail)
    out.print(table)
    return 0
