"""`bkprov doctor NAME|--inventory|--host|--container`: known causes of failure, with evidence and fixes."""

from __future__ import annotations

import argparse

from bkprov.commands.options import Subparsers, add_json, add_selection, add_verbose, selection
from bkprov.console import err, print_json
from bkprov.plays import doctor
from bkprov.report import show_findings


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "doctor", help="diagnose a target or hosts: known causes of failure, evidence, fixes"
    )
    add_selection(parser)
    add_json(parser)
    add_verbose(parser)
    parser.set_defaults(run=run)


def run(options: argparse.Namespace) -> int:
    from bkprov.targets import resolve

    target = resolve(selection(options))
    result = doctor(target.inventory(), options.verbose)
    if options.json:
        print_json({"findings": result.findings, "ok": result.succeeded})
        return 0 if result.succeeded else 1
    if not result.findings:
        err.print("[red]doctor could not read the host:[/]\n" + "\n".join(result.output_tail), highlight=False)
        return 1
    problems = show_findings(result.findings)
    return 1 if problems or not result.succeeded else 0
