"""`bkprov exec NAME -- CMD`: run a command in a target bkprov made."""

from __future__ import annotations

import argparse

from bkprov.commands.options import Subparsers
from bkprov.errors import EXIT_USAGE, BkprovError


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("exec", help="run a command in a target")
    parser.add_argument("name")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD")
    parser.set_defaults(run=run)


def run(options: argparse.Namespace) -> int:
    from bkprov.targets import find

    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    if not command:
        raise BkprovError("give a command after --, e.g. bkprov exec NAME -- buildctl debug workers", EXIT_USAGE)
    return find(options.name).exec(command)
