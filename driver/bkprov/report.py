"""What the user reads after a play: per-host outcome, the build's output, doctor's findings, one summary line."""

from __future__ import annotations

import re
from typing import Any

from rich.markup import escape
from rich.table import Table

from bkprov.console import err, out, print_json
from bkprov.results import FAILED, NOT_REACHED, OK, UNKNOWN_PHASE, UNREACHABLE, Finding, PlayResult

STATUS_STYLE = {"ok": "green", "warning": "yellow", "problem": "bold red"}
HOST_STYLE = {OK: "green", NOT_REACHED: "yellow"}
# A fleet's summary stays readable: the first lines of a host's error and of a finding's evidence
# (--json and `bkprov doctor` have all of them).
ERROR_LINES = 12
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ansible colours its warnings and errors
EVIDENCE_LINES = 6


def clip(text: str, keep: int = EVIDENCE_LINES) -> str:
    lines = text.strip().splitlines()
    more = len(lines) - keep
    return "\n".join(lines[:keep] + ([f"… ({more} more lines; --json has them all)"] if more > 0 else []))


def indent(text: str, first: str) -> str:
    """``text`` after ``first``, its further lines aligned under the first."""
    pad = " " * len(first)
    return first + text.replace("\n", "\n" + pad)


def summary_json(result: PlayResult, summary: dict[str, Any]) -> dict[str, Any]:
    """The --json object: the command's summary, overall ok, and one object per host under "hosts"."""
    return {
        **summary,
        "ok": result.succeeded,
        "counts": {status: result.count(status) for status in (OK, FAILED, UNREACHABLE, NOT_REACHED)},
        "changed": result.changed,
        "build_output": result.build_output or None,
        "hosts": {name: host.as_json() for name, host in result.hosts.items()},
    }


def show_hosts(result: PlayResult) -> None:
    """One block per host, whatever happened to the others: outcome, version, the build's line, and for a
    host that did not succeed, why (its error, doctor's problems with their evidence and fix)."""
    width = max((len(name) for name in result.hosts), default=0)
    for host in result.hosts.values():
        style = HOST_STYLE.get(host.status, "red")
        where = host.status == FAILED and host.phase not in ("done", UNKNOWN_PHASE)
        status = f"failed in {host.phase}" if where else host.status  # (doctor: done, but a problem found)
        facts = [f"BuildKit {host.installed_version}" if host.installed_version else "", f"changed={host.changed}"]
        if host.status == NOT_REACHED:
            facts[0] = f"still on {host.installed_version}" if host.installed_version else "version unknown"
        out.print(
            f"[{style}]{escape(host.host.ljust(width))}  {escape(status)}[/]  "
            + escape("  ".join(f for f in facts if f)),
            highlight=False,
        )
        if host.build_output:
            out.print(f"  RUN output: {escape(host.build_output)}", highlight=False)
        if host.ok or host.status == NOT_REACHED:
            continue
        if host.error:
            out.print(indent(escape(clip(host.error, ERROR_LINES)), "  "), highlight=False)
        for f in (f for f in host.problems if f["summary"] not in host.error):  # (preflight's refusal names some)
            out.print(f"  [red]doctor:[/] {escape(f['summary'])}", highlight=False)
            for key in ("cause", "evidence", "fix"):
                if f.get(key):
                    out.print(indent(escape(clip(f[key])), f"    {key}: "), highlight=False)
    if not result.ran:
        err.print(
            "[red]ansible-playbook did not reach any host:[/]\n" + escape(ANSI.sub("", "\n".join(result.output_tail))),
            highlight=False,
        )


def show_failures(result: PlayResult) -> None:
    """Only the hosts that did not succeed (for commands whose success needs no summary)."""
    failed = PlayResult(
        result.playbook, result.rc, result.status, hosts={n: h for n, h in result.hosts.items() if not h.ok}
    )
    failed.output_tail = result.output_tail
    if failed.hosts or not result.ran:
        show_hosts(failed)


def tally(result: PlayResult) -> str:
    """How many hosts ended how: "3 ok, 1 failed, 1 not reached"."""
    counts = [(status, result.count(status)) for status in (OK, FAILED, UNREACHABLE, NOT_REACHED)]
    return ", ".join(f"{n} {status}" for status, n in counts if n) or "no host"


def report(result: PlayResult, summary: dict[str, Any], as_json: bool) -> int:
    """Print a provision's or verify's result, per host; return its exit code."""
    if as_json:
        print_json(summary_json(result, summary))
        return result.exit_code()
    show_hosts(result)
    times = ", ".join(f"{k} {v:.1f}s" for k, v in summary["seconds"].items())
    state = "[green]ok[/]" if result.succeeded else "[red]FAILED[/]"
    version = f"BuildKit {summary['version']}" if summary.get("version") else "BuildKit"
    out.print(
        f"{state} {escape(version)} on {escape(summary['target'])} {escape(summary['name'] or '')}: "
        f"{tally(result)}; changed={result.changed} ({times})",
        highlight=False,
    )
    return result.exit_code()


def show_findings(findings: dict[str, list[Finding]]) -> int:
    """Print doctor findings per host; return how many problems there are."""
    problems = 0
    for host, items in findings.items():
        table = Table("status", "check", "finding", "evidence", "fix", title=f"doctor: {host}", show_lines=True)
        for f in items:
            problems += f["status"] == "problem"
            detail = escape(f["summary"]) + (f"\n[dim]{escape(f['cause'])}[/]" if f.get("cause") else "")
            table.add_row(
                f"[{STATUS_STYLE.get(f['status'], 'white')}]{f['status']}[/]",
                escape(f["check"]),
                detail,
                escape(f.get("evidence", "")),
                escape(f.get("fix", "")),
            )
        out.print(table)
    return problems
