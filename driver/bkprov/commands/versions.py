"""`bkprov versions`: the BuildKit versions the catalog knows."""

from __future__ import annotations

import argparse

from rich.table import Table

from bkprov import catalog
from bkprov.commands.options import Subparsers, add_json
from bkprov.console import log, out, print_json


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("versions", help="list the BuildKit versions bkprov knows")
    parser.add_argument("--pre", action="store_true", help="also list release candidates (hidden by default)")
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="first add upstream releases the catalog lacks to your overlay (<cache>/catalog/overlay.yml)",
    )
    add_json(parser)
    parser.set_defaults(run=run)


def run(options: argparse.Namespace) -> int:
    if options.refresh:
        from bkprov.catalog_refresh import refresh

        for line in refresh(log=log).lines():
            log(line)
    releases = catalog.all_releases(pre=options.pre)
    if options.json:
        print_json([r.as_json() for r in releases])
        return 0
    table = Table("version", "released", "runc pin", "system runc", "fd://", "COPY", "sha256", "defects")
    for r in releases:
        table.add_row(
            r.version,
            r.released,
            r.runc_pin,
            r.runc_release,
            "yes" if r.socket_activation else "no",
            r.copy,
            (r.sha256 or "-")[:12],
            ", ".join(r.defects),
        )
    out.print(table)
    return 0
