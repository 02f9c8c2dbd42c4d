"""Running bkprov's playbooks for a command: which hosts and how many at once, live progress,
doctor on the hosts that failed, and what a rollout had not reached."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bkprov.console import err, log
from bkprov.results import FAILED, Finding, PlayResult
from bkprov.targets import Inventory

# Ansible starts min(forks, hosts in the batch) workers: 10 is one worker per host up to ten hosts
# (and never fewer than Ansible's own default of 5 where there are more hosts than that).
DEFAULT_FORKS = 10


@dataclass(frozen=True)
class Fleet:
    """Which of the inventory's hosts a play runs on, how many at once, and how a rollout proceeds."""

    limit: str | None = None  # an Ansible host pattern (--limit)
    forks: int = DEFAULT_FORKS
    serial: str | None = None  # hosts per batch, "2" or "25%" (--serial); None: all hosts at once
    max_fail: int | None = None  # percent of a batch that may fail before the play stops (--max-fail)

    @property
    def rolling(self) -> bool:
        return self.serial is not None

    def extravars(self) -> dict[str, Any]:
        """The play keywords provision.yml reads: serial and max_fail_percentage."""
        extra: dict[str, Any] = {}
        if self.serial is not None:
            extra["bkprov_serial"] = int(self.serial) if self.serial.isdigit() else self.serial
        # A rolling upgrade stops at the first failed batch unless told otherwise: the hosts after it
        # keep their old, working version.
        max_fail = self.max_fail if self.max_fail is not None else (0 if self.rolling else None)
        if max_fail is not None:
            extra["bkprov_max_fail_percentage"] = max_fail
        return extra


ALL = Fleet()


def run_play(
    playbook: str, inventory: Inventory, extra: dict[str, Any], title: str, verbose: int = 0, fleet: Fleet = ALL
) -> PlayResult:
    """Run one of playbooks/*.yml with a live display (Ansible's own output with -v)."""
    from bkprov.display import PlayDisplay
    from bkprov.runner import run_playbook

    with PlayDisplay(err, title, verbose=verbose > 0) as display:
        return run_playbook(
            playbook,
            inventory,
            extra,
            sink=display,
            verbosity=max(verbose - 1, 0),
            limit=fleet.limit,
            forks=fleet.forks,
        )


def doctor(inventory: Inventory, verbose: int = 0, quiet: bool = False, fleet: Fleet = ALL) -> PlayResult:
    if quiet:
        from bkprov.runner import run_playbook

        return run_playbook("doctor.yml", inventory, {}, limit=fleet.limit, forks=fleet.forks)
    return run_play("doctor.yml", inventory, {}, "doctor", verbose, fleet)


def auto_doctor(
    result: PlayResult, inventory: Inventory, verbose: int, show: bool = True, fleet: Fleet = ALL
) -> list[Finding]:
    """After a failure, run doctor on the hosts that failed (only them: the others are fine, and
    unreachable ones cannot be read) and attach each host's problems to its result; return them all."""
    failed = [name for name, host in result.hosts.items() if host.status == FAILED]
    if not failed:
        return []
    if show:
        log(f"running doctor on the host(s) that failed: {', '.join(failed)}")
    diagnosed = doctor(inventory, verbose, quiet=not show, fleet=Fleet(limit=",".join(failed), forks=fleet.forks))
    result.attach_doctor(diagnosed)
    return [f for name in failed if name in diagnosed.hosts for f in diagnosed.hosts[name].problems]


def installed_versions(inventory: Inventory, fleet: Fleet = ALL) -> PlayResult:
    """What each host runs now (playbooks/installed.yml: one read-only round trip per host)."""
    from bkprov.runner import run_playbook

    log("reading the installed BuildKit version of every host before the rollout")
    return run_playbook("installed.yml", inventory, {}, limit=fleet.limit, forks=fleet.forks)
