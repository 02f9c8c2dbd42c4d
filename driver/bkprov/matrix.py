"""`bkprov matrix`: provision and verify many versions, each on its own fresh target, N at a time.

Every version's artifacts are fetched here first (a missing or corrupt file is a result of its
own), then the version runs as its own `bkprov provision … --json` process (its own
ansible-runner), so jobs share nothing but the locked artifact cache. Each row is read from
that process's per-host result: how far the host got (phase) and whether it is ok, never
task names. A live table shows the rows; the report is written as Markdown and JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from bkprov import artifacts, catalog
from bkprov.errors import BkprovError

# Row results, in the order a version can stop.
ARTIFACTS_MISSING = "artifacts missing"
CHECKSUM_MISMATCH = "checksum mismatch"
INSTALL_FAILED = "install failed"  # preflight, install or start failed: BuildKit is not running
BUILD_FAILED = "build failed"  # installed and started, the verify build failed
UNREACHABLE = "unreachable"
OK = "ok"
ERROR = "error"  # provision did not produce a result (it says why on stderr)


@dataclass
class Row:
    version: str
    target: str
    phase: str = "queued"  # queued, fetching, provisioning, then one of the results above
    reached: str = ""  # the phase the host reached (preflight, install, start, verify, done)
    provision_ok: bool | None = None  # BuildKit installed and started
    build_ok: bool | None = None  # the verify build passed
    build_output: str = ""
    installed_version: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    cause: str = ""
    name: str = ""

    def read(self, summary: dict[str, Any]) -> None:
        """Fill the row from `bkprov provision --json` output: its one host's result."""
        self.seconds.update(summary.get("seconds", {}))
        host = next(iter((summary.get("hosts") or {}).values()), {})
        self.reached = host.get("phase", "")
        self.build_output = host.get("build_output") or ""
        self.installed_version = host.get("installed_version") or ""
        if host.get("status") == "ok":
            self.phase, self.provision_ok, self.build_ok = OK, True, True
            return
        problems = "; ".join(p["summary"] for p in summary.get("doctor", []))
        error = (host.get("error") or "").strip().splitlines()
        self.cause = problems or (error[0][:300] if error else "")
        if host.get("status") == "unreachable":
            self.phase, self.provision_ok = UNREACHABLE, False
        elif self.reached in ("verify", "done"):
            self.phase, self.provision_ok, self.build_ok = BUILD_FAILED, True, False
        else:
            self.phase, self.provision_ok = INSTALL_FAILED, False


def fetch_all(row: Row) -> bool:
    """Fetch the version's artifacts; on failure the row says which kind of failure, and False."""
    try:
        for item in artifacts.needed(row.version):
            artifacts.fetch(item)
    except artifacts.Unavailable as exc:
        row.phase = CHECKSUM_MISMATCH if exc.reason == "checksum" else ARTIFACTS_MISSING
        row.cause = str(exc)
        row.provision_ok = False
        return False
    return True


def free(row: Row) -> None:
    """Destroy the row's target (and its volume) if bkprov made it; nothing when there is none."""
    import docker.errors

    from bkprov import targets

    try:
        made = targets.find(row.name)
    except BkprovError:  # never made (artifacts missing), already gone, or not a bkprov target
        return
    try:
        made.destroy()
    except (BkprovError, docker.errors.DockerException) as exc:
        row.cause = f"{row.cause}; target {row.name} not destroyed: {exc}".lstrip("; ")


def run_one(row: Row, extra: list[str], lock: threading.Lock, keep: bool = False) -> None:
    """One version, start to end. Its target is destroyed here, as soon as the row is final
    (not at the end of the matrix), so at most --jobs targets are alive at once."""
    try:
        provision_row(row, extra, lock)
    finally:
        if not keep:
            free(row)


def provision_row(row: Row, extra: list[str], lock: threading.Lock) -> None:
    started = time.monotonic()
    missing = any(not item.cached for item in artifacts.needed(row.version))
    with lock:
        row.phase = "fetching" if missing else "provisioning"
    if not fetch_all(row):
        row.seconds["wall"] = round(time.monotonic() - started, 1)
        return
    with lock:
        row.phase = "provisioning"
    argv = [sys.executable, "-m", "bkprov.cli", "provision", row.version, "--target", row.target]
    argv += ["--name", row.name, "--json", *extra]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    with lock:
        row.seconds["wall"] = round(time.monotonic() - started, 1)
        try:
            row.read(json.loads(proc.stdout))
        except ValueError:
            row.phase, row.provision_ok = ERROR, False
            lines = proc.stderr.strip().splitlines()
            # The error's first line (a multi-line one, e.g. a container that died at boot,
            # goes on with its evidence): the last line bkprov started.
            started_lines = [line.removeprefix("bkprov: ") for line in lines if line.startswith("bkprov: ")]
            row.cause = (started_lines or lines or [f"exit {proc.returncode}"])[-1]


def table(rows: list[Row]) -> Table:
    view = Table("version", "target", "result", "reached", "provision", "build", "seconds", "RUN output / cause")
    mark = {True: "[green]ok[/]", False: "[red]failed[/]", None: "-"}
    for r in rows:
        style = {OK: "green", INSTALL_FAILED: "red", BUILD_FAILED: "red", ARTIFACTS_MISSING: "yellow"}.get(
            r.phase, "cyan"
        )
        view.add_row(
            r.version,
            r.target,
            f"[{style}]{r.phase}[/]",
            r.reached or "-",
            mark[r.provision_ok],
            mark[r.build_ok],
            str(r.seconds.get("wall", "")),
            r.build_output or r.cause,
        )
    return view


def markdown(rows: list[Row]) -> str:
    lines = [
        "| version | target | result | reached | provision | build | seconds | RUN output / cause |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.version} | {r.target} | {r.phase} | {r.reached or '-'} | {r.provision_ok} | {r.build_ok} | "
            f"{r.seconds.get('wall', '')} | {(r.build_output or r.cause).replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"


def run_rows(rows: list[Row], jobs: int, extra: list[str], console: Console, keep: bool = False) -> None:
    lock = threading.Lock()
    with Live(table(rows), console=console, refresh_per_second=2, transient=not console.is_terminal) as live:
        pool = ThreadPoolExecutor(max_workers=max(1, jobs))
        try:
            futures = [pool.submit(run_one, row, extra, lock, keep) for row in rows]
            while not all(f.done() for f in futures):
                with lock:
                    live.update(table(rows))
                time.sleep(0.5)
            for future in futures:
                future.result()
        finally:
            # Ctrl-C: rows not started yet never start; running ones end (their provision got
            # the signal too) and free their targets.
            pool.shutdown(wait=True, cancel_futures=True)
        live.update(table(rows))
    if not console.is_terminal:
        console.print(table(rows))


def run_matrix(
    versions: list[str],
    target: str,
    jobs: int,
    keep: bool,
    extra: list[str],
    report: Path,
    console: Console,
    prefix: str = "bkprov-matrix",
) -> list[Row]:
    rows = [Row(catalog.get(v).version, target, name=f"{prefix}-{v.replace('.', '-')}") for v in versions]
    try:
        run_rows(rows, jobs, extra, console, keep)
    finally:
        if not keep:  # each row freed its own target; this catches an interrupted run's
            for row in rows:
                free(row)
    try:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.with_suffix(".md").write_text(markdown(rows))
        report.with_suffix(".json").write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    except OSError as exc:
        raise BkprovError(f"cannot write the report {report}.md/.json ({exc.strerror}); pass --report PATH") from exc
    return rows
