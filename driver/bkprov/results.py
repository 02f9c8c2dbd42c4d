"""What a play did on each host, read from the data the playbooks publish.

Every bkprov playbook ends by publishing, per host, with ``ansible.builtin.set_stats``
(per_host: false, aggregate: true) under the key ``bkprov``::

    bkprov:
      HOST: {playbook, phase, ok, version, installed_version, build_output, findings, error}

ansible-runner hands that to us in the ``playbook_on_stats`` event as ``artifact_data``,
next to Ansible's per-host counters (ok, changed, failures, dark …). ``PlayResult`` joins
the two; the CLI, ``--json`` and ``matrix`` read nothing else (no task names, no message text).

A host Ansible could not reach is ``unreachable``. A host that failed before it published
(a syntax error in a role, a module crash) is ``failed`` in phase ``unknown``, with the failed
task's message as its error. A host a rolling upgrade stopped before is ``not reached``: it has
no result of the play, only what ``playbooks/installed.yml`` read from it beforehand.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

STATS_KEY = "bkprov"
OK, FAILED, UNREACHABLE, NOT_REACHED = "ok", "failed", "unreachable", "not reached"
# Where a provision stops, in order; "done" means every step passed. doctor's phases are read, diagnose, done.
PHASES = ("preflight", "install", "start", "verify", "done")
UNKNOWN_PHASE = "unknown"

Finding = dict[str, str]  # status, check, summary, evidence, cause, fix


@dataclass
class HostResult:
    host: str
    status: str  # ok | failed | unreachable | not reached
    phase: str = UNKNOWN_PHASE  # how far the host got (PHASES, doctor's phases, or unknown)
    changed: int = 0  # tasks that changed something on the host
    version: str = ""  # the BuildKit version requested
    installed_version: str = ""  # what buildkitd/buildctl report
    build_output: str = ""  # the verify build's RUN output line
    findings: list[Finding] = field(default_factory=list)
    error: str = ""
    published: bool = False  # False when the host left no result of its own (unreachable, crashed early)
    # What the converge steps left on the host and the proof build that passed (bkprov.recorded); not in --json.
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.get("status") == "problem"]

    @property
    def installed(self) -> bool:
        """BuildKit was installed and started: the play got as far as the verify build."""
        return self.phase in ("verify", "done")

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["published"], data["state"]
        return data


@dataclass
class PlayResult:
    playbook: str
    rc: int = -1  # ansible-playbook's exit code
    status: str = "unstarted"  # ansible-runner's: successful, failed, canceled, timeout
    seconds: float = 0.0
    hosts: dict[str, HostResult] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    output_tail: list[str] = field(default_factory=list)  # the last lines Ansible printed, for a play that never ran

    @property
    def ran(self) -> bool:
        """Ansible got as far as the hosts (False: a broken playbook, inventory or Ansible install)."""
        return bool(self.hosts)

    @property
    def succeeded(self) -> bool:
        return self.ran and self.rc == 0 and all(h.ok for h in self.hosts.values())

    @property
    def changed(self) -> int:
        return sum(h.changed for h in self.hosts.values())

    @property
    def findings(self) -> dict[str, list[Finding]]:
        return {name: h.findings for name, h in self.hosts.items() if h.findings}

    @property
    def build_output(self) -> str:
        return next((h.build_output for h in self.hosts.values() if h.build_output), "")

    def count(self, status: str) -> int:
        return sum(h.status == status for h in self.hosts.values())

    def exit_code(self) -> int:
        """0 every host ok; 2 nothing could run (Ansible reached no host); 1 otherwise: a host failed,
        was unreachable while others ran, or a stopped rollout never reached it."""
        if self.succeeded:
            return 0
        if not any(h.status in (OK, FAILED) for h in self.hosts.values()):
            return 2
        return 1

    def attach_doctor(self, doctor: PlayResult) -> None:
        """Add doctor's problems to the hosts they were found on (the cause of a host's failure)."""
        for name, diagnosed in doctor.hosts.items():
            host = self.hosts.get(name)
            if host is None:
                continue
            known = {(f.get("check"), f.get("summary")) for f in host.findings}
            host.findings += [f for f in diagnosed.problems if (f.get("check"), f.get("summary")) not in known]

    def add_not_reached(self, before: PlayResult) -> None:
        """Hosts ``before`` read that this play never got to (a rollout stopped at a failed batch):
        ``not reached``, with the version they were found on."""
        for name, read in before.hosts.items():
            if name not in self.hosts:
                self.hosts[name] = HostResult(
                    name,
                    NOT_REACHED,
                    phase="none",
                    installed_version=read.installed_version,
                    error=read.error if not read.ok else "",
                )
        self.hosts = dict(sorted(self.hosts.items()))


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def from_published(host: str, entry: dict[str, Any], changed: int) -> HostResult:
    """A host's result from what its playbook published."""
    return HostResult(
        host=host,
        status=OK if entry.get("ok") is True or str(entry.get("ok")).lower() == "true" else FAILED,
        phase=_text(entry.get("phase")) or UNKNOWN_PHASE,
        changed=changed,
        version=_text(entry.get("version")),
        installed_version=_text(entry.get("installed_version")),
        build_output=_text(entry.get("build_output")).strip(),
        findings=[dict(f) for f in entry.get("findings") or [] if isinstance(f, dict)],
        error=_text(entry.get("error")),
        published=True,
        state=dict(entry.get("state") or {}) if isinstance(entry.get("state"), dict) else {},
    )


def host_results(stats: dict[str, Any], task_errors: dict[str, str] | None = None) -> dict[str, HostResult]:
    """Per-host results from a ``playbook_on_stats`` event's data.

    ``task_errors`` maps a host to the message of the task that failed on it (for hosts that
    failed before they published anything).
    """
    task_errors = task_errors or {}
    published = (stats.get("artifact_data") or {}).get(STATS_KEY) or {}
    names: set[str] = set(published)
    for counter in ("processed", "ok", "changed", "failures", "dark", "skipped", "rescued", "ignored"):
        names |= set(stats.get(counter) or {})
    results: dict[str, HostResult] = {}
    for host in sorted(names):
        changed = int((stats.get("changed") or {}).get(host, 0))
        entry = published.get(host)
        failed_task = bool((stats.get("failures") or {}).get(host))
        if isinstance(entry, dict):
            result = from_published(host, entry, changed)
            if failed_task and result.ok:  # a task after the publishing one failed
                result.status, result.error = FAILED, task_errors.get(host, "")
        else:
            result = HostResult(host, FAILED if failed_task else OK, changed=changed, error=task_errors.get(host, ""))
            if not failed_task and not (stats.get("dark") or {}).get(host):
                result.phase = "done"  # a playbook that publishes nothing and passed
        if (stats.get("dark") or {}).get(host):
            result.status = UNREACHABLE
            result.error = result.error or task_errors.get(host, "") or "Ansible could not reach the host"
        results[host] = result
    return results
