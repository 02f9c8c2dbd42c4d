"""`bkprov uninstall NAME|--inventory|--host|--container`: remove BuildKit; keep its data unless --purge."""

from __future__ import annotations

import argparse

from bkprov.commands.options import Subparsers, add_fleet, add_selection, add_verbose, fleet, selection
from bkprov.console import log
from bkprov.plays import run_play
from bkprov.report import show_failures


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "uninstall", help="remove BuildKit from a target or hosts; keeps its data unless --purge"
    )
    add_selection(parser)
    parser.add_argument("--purge", action="store_true", help="also delete /var/lib/buildkit")
    add_fleet(parser)
    add_verbose(parser)
    parser.set_defaults(run=run)


def run(options: argparse.Namespace) -> int:
    from bkprov.targets import resolve

    purge: bool = options.purge
    target = resolve(selection(options))
    target.start()  # uninstalling changes the target anyway; a stopped container is started for it
    extra = {"buildkit_purge": purge}
    result = run_play("uninstall.yml", target.inventory(), extra, "uninstall", options.verbose, fleet(options))
    show_failures(result)
    if result.succeeded:
        kept = "removed /var/lib/buildkit too" if purge else "kept /var/lib/buildkit (--purge removes it)"
        log(f"uninstalled BuildKit (units, binaries, configuration, group); {kept}")
    return result.exit_code()
