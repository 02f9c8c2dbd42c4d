"""What the user reads after a play: per-host outcome, the build's output, doctor's findings, one summary line."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from bkprov.console import err, out, print_json
from bkprov.results import Finding, PlayResult

STATUS_STYLE = {"ok": "green", "warning": "yellow", "problem": "bold red"}


def summary_json(result: PlayResult, summary: dict[str, Any]) -> dict[str, Any]:
    """The --json object: the command's summary, overall ok, and one object per host under "hosts"."""
    return {
        **summary,
        "ok": result.succeeded,
        "changed": result.changed,
        "build_output": result.build_output or None,
        "hosts": {name: host.as_json() for name, host in result.hosts.items()},
    }


def show_failures(result: PlayResult) -> None:
    """One block per host that did not succeed: how far it got and why; Ansible's last lines if it never ran."""
    for host in result.hosts.values():
        if host.ok:
            continue
        where = "unreachable" if host.status == "unreachable" else f"failed in {host.phase}"
        err.print(f"[red]{escape(host.host)}: {where}[/]\n{escape(host.error)}", highlight=False)
    if not result.ran:
        err.print("[red]ansible-playbook did not run:[/]\n" + escape("\n".join(result.output_tail)), highlight=False)


def report(result: PlayResult, summary: dict[str, Any], as_json: bool) -> int:
    """Print a provision's or verify's result; return its exit code."""
    if as_json:
        print_json(summary_json(result, summary))
        return result.exit_code()
    show_failures(result)
    for host in result.hosts.values():
        if host.build_output:
            out.print(f"RUN output: {host.build_output}", highlight=False)
    times = ", ".join(f"{k} {v:.1f}s" for k, v in summary["seconds"].items())
    state = "[green]ok[/]" if result.succeeded else "[red]FAILED[/]"
    out.print(
        f"{state} BuildKit {summary['version']} on {summary['target']} {summary['name'] or ''}: "
        f"changed={result.changed} ({times})",
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
