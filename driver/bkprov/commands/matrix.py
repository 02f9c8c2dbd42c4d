"""`bkprov matrix VERSION…|--all`: provision and verify many versions, each on a fresh target."""

from __future__ import annotations

import argparse
from pathlib import Path

from bkprov import catalog
from bkprov.commands.options import Subparsers
from bkprov.console import log, out
from bkprov.errors import EXIT_USAGE, BkprovError
from bkprov.targets import KINDS


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("matrix", help="provision and verify many versions, each on a fresh target")
    parser.add_argument("versions", nargs="*", metavar="VERSION")
    parser.add_argument("--all", action="store_true", help="every catalog version")
    parser.add_argument("--target", choices=KINDS, default="container")
    parser.add_argument("--jobs", type=int, default=1, help="versions at a time (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the targets")
    parser.add_argument("--registry", metavar="HOST:PORT", help="for helper-image COPY (v0.3.0, v0.4.0)")
    parser.add_argument("--network", help="container network mode (host to reach a registry on 127.0.0.1)")
    parser.add_argument("--report", default="bkprov-matrix", help="report path without suffix (.md and .json)")
    parser.set_defaults(run=run)


def run(options: argparse.Namespace) -> int:
    from bkprov.matrix import run_matrix

    versions = catalog.versions() if options.all else [catalog.get(v).version for v in options.versions]
    if not versions:
        raise BkprovError("name versions or pass --all", exit_code=EXIT_USAGE)
    extra = [
        *(["--registry", options.registry] if options.registry else []),
        *(["--network", options.network] if options.network else []),
    ]
    report_path = Path(options.report).resolve()
    rows = run_matrix(versions, options.target, options.jobs, options.keep, extra, report_path, out)
    log(f"report: {report_path.with_suffix('.md')} and .json")
    return 0 if all(r.phase == "ok" for r in rows) else 1
