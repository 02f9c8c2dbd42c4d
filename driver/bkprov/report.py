"""What the user reads after a play: failures, the build's output, doctor's findings, one summary line."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from bkprov.console import err, out, print_json

STATUS_STYLE = {"ok": "green", "warning": "yellow", "problem": "bold red"}


def report(result: Any, summary: dict[str, Any], as_json: bool) -> int:
    """Print a provision's or verify's result; its exit code."""
    summary.update(
        ok=result.succeeded,
        changed=result.changed,
        build_output=result.verify_output or None,
        failures=[{"host": f.host, "task": f.task, "role": f.role, "message": f.message} for f in result.failures],
    )
    if as_json:
        print_json(summary)
        return 0 if result.succeeded else 1
    show_failures(result)
    if not result.succeeded and not result.failures:
        err.print("[red]ansible-playbook failed:[/]\n" + escape("\n".join(result.output_tail)), highlight=False)
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


def show_failures(result: Any) -> None:
    for failure in result.failures:
        err.print(
            f"[red]failed:[/] {escape(f'[{failure.host}] {failure.task}')}\n{escape(failure.message)}", highlight=False
        )


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
