"""`bkprov matrix`: provision and verify many versions, each on its own fresh target, N at a time.

Every version runs as its own `bkprov provision … --json` process (its own ansible-runner),
so jobs share nothing but the artifact cache, which is locked. A live table shows each
version's phase; the report is written as Markdown and JSON.
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


@dataclass
class Row:
    version: str
    target: str
    phase: str = "queued"
    provision_ok: bool | None = None
    build_ok: bool | None = None
    build_output: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    cause: str = ""
    name: str = ""


def classify(stderr: str) -> str:
    if "could not download" in stderr or "the mirror has no" in stderr:
        return "artifacts missing"
    if "sha256 mismatch" in stderr:
        return "checksum mismatch"
    return ""


def run_one(row: Row, extra: list[str], lock: threading.Lock) -> None:
    missing = [item.relpath for item in artifacts.needed(row.version) if not item.cached]
    with lock:
        row.phase = "fetching" if missing else "provisioning"
    started = time.monotonic()
    argv = [
        sys.executable,
        "-m",
        "bkprov.cli",
        "provision",
        row.version,
        "--target",
        row.target,
        "--name",
        row.name,
        "--json",
        *extra,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    with lock:
        row.seconds["wall"] = round(time.monotonic() - started, 1)
        try:
            summary: dict[str, Any] = json.loads(proc.stdout)
        except ValueError:
            row.phase = classify(proc.stderr) or "error"
            row.cause = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
            row.provision_ok = False
            return
        row.seconds.update(summary.get("seconds", {}))
        row.build_output = summary.get("build_output") or ""
        failures = summary.get("failures", [])
        row.provision_ok = (
            not any(
                f["task"] != "Check that the RUN step printed" and "verify" not in f["task"].lower() for f in failures
            )
            if failures
            else True
        )
        row.build_ok = bool(summary.get("ok"))
        row.phase = "ok" if row.build_ok else "failed"
        problems = [p["summary"] for p in summary.get("doctor", [])]
        row.cause = "; ".join(problems) or (failures[0]["message"].splitlines()[0][:200] if failures else "")


def table(rows: list[Row]) -> Table:
    view = Table("version", "target", "phase", "provision", "build", "seconds", "RUN output / cause")
    mark = {True: "[green]ok[/]", False: "[red]failed[/]", None: "-"}
    for r in rows:
        style = {"ok": "green", "failed": "red", "artifacts missing": "yellow"}.get(r.phase, "cyan")
        view.add_row(
            r.version,
            r.target,
            f"[{style}]{r.phase}[/]",
            mark[r.provision_ok],
            mark[r.build_ok],
            str(r.seconds.get("wall", "")),
            r.build_output or r.cause,
        )
    return view


def markdown(rows: list[Row]) -> str:
    lines = [
        "| version | target | result | provision | build | seconds | RUN output / cause |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.version} | {r.target} | {r.phase} | {r.provision_ok} | {r.build_ok} | "
            f"{r.seconds.get('wall', '')} | {(r.build_output or r.cause).replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"


def run_matrix(
    versions: list[str], target: str, jobs: int, keep: bool, extra: list[str], report: Path, console: Console
) -> list[Row]:
    rows = [Row(catalog.get(v).version, target, name=f"bkprov-matrix-{v.replace('.', '-')}") for v in versions]
    lock = threading.Lock()
    with Live(table(rows), console=console, refresh_per_second=2, transient=not console.is_terminal) as live:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(run_one, row, extra, lock) for row in rows]
            while not all(f.done() for f in futures):
                with lock:
                    live.update(table(rows))
                time.sleep(0.5)
            for future in futures:
                future.result()
        live.update(table(rows))
    if not console.is_terminal:
        console.print(table(rows))
    if not keep:
        for row in rows:
            subprocess.run([sys.executable, "-m", "bkprov.cli", "destroy", row.name], capture_output=True, check=False)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.with_suffix(".md").write_text(markdown(rows))
    report.with_suffix(".json").write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return rows
