"""Running bkprov's playbooks for a command: live progress, and doctor after a failure."""

from __future__ import annotations

from typing import Any

from bkprov.console import err, log
from bkprov.results import Finding, PlayResult
from bkprov.targets import Inventory


def run_play(playbook: str, inventory: Inventory, extra: dict[str, Any], title: str, verbose: int = 0) -> PlayResult:
    """Run one of playbooks/*.yml with a live display (Ansible's own output with -v)."""
    from bkprov.display import PlayDisplay
    from bkprov.runner import run_playbook

    with PlayDisplay(err, title, verbose=verbose > 0) as display:
        return run_playbook(playbook, inventory, extra, sink=display, verbosity=max(verbose - 1, 0))


def doctor(inventory: Inventory, verbose: int = 0, quiet: bool = False) -> PlayResult:
    if quiet:
        from bkprov.runner import run_playbook

        return run_playbook("doctor.yml", inventory, {})
    return run_play("doctor.yml", inventory, {}, "doctor", verbose)


def auto_doctor(inventory: Inventory, verbose: int, show: bool = True) -> list[Finding]:
    """After a failure, run doctor (it names known causes with their evidence); return its problems."""
    from bkprov.report import show_findings

    if show:
        log("the run failed; running doctor on the target")
    result = doctor(inventory, verbose, quiet=not show)
    if show and result.findings:
        show_findings(result.findings)
    return [f for host in result.hosts.values() for f in host.problems]
