"""Live progress for a playbook run: one line per host with its phase and ok/changed/failed counts.

Fed by runner events. On a terminal it is a refreshing table (rich Live), one row per host;
elsewhere it prints one line each time a host enters a new phase (or fails), so CI logs and
pipes stay readable however many hosts run. With -v, Ansible's own output streams instead.

The phase shown while a play runs comes from the running task's role and module (PHASE_BY_TASK);
the phase a host ended in is what its playbook published (bkprov.results).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

# (role, module) -> phase; None for the role's other tasks; role "" is a playbook's own task. Other
# tasks (asking for the user id, publishing the result) keep the host's current phase.
START_PHASE = "connect"
PHASE_BY_TASK: dict[tuple[str, str | None], str] = {
    ("", "host_facts"): "diagnose",  # doctor.yml
    ("runc", None): "install",
    ("buildkit", None): "preflight",  # the plan, the host's facts, its requirements
    ("buildkit", "converge"): "install",  # install, configure and start, in one module
    ("verify", None): "verify",
}
UNINSTALL = re.compile(r"/roles/buildkit/tasks/uninstall\.ya?ml")
DONE_EVENTS = ("runner_on_ok", "runner_on_failed", "runner_on_unreachable", "runner_on_skipped")


def phase_of(data: dict[str, Any]) -> str | None:
    """The phase a task belongs to, from its role and module (None: not a phase of its own)."""
    if UNINSTALL.search(data.get("task_path") or ""):
        return "uninstall"
    role = data.get("role") or ""
    action = str(data.get("resolved_action") or data.get("task_action") or "").rsplit(".", 1)[-1]
    return PHASE_BY_TASK.get((role, action)) or PHASE_BY_TASK.get((role, None))


@dataclass
class HostProgress:
    host: str
    phase: str
    ok: int = 0  # as in Ansible's recap: tasks that succeeded, changed or not
    changed: int = 0
    failed: int = 0
    task: str = ""
    state: str = "running"  # running, failed, unreachable
    announced: bool = False  # its first phase was shown

    def counts(self) -> str:
        return f"ok={self.ok} changed={self.changed} failed={self.failed}"


class PlayDisplay:
    def __init__(self, console: Console, title: str, verbose: bool = False) -> None:
        self.console = console
        self.title = title
        self.verbose = verbose
        self.hosts: dict[str, HostProgress] = {}
        self.started = time.monotonic()
        self.live: Live | None = None

    def __enter__(self) -> PlayDisplay:
        if self.console.is_terminal and not self.verbose:
            self.live = Live(self.render(), console=self.console, refresh_per_second=4, transient=True)
            self.live.__enter__()
        elif not self.verbose:
            self.console.print(Text(f"{self.title}", style="bold"), highlight=False)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.live.__exit__(None, None, None)

    def render(self) -> Group:
        table = Table("host", "phase", "ok", "changed", "failed", "task", box=None, pad_edge=False)
        for h in self.hosts.values():
            style = {"failed": "red", "unreachable": "red"}.get(h.state, "")
            table.add_row(
                Text(h.host, style=style or "cyan"),
                Text(h.phase if h.state == "running" else f"{h.phase} ({h.state})", style=style),
                Text(str(h.ok), style="green"),
                Text(str(h.changed), style="yellow"),
                Text(str(h.failed), style="red" if h.failed else "dim"),
                Text(h.task, style="dim", overflow="ellipsis", no_wrap=True),
            )
        elapsed = int(time.monotonic() - self.started)
        head = Text(f"{self.title} ", style="bold").append(f"{elapsed}s, {len(self.hosts)} host(s)", style="dim")
        return Group(head, table)

    def host(self, name: str) -> HostProgress:
        if name not in self.hosts:
            self.hosts[name] = HostProgress(name, START_PHASE)
        return self.hosts[name]

    def line(self, h: HostProgress, what: str) -> None:
        """Off a terminal: one line for a host's new phase or outcome."""
        if not self.live:
            self.console.print(Text(f"  {h.host}: {what} ({h.counts()})"), highlight=False)

    def __call__(self, event: dict[str, Any]) -> None:
        name = event.get("event", "")
        data = event.get("event_data", {})
        if self.verbose:
            if event.get("stdout"):
                self.console.print(Text.from_ansi(event["stdout"]))
            return
        if name == "runner_on_start" and data.get("host"):
            h = self.host(data["host"])
            h.task = data.get("task", "")
            phase = phase_of(data) or h.phase
            if phase != h.phase or not h.announced:
                h.phase, h.announced = phase, True
                self.line(h, phase)
        elif name in DONE_EVENTS and data.get("host"):
            h = self.host(data["host"])
            res = data.get("res") or {}
            if name == "runner_on_ok":
                h.ok += 1
                h.changed += bool(isinstance(res, dict) and res.get("changed"))
            elif name != "runner_on_skipped" and not data.get("ignore_errors"):
                h.failed += 1
                first = h.state == "running"  # later failures (the rescue failing the host) add nothing new
                h.state = "unreachable" if name == "runner_on_unreachable" else "failed"
                if isinstance(res, dict) and res.get("phase"):  # bkprov's modules say where they stopped
                    h.phase = str(res["phase"])
                if first:
                    self.line(h, f"{h.state} in {h.phase}: {data.get('task', '')}")
        elif name == "playbook_on_stats":
            self.finish(data)
        if self.live:
            self.live.update(self.render())

    def finish(self, stats: dict[str, Any]) -> None:
        """The phase each host ended in, as its playbook published it."""
        published = (stats.get("artifact_data") or {}).get("bkprov") or {}
        for name, entry in published.items():
            if isinstance(entry, dict) and name in self.hosts and entry.get("phase"):
                self.hosts[name].phase, self.hosts[name].task = str(entry["phase"]), ""
