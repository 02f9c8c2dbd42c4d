"""`bkprov doctor NAME|--inventory|--host|--container`: known causes of failure, with evidence and fixes.

Exit 0: every host healthy; 1: a problem found; 2: a host could not be checked (unreachable,
unreadable, or Ansible never got to it).
"""

from __future__ import annotations

import argparse

from bkprov.commands.options import Subparsers, add_fleet, add_json, add_selection, add_verbose, fleet, selection
from bkprov.console import out, print_json
from bkprov.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from bkprov.plays import doctor
from bkprov.report import show_findings, show_hosts, tally
from bkprov.results import PlayResult


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "doctor", help="diagnose a target or hosts: known causes of failure, evidence, fixes"
    )
    add_selection(parser)
    add_fleet(parser)
    add_json(parser)
    add_verbose(parser)
    parser.set_defaults(run=run)


def unchecked(result: PlayResult) -> list[str]:
    """Hosts doctor could not check, with why: one line each."""
    lines = [
        f"{h.host}: {h.error or 'not checked'}" for h in result.hosts.values() if h.phase != "done" or not h.published
    ]
    if not result.ran:
        lines.append("ansible-playbook did not reach any host: " + " / ".join(result.output_tail[-3:]))
    return lines


def exit_code(result: PlayResult) -> int:
    if unchecked(result):
        return EXIT_USAGE
    return EXIT_OK if result.succeeded else EXIT_FAILED


def run(options: argparse.Namespace) -> int:
    from bkprov.targets import resolve

    target = resolve(selection(options))
    result = doctor(target.inventory(), options.verbose, fleet=fleet(options))
    if options.json:
        hosts = {name: host.as_json() for name, host in result.hosts.items()}
        print_json({"ok": result.succeeded, "findings": result.findings, "hosts": hosts})
        return exit_code(result)
    show_findings(result.findings)
    show_hosts(result)  # per host, as provision and verify: outcome, version, problems (or why it was not checked)
    out.print(f"doctor: {tally(result)}", highlight=False)
    return exit_code(result)
