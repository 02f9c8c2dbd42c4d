"""The bkprov command line.

Heavy imports (docker, ansible_runner) happen inside commands, so bad input is
answered at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bkprov import __version__, catalog
from bkprov.errors import BkprovError

# Never wrap messages (paths, hashes) when output goes to a pipe or a log.
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def log(message: str) -> None:
    console.print(f"[dim]bkprov:[/] {escape(message)}", highlight=False)


# ---------------------------------------------------------------- versions


def cmd_versions(args: argparse.Namespace) -> int:
    releases = catalog.all_releases()
    if args.json:
        print(json.dumps([r.as_json() for r in releases], indent=2))
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


# ---------------------------------------------------------------- artifacts


def cmd_artifacts_list(args: argparse.Namespace) -> int:
    from bkprov import artifacts
    from bkprov.paths import cache_dir

    lock = artifacts.lock_entries()
    rows = []
    for release in catalog.all_releases():
        for item in artifacts.needed(release.version):
            if item.kind == "runc" and any(r["file"] == item.relpath for r in rows):
                continue
            entry = lock.get(item.relpath, {})
            rows.append(
                {
                    "kind": item.kind,
                    "version": item.version,
                    "file": item.relpath,
                    "cached": item.cached,
                    "sha256": entry.get("sha256") or item.sha256,
                    "origin": entry.get("origin") or ("catalog" if item.sha256 else None),
                }
            )
    if args.json:
        print(json.dumps({"cache": str(cache_dir()), "artifacts": rows}, indent=2))
        return 0
    table = Table("kind", "version", "cached", "origin", "sha256", title=f"cache: {cache_dir()}")
    for row in rows:
        if row["cached"] or args.all:
            table.add_row(
                row["kind"],
                row["version"],
                "yes" if row["cached"] else "-",
                row["origin"] or "-",
                (row["sha256"] or "-")[:16],
            )
    out.print(table)
    return 0


def cmd_artifacts_import(args: argparse.Namespace) -> int:
    from bkprov import artifacts

    if args.kind == "buildkit":
        catalog.get(args.version)
    result = artifacts.import_file(args.kind, args.version, args.file)
    log(f"imported {args.file} as {result.relpath} (sha256 {result.sha256}); provisions of {args.version} use it")
    return 0


# ---------------------------------------------------------------- provision


def prefetch(version: str) -> None:
    """Make the release's artifacts present and verified, with a progress bar for downloads."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from bkprov import artifacts

    for item in artifacts.needed(version):
        if item.cached:
            artifacts.fetch(item)  # verifies the hash (cheap), raises on mismatch
            continue
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task(f"{item.kind} {item.version}", total=None)

            def advance(done: int, total: int | None, task: Any = task) -> None:
                progress.update(task, completed=done, total=total)

            result = artifacts.fetch(item, advance)
        log(f"fetched {result.relpath} ({result.origin} sha256 {result.sha256[:16]}…)")
        if result.warning:
            log(f"[yellow]warning:[/] {result.warning}")


def extravars(args: argparse.Namespace, version: str) -> dict[str, Any]:
    extra: dict[str, Any] = {"buildkit_version": version}
    if args.registry:
        extra["buildkit_registries"] = {args.registry: {"http": True}}
        extra["verify_registry"] = args.registry
    if args.tcp:
        extra["buildkit_tcp_address"] = args.tcp
        extra["buildkit_insecure_tcp"] = args.insecure_tcp
    return extra


def tcp_client_command(args: argparse.Namespace, host: str) -> str:
    """The buildctl command line that reaches the TCP listener from this machine."""
    from bkprov.paths import cache_dir

    if args.insecure_tcp:
        return f"buildctl --addr {args.tcp} debug workers"
    tls = cache_dir() / "tls" / host
    return (
        f"buildctl --addr {args.tcp} --tlscacert {tls}/ca.pem --tlscert {tls}/client.pem "
        f"--tlskey {tls}/client-key.pem debug workers"
    )


def run_play(playbook: str, inventory: Any, extra: dict[str, Any], title: str, verbose: int) -> Any:
    from bkprov.display import PlayDisplay
    from bkprov.runner import run_playbook

    with PlayDisplay(console, title, verbose=verbose > 0) as display:
        return run_playbook(playbook, inventory, extra, sink=display, verbosity=max(verbose - 1, 0))


def report(result: Any, summary: dict[str, Any], as_json: bool) -> int:
    summary.update(
        ok=result.succeeded,
        changed=result.changed,
        build_output=result.verify_output or None,
        failures=[{"host": f.host, "task": f.task, "role": f.role, "message": f.message} for f in result.failures],
    )
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        for failure in result.failures:
            console.print(
                f"[red]failed:[/] {escape(f'[{failure.host}] {failure.task}')}\n{escape(failure.message)}",
                highlight=False,
            )
        if not result.succeeded and not result.failures:
            console.print("[red]ansible-playbook failed:[/]\n" + escape("\n".join(result.output_tail)), highlight=False)
        if result.verify_output:
            out.print(f"RUN output: {result.verify_output}", highlight=False)
        times = ", ".join(f"{k} {v:.1f}s" for k, v in summary["seconds"].items())
        state = "[green]ok[/]" if result.succeeded else "[red]FAILED[/]"
        out.print(
            f"{state} BuildKit {summary['version']} on {summary['target']} {summary['name'] or ''}: "
            f"changed={result.changed} ({times})",
            highlight=False,
        )
    return 0 if result.succeeded else 1


STATUS_STYLE = {"ok": "green", "warning": "yellow", "problem": "bold red"}


def show_findings(findings: dict[str, list[dict[str, str]]]) -> int:
    """Print doctor findings per host; return how many problems there are."""
    problems = 0
    for host, items in findings.items():
        table = Table("status", "check", "finding", "evidence", "fix", title=f"doctor: {host}", show_lines=True)
        for f in items:
            problems += f["status"] == "problem"
            detail = escape(f["summary"]) + (f"\n[dim]{escape(f['cause'])}[/]" if f["cause"] else "")
            table.add_row(
                f"[{STATUS_STYLE[f['status']]}]{f['status']}[/]",
                escape(f["check"]),
                detail,
                escape(f["evidence"]),
                escape(f["fix"]),
            )
        out.print(table)
    return problems


def doctor(inventory: Any, verbose: int = 0) -> Any:
    return run_play("doctor.yml", inventory, {}, "doctor", verbose)


def cmd_doctor(args: argparse.Namespace) -> int:
    if args.inventory:
        inventory: Any = args.inventory
    elif args.name:
        from bkprov.targets import find

        inventory = find(args.name).inventory()
    else:
        raise BkprovError("name a target or pass --inventory PATH", exit_code=2)
    result = doctor(inventory, args.verbose)
    if args.json:
        print(json.dumps({"findings": result.findings, "ok": result.succeeded}, indent=2))
        return 0 if result.succeeded else 1
    if not result.findings:
        console.print("[red]doctor could not read the host:[/]\n" + "\n".join(result.output_tail), highlight=False)
        return 1
    problems = show_findings(result.findings)
    return 1 if problems or not result.succeeded else 0


def make_target(kind: str, name: str, version: str, args: argparse.Namespace) -> dict[str, Any]:
    """Create (or reuse, for containers) a target; return its inventory."""
    if kind == "vm":
        from bkprov.targets import vm

        existing = vm.get(name)
        if existing is None:
            # A BuildKit whose runc predates cgroup v2 gets a cgroup v1 guest (reference §7.4).
            cgroup_v1 = bool(version) and not catalog.get(version).cgroup_v2
            existing = vm.create(name, version, log, accel=args.accel, cgroup_v1=cgroup_v1)
        elif not existing.running:
            raise BkprovError(f"VM {name} is stopped; `bkprov destroy {name}` and provision again", exit_code=2)
        else:
            log(f"converging existing VM {name}")
        return vm.inventory(existing)
    from bkprov import images
    from bkprov.targets import container as ct

    cli = ct.client()
    existing_container = ct.existing_target(cli, name)
    if existing_container is None:
        image = args.image or images.ensure_image(cli, log)
        log(f"creating container {name} from {image}")
        ct.create(cli, name, image, version, log, network=args.network)
    else:
        log(f"converging existing target {name}")
        ct.ensure_running(existing_container)
    return ct.inventory(name)


def cmd_provision(args: argparse.Namespace) -> int:
    release = catalog.get(args.version)
    # Bad input is refused before anything is fetched or created.
    inventory: Any = None
    if args.insecure_tcp and not args.tcp:
        raise BkprovError("--insecure-tcp goes with --tcp ADDR", exit_code=2)
    if args.inventory:
        if not Path(args.inventory).exists():
            raise BkprovError(f"--inventory {args.inventory}: no such file or directory", exit_code=2)
        inventory = str(Path(args.inventory).resolve())
    elif args.host:
        from bkprov.targets import ssh_host_inventory

        inventory = ssh_host_inventory(args.host)
    elif args.target == "container":
        from bkprov.targets import container as ct

        ct.existing_target(ct.client(), args.name or ct.default_name(release.version))  # refuse before fetching
    seconds: dict[str, float] = {}
    started = time.monotonic()
    prefetch(release.version)
    seconds["artifacts"] = time.monotonic() - started

    name = None
    if inventory is not None:
        target, name = ("inventory", args.inventory) if args.inventory else ("host", args.host)
    else:
        from bkprov.targets.container import default_name

        name = args.name or default_name(release.version)
        t0 = time.monotonic()
        inventory = make_target(args.target, name, release.version, args)
        seconds["target"] = time.monotonic() - t0
        target = args.target

    result = run_play(
        "provision.yml", inventory, extravars(args, release.version), f"provision {release.version}", args.verbose
    )
    seconds["ansible"] = result.seconds
    problems: list[dict[str, str]] = []
    if not result.succeeded:
        problems = auto_doctor(inventory, args.verbose, show=not args.json)
    seconds["total"] = time.monotonic() - started
    summary = {
        "version": release.version,
        "target": target,
        "name": name,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "doctor": problems,
    }
    if args.tcp and name and target in ("container", "vm"):
        summary["tcp_client"] = tcp_client_command(args, name)
        if not args.json and result.succeeded:
            out.print(f"TCP: {summary['tcp_client']}", highlight=False)
    return report(result, summary, args.json)


def cmd_uninstall(args: argparse.Namespace) -> int:
    if args.inventory:
        inventory: Any = str(Path(args.inventory).resolve())
    elif args.name:
        from bkprov.targets import find

        inventory = find(args.name).inventory()
    else:
        raise BkprovError("name a target or pass --inventory PATH", exit_code=2)
    result = run_play("uninstall.yml", inventory, {"buildkit_purge": args.purge}, "uninstall", args.verbose)
    for failure in result.failures:
        console.print(
            f"[red]failed:[/] {escape(f'[{failure.host}] {failure.task}')}\n{escape(failure.message)}", highlight=False
        )
    if result.succeeded:
        kept = "removed /var/lib/buildkit too" if args.purge else "kept /var/lib/buildkit (--purge removes it)"
        log(f"uninstalled BuildKit (units, binaries, configuration, group); {kept}")
    return 0 if result.succeeded else 1


def cmd_matrix(args: argparse.Namespace) -> int:
    from bkprov.matrix import run_matrix

    versions = catalog.versions() if args.all else [catalog.get(v).version for v in args.versions]
    if not versions:
        raise BkprovError("name versions or pass --all", exit_code=2)
    extra = [
        *(["--registry", args.registry] if args.registry else []),
        *(["--network", args.network] if args.network else []),
    ]
    report_path = Path(args.report).resolve()
    rows = run_matrix(versions, args.target, args.jobs, args.keep, extra, report_path, out)
    log(f"report: {report_path.with_suffix('.md')} and .json")
    return 0 if all(r.phase == "ok" for r in rows) else 1


def cmd_create(args: argparse.Namespace) -> int:
    """Make a target without installing anything (molecule's create step uses this)."""
    from bkprov.targets import find

    inventory = make_target(args.target, args.name, args.version or "", args)
    if args.json:
        print(json.dumps({"name": args.name, "target": args.target, "inventory": inventory}, indent=2))
    else:
        log(f"created {args.target} {args.name}")
    assert find(args.name)
    return 0


def auto_doctor(inventory: Any, verbose: int, show: bool = True) -> list[dict[str, str]]:
    """After a failure, run doctor (it names known causes with their evidence); return its problems."""
    if show:
        log("the run failed; running doctor on the target")
    result = doctor(inventory, verbose if show else 0) if show else run_play_quiet("doctor.yml", inventory)
    if show and result.findings:
        show_findings(result.findings)
    return [f for items in result.findings.values() for f in items if f["status"] == "problem"]


def run_play_quiet(playbook: str, inventory: Any) -> Any:
    from bkprov.runner import run_playbook

    return run_playbook(playbook, inventory, {})


def cmd_verify(args: argparse.Namespace) -> int:
    from bkprov.targets import find

    target = find(args.name)
    extra: dict[str, Any] = {"verify_buildkit_version": target.version}
    if args.registry:
        extra["verify_registry"] = args.registry
    started = time.monotonic()
    inventory = target.inventory()
    result = run_play("verify.yml", inventory, extra, f"verify {args.name}", args.verbose)
    if not result.succeeded and not args.json:
        auto_doctor(inventory, args.verbose)
    summary = {
        "version": target.version,
        "target": target.kind,
        "name": args.name,
        "seconds": {"total": round(time.monotonic() - started, 2)},
    }
    return report(result, summary, args.json)


# ---------------------------------------------------------------- targets


def cmd_image(args: argparse.Namespace) -> int:
    if args.vm:
        from bkprov.vm_image import ensure_vm_image

        log(f"VM disk: {ensure_vm_image(log, rebuild=args.rebuild).disk}")
        return 0
    from bkprov import images
    from bkprov.targets import container as ct

    log(f"base image: {images.ensure_image(ct.client(), log, rebuild=args.rebuild)}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from bkprov.targets import all_targets

    targets = all_targets()
    if args.json:
        print(
            json.dumps(
                [
                    {"name": t.name, "target": t.kind, "version": t.version, "status": t.status, "detail": t.detail}
                    for t in targets
                ],
                indent=2,
            )
        )
        return 0
    table = Table("name", "target", "version", "status", "detail")
    for t in targets:
        table.add_row(t.name, t.kind, t.version, t.status, t.detail)
    out.print(table)
    return 0


def cmd_destroy(args: argparse.Namespace) -> int:
    from bkprov.targets import all_targets, find

    if args.all:
        targets = all_targets()
    elif args.name:
        targets = [find(args.name)]
    else:
        raise BkprovError("name a target or pass --all", exit_code=2)
    for target in targets:
        target.destroy()
        log(f"destroyed {target.kind} {target.name}" + (" and its volume" if target.kind == "container" else ""))
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    from bkprov.targets import find

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise BkprovError("give a command after --, e.g. bkprov exec NAME -- buildctl debug workers", exit_code=2)
    return find(args.name).exec(command)


# ---------------------------------------------------------------- parser


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bkprov", description="Install any archived BuildKit release and prove it with a real build."
    )
    p.add_argument("--version", action="version", version=f"bkprov {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("versions", help="list the BuildKit versions bkprov knows")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_versions)

    s = sub.add_parser("provision", help="install a BuildKit version on a target and verify it with a build")
    s.add_argument("version", metavar="VERSION")
    s.add_argument("--target", choices=["container", "vm"], default="container")
    s.add_argument("--inventory", metavar="PATH", help="apply to the hosts of this Ansible inventory instead")
    s.add_argument("--host", metavar="USER@HOST[:PORT]", help="apply to one host over SSH (sudo unless root)")
    s.add_argument(
        "--accel", choices=["auto", "kvm", "tcg"], default="auto", help="VM acceleration (default: probe KVM)"
    )
    s.add_argument("--name", help="target name (default: bkprov-<version>)")
    s.add_argument("--image", help="base image with systemd for the container target (default: built locally)")
    s.add_argument("--network", default="none", help="container network mode (default: none)")
    s.add_argument(
        "--registry", metavar="HOST:PORT", help="plain-HTTP registry with the COPY helper image (BuildKit < v0.5.0)"
    )
    s.add_argument(
        "--tcp", metavar="ADDR", help="also listen on tcp://HOST:PORT with mutual TLS (certificates made here)"
    )
    s.add_argument(
        "--insecure-tcp", action="store_true", help="plaintext TCP: whoever reaches it is root on the target"
    )
    s.add_argument("--json", action="store_true", help="print one machine-readable result")
    s.add_argument(
        "-v", "--verbose", action="count", default=0, help="stream Ansible's output (-vv and more: Ansible verbosity)"
    )
    s.set_defaults(func=cmd_provision)

    s = sub.add_parser("verify", help="run the verify build on an existing target")
    s.add_argument("name")
    s.add_argument("--registry", metavar="HOST:PORT")
    s.add_argument("--json", action="store_true")
    s.add_argument("-v", "--verbose", action="count", default=0)
    s.set_defaults(func=cmd_verify)

    s = sub.add_parser("uninstall", help="remove BuildKit from a target or hosts; keeps its data unless --purge")
    s.add_argument("name", nargs="?")
    s.add_argument("--inventory", metavar="PATH")
    s.add_argument("--purge", action="store_true", help="also delete /var/lib/buildkit")
    s.add_argument("-v", "--verbose", action="count", default=0)
    s.set_defaults(func=cmd_uninstall)

    s = sub.add_parser("matrix", help="provision and verify many versions, each on a fresh target")
    s.add_argument("versions", nargs="*", metavar="VERSION")
    s.add_argument("--all", action="store_true", help="every catalog version")
    s.add_argument("--target", choices=["container", "vm"], default="container")
    s.add_argument("--jobs", type=int, default=1, help="versions at a time (default 1)")
    s.add_argument("--keep", action="store_true", help="keep the targets")
    s.add_argument("--registry", metavar="HOST:PORT", help="for helper-image COPY (v0.3.0, v0.4.0)")
    s.add_argument("--network", help="container network mode (host to reach a registry on 127.0.0.1)")
    s.add_argument("--report", default="bkprov-matrix", help="report path without suffix (.md and .json)")
    s.set_defaults(func=cmd_matrix)

    s = sub.add_parser("create", help="make a target without installing anything")
    s.add_argument("name")
    s.add_argument("--target", choices=["container", "vm"], default="container")
    s.add_argument("--version", dest="version", default="", help="label the target with this BuildKit version")
    s.add_argument("--image", help="base image for the container target")
    s.add_argument("--network", default="none")
    s.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_create)

    s = sub.add_parser("image", help="build the Debian systemd base image (once; --rebuild to refresh)")
    s.add_argument("--rebuild", action="store_true")
    s.add_argument("--vm", action="store_true", help="the VM disk instead of the container image")
    s.set_defaults(func=cmd_image)

    s = sub.add_parser("doctor", help="diagnose a target or hosts: known causes of failure, evidence, fixes")
    s.add_argument("name", nargs="?")
    s.add_argument("--inventory", metavar="PATH")
    s.add_argument("--json", action="store_true")
    s.add_argument("-v", "--verbose", action="count", default=0)
    s.set_defaults(func=cmd_doctor)

    s = sub.add_parser("list", help="list bkprov's targets")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("destroy", help="remove a target and its BuildKit volume")
    s.add_argument("name", nargs="?")
    s.add_argument("--all", action="store_true", help="every bkprov target")
    s.set_defaults(func=cmd_destroy)

    s = sub.add_parser("exec", help="run a command in a target")
    s.add_argument("name")
    s.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD")
    s.set_defaults(func=cmd_exec)

    s = sub.add_parser("artifacts", help="the artifact cache")
    asub = s.add_subparsers(dest="artifacts_command", required=True, metavar="ACTION")
    a = asub.add_parser("list", help="cached artifacts and their hashes")
    a.add_argument("--all", action="store_true", help="also list what is not cached")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_artifacts_list)
    a = asub.add_parser("import", help="add a locally built file to the cache and record its sha256")
    a.add_argument("kind", choices=["buildkit", "runc"])
    a.add_argument("version")
    a.add_argument("file")
    a.set_defaults(func=cmd_artifacts_import)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BkprovError as exc:
        console.print(f"[red]bkprov:[/] {escape(str(exc))}", highlight=False)
        return exc.exit_code
    except KeyboardInterrupt:
        console.print("[yellow]bkprov: interrupted[/]; re-run the same command to converge the target")
        return 130


if __name__ == "__main__":
    sys.exit(main())
