"""Run bkprov's playbooks through ansible-runner and turn its events into a ``PlayResult``.

Like ansible-navigator: a private data dir outside the user's cwd, no env files left
behind, and an event handler that feeds a live display. What happened on each host comes
from the data the playbooks publish (bkprov.results), read from the final stats event.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bkprov.paths import cache_dir, collections_root, playbooks_dir, state_dir
from bkprov.results import PlayResult, host_results

EventSink = Callable[[dict[str, Any]], None]


class PendingInventory:
    """The inventory of a target that is still being made, given by another thread once it exists.

    ansible-playbook starts at once and reads its inventory from a FIFO: its ~1 s of start-up (imports,
    YAML) overlaps making the target, and it blocks at the read only if the target is not there yet.
    ``give(None)`` (the target could not be made) serves an empty inventory: the play reaches no host.
    """

    def __init__(self) -> None:
        self._inventory: dict[str, Any] | None = None
        self._given = threading.Event()

    def give(self, inventory: dict[str, Any] | None) -> None:
        if not self._given.is_set():  # the first answer stands (a finally-clause may give None after it)
            self._inventory = inventory
            self._given.set()

    @contextlib.contextmanager
    def served(self, private: Path) -> Iterator[str]:
        """A FIFO in the run's private dir, its path for ``-i``, while the with-block runs ansible-playbook."""
        (private / "inventory").mkdir()
        fifo = private / "inventory" / "hosts.json"  # .json: the yaml inventory plugin reads it
        os.mkfifo(fifo, 0o600)

        def write() -> None:
            self._given.wait()
            try:
                with open(fifo, "w", encoding="utf-8") as handle:  # blocks until ansible-playbook reads
                    json.dump(self._inventory or {}, handle)
            except OSError:  # the run ended (and its directory went) before the target was made
                pass

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        try:
            yield str(fifo)
        finally:
            # ansible-playbook ended without reading it (it failed early, or was cancelled): open the other
            # end here so the writer's open returns, once the inventory was given.
            if self._given.is_set() and writer.is_alive():
                reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
                try:
                    writer.join(timeout=5)
                finally:
                    os.close(reader)


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


def no_delay_after_close() -> None:
    """Make pexpect's pty close without its 0.1 s sleep (once per process).

    ansible-runner closes the pty only after ansible-playbook has exited; ptyprocess then sleeps
    delayafterclose "to give the kernel time to update process status", which an exited child does not
    need. The delay is set per instance in PtyProcess.__init__, so it is cleared on each new one.
    """
    import pexpect

    spawnpty = pexpect.spawn._spawnpty
    if getattr(spawnpty, "no_delay_after_close", False):
        return

    def _spawnpty(self: Any, args: Any, **kwargs: Any) -> Any:
        proc = spawnpty(self, args, **kwargs)
        proc.delayafterclose = 0.0
        return proc

    _spawnpty.no_delay_after_close = True  # type: ignore[attr-defined]
    pexpect.spawn._spawnpty = _spawnpty


def run_playbook(
    playbook: str,
    inventory: str | dict[str, Any] | PendingInventory,
    extravars: dict[str, Any],
    sink: EventSink | None = None,
    verbosity: int = 0,
    limit: str | None = None,
    forks: int | None = None,
) -> PlayResult:
    """Run one of playbooks/*.yml; never raises for a failed play, the result says what failed."""
    import ansible_runner

    no_delay_after_close()

    # One private data dir per run: ansible-runner writes the inventory there, and runs at once
    # (bkprov matrix --jobs N, two terminals) must not see each other's.
    runs = state_dir() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix=f"{Path(playbook).stem}-", dir=runs))
    collector = Collector(playbook, sink)
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            pending = isinstance(inventory, PendingInventory)
            source = stack.enter_context(inventory.served(private)) if pending else inventory
            runner = ansible_runner.run(
                private_data_dir=str(private),
                project_dir=str(playbooks_dir()),
                playbook=playbook,
                inventory=source,
                extravars=extravars,
                # An inventory of ours is JSON (written by ansible-runner or served): only the yaml plugin (which
                # reads .json) need load, not every enabled inventory plugin (~0.2 s of ansible-playbook's start-up).
                envvars=environment({"ANSIBLE_INVENTORY_ENABLED": "yaml"} if not isinstance(inventory, str) else None),
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
