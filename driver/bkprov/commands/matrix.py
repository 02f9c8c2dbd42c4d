"""`bkprov matrix VERSION…|--all`: provision and verify many versions, each on a fresh target.

Each target is destroyed as soon as its row is final, so at most --jobs targets are alive at
once. Systemd containers live on the host's inotify instances (each holds about 7), so before
anything is created the host is checked for room for every target that will be alive at once
(all of them with --keep); when there is none the run is refused (exit 2) naming the sysctl to
raise, rather than letting systemd die at boot in the middle of the run.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from bkprov import catalog
from bkprov.commands.options import Subparsers, host_port, positive
from bkprov.console import log, out
from bkprov.errors import EXIT_USAGE, BkprovError
from bkprov.targets import KINDS

PREFIX_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")  # a Docker container name


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("matrix", help="provision and verify many versions, each on a fresh target")
    parser.add_argument("versions", nargs="*", metavar="VERSION")
    parser.add_argument("--all", action="store_true", help="every release in the catalog (release candidates: --pre)")
    parser.add_argument("--pre", action="store_true", help="with --all: release candidates too")
    parser.add_argument("--target", choices=KINDS, default="container")
    parser.add_argument(
        "--jobs", type=positive, default=1, help="versions at a time, and targets alive at once (default 1)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep every target (checks first that the host can hold them all)"
    )
    parser.add_argument(
        "--registry", metavar="HOST:PORT", type=host_port, help="for helper-image COPY (v0.3.0, v0.4.0)"
    )
    parser.add_argument("--network", help="container network mode (host to reach a registry on 127.0.0.1)")
    parser.add_argument("--report", default="bkprov-matrix", help="report path without suffix (.md and .json)")
    parser.add_argument(
        "--prefix",
        default="bkprov-matrix",
        help="target names are PREFIX-VERSION (default bkprov-matrix); two matrices at once need two prefixes",
    )
    parser.set_defaults(run=run)


def check_host_room(kind: str, alive: int, keep: bool) -> None:
    """Refuse (exit 2) when the host cannot hold ``alive`` more systemd containers at once."""
    if kind != "container":  # a VM's systemd uses the guest kernel's inotify, not the host's
        return
    from bkprov.targets import container

    shortfall = container.inotify_use().shortfall(alive)
    if not shortfall:
        return
    instead = "run without --keep (at most --jobs targets alive at once)" if keep else "lower --jobs"
    raise BkprovError(
        f"this host cannot hold {alive} more systemd containers at once: each holds about "
        f"{container.INOTIFY_PER_TARGET} inotify instances, and systemd dies at boot when none is left.\n"
        f"{shortfall}\nOr {instead}. Nothing was created.",
        exit_code=EXIT_USAGE,
    )


def run(options: argparse.Namespace) -> int:
    from bkprov.matrix import run_matrix

    versions = catalog.versions(pre=options.pre) if options.all else [choose(spec) for spec in options.versions]
    if not versions:
        raise BkprovError("name versions or pass --all", exit_code=EXIT_USAGE)
    report_path = Path(options.report).resolve()
    writable_parent(report_path)
    if not PREFIX_PATTERN.fullmatch(options.prefix):
        raise BkprovError(
            f"--prefix {options.prefix!r} is not a valid container name start: letters, digits, '_', '.', '-'",
            exit_code=EXIT_USAGE,
        )
    check_host_room(options.target, len(versions) if options.keep else min(options.jobs, len(versions)), options.keep)
    extra = [
        *(["--registry", options.registry] if options.registry else []),
        *(["--network", options.network] if options.network else []),
    ]
    rows = run_matrix(
        versions, options.target, options.jobs, options.keep, extra, report_path, out, prefix=options.prefix
    )
    log(f"report: {report_path.with_suffix('.md')} and .json")
    return 0 if all(r.phase == "ok" for r in rows) else 1


def choose(spec: str) -> str:
    version = catalog.choose(spec)
    if catalog.is_alias(spec, version):
        log(f"{spec} is {version}")
    return version


def writable_parent(report: Path) -> None:
    """Refuse (exit 2) a report path that could not be written, before any target is made."""
    existing = next(p for p in (report.parent, *report.parent.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise BkprovError(f"--report {report}: cannot write in {existing}; pass another --report PATH", EXIT_USAGE)
