"""Run bkprov's playbooks through ansible-runner and turn its events into a ``PlayResult``.

Like ansible-navigator: a private data dir outside the user's cwd, no env files left
behind, and an event handler that feeds a live display. What happened on each host comes
from the data the playbooks publish (bkprov.results), read from the final stats event.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bkprov.paths import cache_dir, collections_root, playbooks_dir, state_dir
from bkprov.results import PlayResult, host_results

EventSink = Callable[[dict[str, Any]], None]


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


def task_message(res: dict[str, Any]) -> str:
    """The one thing a failed task said (its msg, else stderr, else stdout)."""
    for key in ("msg", "stderr", "stdout"):
        value = res.get(key)
        if value:
            return str(value)
    return str(res)[:2000]


class Collector:
    """An ansible-runner event handler: gathers what the result needs, feeds the display, keeps no event files."""

    def __init__(self, playbook: str, sink: EventSink | None) -> None:
        self.result = PlayResult(playbook)
        self.sink = sink
        self.stats: dict[str, Any] = {}
        self.task_errors: dict[str, str] = {}  # host -> the failed task's message

    def __call__(self, event: dict[str, Any]) -> bool:
        data = event.get("event_data", {})
        name = event.get("event", "")
        res = data.get("res") or {}
        if event.get("stdout"):
            self.result.output_tail = (self.result.output_tail + event["stdout"].splitlines())[-40:]
        if name in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            self.task_errors[data.get("host", "?")] = f"{data.get('task', '?')}: {task_message(res)}"
        if name.startswith("runner_on_") and isinstance(res, dict) and res.get("warnings"):
            self.result.warnings += res["warnings"]
        if name == "playbook_on_stats":
            self.stats = data
        if self.sink:
            self.sink(event)
        return False  # keep no event files: the result above is what we need

    def finish(self, rc: int, status: str, seconds: float) -> PlayResult:
        result = self.result
        result.rc, result.status, result.seconds = rc, status, seconds
        result.hosts = host_results(self.stats, self.task_errors)
        return result


def run_playbook(
    playbook: str,
    inventory: str | dict[str, Any],
    extravars: dict[str, Any],
    sink: EventSink | None = None,
    verbosity: int = 0,
    limit: str | None = None,
    forks: int | None = None,
) -> PlayResult:
    """Run one of playbooks/*.yml; never raises for a failed play, the result says what failed."""
    import ansible_runner

    # One private data dir per run: ansible-runner writes the inventory there, and runs at once
    # (bkprov matrix --jobs N, two terminals) must not see each other's.
    runs = state_dir() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix=f"{Path(playbook).stem}-", dir=runs))
    collector = Collector(playbook, sink)
    started = time.monotonic()
    try:
        runner = ansible_runner.run(
            private_data_dir=str(private),
            project_dir=str(playbooks_dir()),
            playbook=playbook,
            inventory=inventory,
            extravars=extravars,
            # An inventory of ours is JSON written by ansible-runner: only the yaml plugin (which reads .json)
            # need load, not every enabled inventory plugin (~0.2 s of ansible-playbook's start-up).
            envvars=environment({"ANSIBLE_INVENTORY_ENABLED": "yaml"} if isinstance(inventory, dict) else None),
            limit=limit,
            forks=forks,
            verbosity=verbosity or None,
            quiet=True,
            suppress_env_files=True,
            event_handler=collector,
        )
    finally:
        if not os.environ.get("BKPROV_KEEP_RUNS"):
            shutil.rmtree(private, ignore_errors=True)
    if runner.status == "canceled":  # ansible-runner turned Ctrl-C into a cancel
        raise KeyboardInterrupt
    return collector.finish(runner.rc if runner.rc is not None else -1, runner.status, time.monotonic() - started)
