"""Run bkprov's playbooks through ansible-runner and turn its events into a result.

Like ansible-navigator: a private data dir outside the user's cwd, no env files left
behind, artifacts rotated, and an event handler that feeds a live display.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from bkprov.paths import cache_dir, collections_root, playbooks_dir, state_dir

EventSink = Callable[[dict[str, Any]], None]


@dataclass
class TaskFailure:
    host: str
    task: str
    message: str
    role: str = ""


@dataclass
class PlayResult:
    playbook: str
    rc: int
    status: str
    seconds: float
    changed: int = 0
    ok: int = 0
    failures: list[TaskFailure] = field(default_factory=list)
    verify_output: str = ""
    warnings: list[str] = field(default_factory=list)
    output_tail: list[str] = field(default_factory=list)
    findings: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # host -> doctor findings

    @property
    def succeeded(self) -> bool:
        return self.rc == 0 and self.status == "successful" and not self.failures


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for ansible-playbook: pass ANSIBLE_*/BKPROV_* through, find our collection fast."""
    env = {k: v for k, v in os.environ.items() if k.startswith(("ANSIBLE_", "BKPROV_", "DOCKER_"))}
    bindir = str(Path(sys.executable).parent)  # ansible-playbook sits next to our interpreter
    user_collections = env.get("ANSIBLE_COLLECTIONS_PATH", "~/.ansible/collections")
    env.update(
        PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        ANSIBLE_COLLECTIONS_PATH=f"{collections_root()}{os.pathsep}{user_collections}",
        ANSIBLE_PIPELINING="True",
        ANSIBLE_HOST_KEY_CHECKING=env.get("ANSIBLE_HOST_KEY_CHECKING", "False"),
        ANSIBLE_RETRY_FILES_ENABLED="False",
        ANSIBLE_INJECT_FACT_VARS="False",
        BKPROV_CACHE=str(cache_dir()),
    )
    env.update(extra or {})
    return env


def _message(res: dict[str, Any]) -> str:
    for key in ("msg", "stderr", "stdout"):
        value = res.get(key)
        if value:
            return str(value)
    return str(res)[:2000]


class Collector:
    """An ansible-runner event handler: builds the result, feeds the display, keeps no event files."""

    def __init__(self, result: PlayResult, sink: EventSink | None) -> None:
        self.result = result
        self.sink = sink

    def __call__(self, event: dict[str, Any]) -> bool:
        result = self.result
        data = event.get("event_data", {})
        name = event.get("event")
        if event.get("stdout"):
            result.output_tail = (result.output_tail + event["stdout"].splitlines())[-40:]
        if name in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            result.failures.append(
                TaskFailure(data.get("host", "?"), data.get("task", "?"), _message(data.get("res", {})))
            )
        if (
            name == "runner_on_ok"
            and data.get("role") == "verify"
            and str(data.get("res", {}).get("msg", "")).startswith("RUN printed:")
        ):
            result.verify_output = data["res"]["msg"].removeprefix("RUN printed:").strip()
        if name and name.startswith("runner_on_") and data.get("res", {}).get("warnings"):
            result.warnings += data["res"]["warnings"]
        if name == "runner_on_ok" and data.get("task") == "Diagnose the host":
            result.findings[data.get("host", "?")] = data.get("res", {}).get("findings", [])
        if name == "playbook_on_stats":
            result.changed = sum(data.get("changed", {}).values())
            result.ok = sum(data.get("ok", {}).values())
        if self.sink:
            self.sink(event)
        return False  # keep no event files: the result above is what we need


def run_playbook(
    playbook: str,
    inventory: str | dict[str, Any],
    extravars: dict[str, Any],
    sink: EventSink | None = None,
    verbosity: int = 0,
    limit: str | None = None,
) -> PlayResult:
    """Run one of playbooks/*.yml; never raises for a failed play, the result says what failed."""
    # One private data dir per run: ansible-runner writes the inventory there, and runs at once
    # (bkprov matrix --jobs N, two terminals) must not see each other's.
    runs = state_dir() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix=f"{Path(playbook).stem}-", dir=runs))
    result = PlayResult(playbook, rc=-1, status="unstarted", seconds=0.0)
    started = time.monotonic()
    runner = ansible_runner.run(
        private_data_dir=str(private),
        project_dir=str(playbooks_dir()),
        playbook=playbook,
        inventory=inventory,
        extravars=extravars,
        envvars=environment(),
        limit=limit,
        verbosity=verbosity or None,
        quiet=True,
        suppress_env_files=True,
        event_handler=Collector(result, sink),
    )
    result.seconds = time.monotonic() - started
    if not os.environ.get("BKPROV_KEEP_RUNS"):
        shutil.rmtree(private, ignore_errors=True)
    result.rc = runner.rc if runner.rc is not None else -1
    result.status = runner.status
    if runner.status == "canceled":  # ansible-runner turned Ctrl-C into a cancel
        raise KeyboardInterrupt
    return result
