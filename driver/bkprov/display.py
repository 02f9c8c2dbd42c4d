"""Live progress for a playbook run: current task and host, ok/changed/failed counts.

Fed by runner events. On a terminal it is one refreshing line (rich); elsewhere it prints
one line per task, so CI logs and pipes stay readable. With -v, Ansible's own output
streams instead.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text


class PlayDisplay:
    def __init__(self, console: Console, title: str, verbose: bool = False) -> None:
        self.console = console
        self.title = title
        self.verbose = verbose
        self.counts = {"ok": 0, "changed": 0, "failed": 0, "skipped": 0}
        self.task = ""
        self.host = ""
        self.live: Live | None = None

    def __enter__(self) -> PlayDisplay:
        if self.console.is_terminal and not self.verbose:
            self.live = Live(self._line(), console=self.console, refresh_per_second=8, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.live.__exit__(None, None, None)

    def _line(self) -> Text:
        c = self.counts
        text = Text(f"{self.title} ", style="bold")
        text.append(f"ok={c['ok']} ", style="green")
        text.append(f"changed={c['changed']} ", style="yellow")
        text.append(f"failed={c['failed']} ", style="red" if c["failed"] else "dim")
        text.append(f"| {self.host} {self.task}", style="cyan")
        return text

    def __call__(self, event: dict[str, Any]) -> None:
        name = event.get("event", "")
        data = event.get("event_data", {})
        if self.verbose:
            if event.get("stdout"):
                self.console.print(Text.from_ansi(event["stdout"]))
            return
        if name == "playbook_on_task_start":
            self.task = data.get("task", "")
            if not self.live:
                self.console.print(Text(f"  {data.get('task', '')}"), highlight=False)
        elif name.startswith("runner_on_") and name not in ("runner_on_start",):
            self.host = data.get("host", "")
            if name == "runner_on_ok":
                self.counts["changed" if data.get("res", {}).get("changed") else "ok"] += 1
            elif name in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
                self.counts["failed"] += 1
            elif name == "runner_on_skipped":
                self.counts["skipped"] += 1
        if self.live:
            self.live.update(self._line())
