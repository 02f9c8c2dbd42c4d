"""`bkprov provision VERSION`: install a BuildKit release on a target and prove it with a build.

Order matters: every input is checked before anything is fetched or created; then the
artifacts, then the target, then the play (doctor runs on the target when it fails).
"""

from __future__ import annotations

import argparse
import time
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
from bkprov.targets import Selection, Spec, Target


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


def prefetch(version: str) -> None:
    """Make the release's artifacts present and verified, with a progress bar for downloads."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from bkprov import artifacts

    for item in artifacts.needed(version):
        if item.cached:
            artifacts.fetch(item)  # verifies the hash (cheap), raises on mismatch
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
    from bkprov import targets

    req = request(options)
    target = check_target(req)
    seconds: dict[str, float] = {}
    started = time.monotonic()
    prefetch(req.version)
    seconds["artifacts"] = time.monotonic() - started
    if target is None:
        t0 = time.monotonic()
        target = targets.make(req.new, log)
        target.start()
        seconds["target"] = time.monotonic() - t0
    inventory = target.inventory()
    # A rollout may stop before some hosts: read what they run first, to say which version they stay on.
    before = installed_versions(inventory, req.fleet) if req.fleet.rolling else None
    title = f"provision {req.version}" + (f" (serial {req.fleet.serial})" if req.fleet.rolling else "")
    result = run_play("provision.yml", inventory, req.extravars(), title, req.verbose, req.fleet)
    seconds["ansible"] = result.seconds
    if before is not None and result.ran:  # (a play that never started reached no host: it says why)
        result.add_not_reached(before)
    problems = auto_doctor(result, inventory, req.verbose, show=not req.json, fleet=req.fleet)
    seconds["total"] = time.monotonic() - started
    summary: dict[str, Any] = {
        "version": req.version,
        "target": target.kind,
        "name": target.name,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
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


def kept_for_inspection(target: Target) -> dict[str, str]:
    """The commands to look into a target whose provision failed, and to remove it."""
    return {
        "journal": f"bkprov exec {target.name} -- journalctl -u buildkit --no-pager",
        "destroy": f"bkprov destroy {target.name}",
    }
