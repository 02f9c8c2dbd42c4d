"""`bkprov provision VERSION`: install a BuildKit release on a target and prove it with a build.

Order matters: every input is checked before anything is fetched or created; then the
artifacts, then the target, then the play (doctor runs on the target when it fails).
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bkprov import catalog
from bkprov.commands.options import (
    Subparsers,
    add_fleet,
    add_json,
    add_new_target,
    add_registry,
    add_selection,
    add_verbose,
    fleet,
    selection,
    spec,
    tcp_address,
)
from bkprov.console import err, log, out
from bkprov.errors import EXIT_USAGE, BkprovError
from bkprov.plays import Fleet, auto_doctor, installed_versions, run_play
from bkprov.report import report
from bkprov.runner import PendingInventory
from bkprov.targets import Inventory, Selection, Spec, Target


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "provision", help="install a BuildKit version on a target and verify it with a build"
    )
    parser.add_argument("version", metavar="VERSION")
    add_new_target(parser, name_help="target name (default: bkprov-<version>)")
    add_selection(parser, positional_name=False)
    add_registry(parser)
    parser.add_argument(
        "--tcp",
        metavar="ADDR",
        type=tcp_address,
        help="also listen on tcp://HOST:PORT with mutual TLS (certificates made here)",
    )
    parser.add_argument(
        "--insecure-tcp", action="store_true", help="plaintext TCP: whoever reaches it is root on the target"
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="run the whole playbook even on a host that is exactly as bkprov's last verified run left it "
        "(by default such a host only gets the proof build again)",
    )
    add_fleet(parser, rollout=True)
    add_json(parser)
    add_verbose(parser)
    parser.set_defaults(run=run)


@dataclass(frozen=True)
class Request:
    version: str  # concrete catalog version
    existing: Selection  # hosts bkprov did not make, or nothing
    new: Spec  # the target to make when ``existing`` names none
    registry: str | None
    tcp: str | None
    insecure_tcp: bool
    full: bool
    json: bool
    verbose: int
    fleet: Fleet

    def extravars(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"buildkit_version": self.version, **self.fleet.extravars()}
        if self.registry:
            extra["buildkit_registries"] = {self.registry: {"http": True}}
            extra["verify_registry"] = self.registry
        if self.tcp:
            extra["buildkit_tcp_address"] = self.tcp
            extra["buildkit_insecure_tcp"] = self.insecure_tcp
        return extra


def request(options: argparse.Namespace) -> Request:
    from bkprov.targets.container import default_name

    version = catalog.choose(options.version)
    if catalog.is_alias(options.version, version):
        log(f"{options.version} is {version}")
    if options.insecure_tcp and not options.tcp:
        raise BkprovError("--insecure-tcp goes with --tcp ADDR", exit_code=EXIT_USAGE)
    return Request(
        version=version,
        existing=selection(options, by_name=False),
        new=spec(options, options.name or default_name(version), version),
        registry=options.registry,
        tcp=options.tcp,
        insecure_tcp=options.insecure_tcp,
        full=options.full,
        json=options.json,
        verbose=options.verbose,
        fleet=fleet(options),
    )


def check_target(req: Request) -> Target | None:
    """The existing hosts to provision (checked now), or None when bkprov makes the target; refuses before fetching."""
    from bkprov import targets
    from bkprov.targets import resolve

    if req.existing.given:
        target = resolve(req.existing)
        target.start()  # a stopped container bkprov did not make is refused here, not after the download
        return target
    targets.check(req.new)  # a foreign container of that name, no such image or network, missing QEMU
    return None


def prefetch(version: str) -> dict[str, str]:
    """Make the release's artifacts present and verified, with a progress bar for downloads; their sha256."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from bkprov import artifacts

    digests: dict[str, str] = {}
    for item in artifacts.needed(version):
        if item.cached:
            digests[item.relpath] = artifacts.fetch(item).sha256  # verifies the hash (cheap), raises on mismatch
            continue
        columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task(f"{item.kind} {item.version}", total=None)

            def advance(done: int, total: int | None, task: Any = task) -> None:
                progress.update(task, completed=done, total=total)

            result = artifacts.fetch(item, advance)
        log(f"fetched {result.relpath} ({result.origin} sha256 {result.sha256[:16]}…)")
        if result.warning:
            log(f"warning: {result.warning}")
        digests[item.relpath] = result.sha256
    return digests


def tcp_client_command(req: Request, host: str) -> str:
    """The buildctl command line that reaches the TCP listener from this machine."""
    from bkprov.paths import cache_dir

    if req.insecure_tcp:
        return f"buildctl --addr {req.tcp} debug workers"
    tls = cache_dir() / "tls" / host
    return (
        f"buildctl --addr {req.tcp} --tlscacert {tls}/ca.pem --tlscert {tls}/client.pem "
        f"--tlskey {tls}/client-key.pem debug workers"
    )


def run(options: argparse.Namespace) -> int:
    from bkprov import recorded, targets

    req = request(options)
    target = check_target(req)
    seconds: dict[str, float] = {}
    started = time.monotonic()
    digests = prefetch(req.version)
    seconds["artifacts"] = time.monotonic() - started
    inventory: Inventory | PendingInventory
    made: Background | None = None
    if target is None and not req.fleet.rolling and not targets.exists(req.new):
        # A new target is made (a container's systemd boots, a VM boots) while ansible-playbook starts
        # (~1 s of imports): the play reads its inventory once the target exists (PendingInventory).
        pending = PendingInventory()
        made = Background(lambda: make_new(req.new, pending, seconds))
        inventory = pending
    else:
        if target is None:
            t0 = time.monotonic()
            target = targets.make(req.new, log)
            target.start()
            seconds["target"] = time.monotonic() - t0
        inventory = target.inventory()
    # A rollout may stop before some hosts: read what they run first, to say which version they stay on.
    before = installed_versions(inventory, req.fleet) if req.fleet.rolling else None
    title = f"provision {req.version}" + (f" (serial {req.fleet.serial})" if req.fleet.rolling else "")
    extravars = {**req.extravars(), **recorded.RECORD_VARS}
    key = recorded.run_key(extravars, digests)
    # A host exactly as the last verified run left it needs only the proof build (bkprov.recorded);
    # TLS has files on this side too, and fleets go through Ansible. A new target has no record.
    shortcut = not (req.full or req.tcp or before is not None)
    result = recorded.prove(target, key, req.version, log) if shortcut and target is not None else None
    if result is not None:
        seconds["proof"] = result.seconds
    else:
        result = run_play("provision.yml", inventory, extravars, title, req.verbose, req.fleet)
        seconds["ansible"] = result.seconds
        if made is not None:
            # A target that could not be made (the play then reached no host) or died at boot: that is the error.
            target = made.result()
            inventory = target.inventory()
        assert target is not None
        recorded.record(target, result, key)
    if before is not None and result.ran:  # (a play that never started reached no host: it says why)
        result.add_not_reached(before)
    problems = auto_doctor(result, inventory, req.verbose, show=not req.json, fleet=req.fleet)
    seconds["total"] = time.monotonic() - started
    summary: dict[str, Any] = {
        "version": req.version,
        "target": target.kind,
        "name": target.name,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "ran": "proof" if "proof" in seconds else "playbook",
        "doctor": problems,
    }
    if req.tcp and target.kind in targets.KINDS:
        summary["tcp_client"] = tcp_client_command(req, target.name)
        if not req.json and result.succeeded:
            out.print(f"TCP: {summary['tcp_client']}", highlight=False)
    if not result.succeeded and target.kind in targets.KINDS:
        summary["kept"] = kept_for_inspection(target)
    code = report(result, summary, req.json)
    if "kept" in summary:
        log(f"kept {target.kind} {target.name} for inspection:")
        for command in summary["kept"].values():
            err.print(f"  {command}", highlight=False)
    return code


def make_new(spec: Spec, inventory: PendingInventory, seconds: dict[str, float]) -> Target:
    """Make a new target, hand its inventory to the starting play, then wait for its boot."""
    from bkprov import targets

    t0 = time.monotonic()
    try:
        target = targets.make(spec, log, wait=False)
        inventory.give(target.inventory())
        # The play's first steps on the host need only PID 1; converge's systemctl calls would queue behind
        # systemd's boot anyway, but a container that died booting must be this command's error.
        target.start()
        seconds["target"] = time.monotonic() - t0
        return target
    finally:
        inventory.give(None)  # (no-op once given) the play then reaches no host and ends at once


class Background:
    """Run ``fn`` in a thread; ``result()`` waits for it, returns what it returned or re-raises what it raised."""

    def __init__(self, fn: Callable[[], Target]) -> None:
        self.value: Target | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Target]) -> None:
        try:
            self.value = fn()
        except BaseException as exc:  # handed to the caller by result()
            self.error = exc

    def result(self) -> Target:
        self.thread.join()
        if self.error is not None:
            raise self.error
        assert self.value is not None
        return self.value


def kept_for_inspection(target: Target) -> dict[str, str]:
    """The commands to look into a target whose provision failed, and to remove it."""
    return {
        "journal": f"bkprov exec {target.name} -- journalctl -u buildkit --no-pager",
        "destroy": f"bkprov destroy {target.name}",
    }
