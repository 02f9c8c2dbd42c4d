"""Live progress: one line per host and phase off a terminal, one table row per host on it.

The events are shaped as ansible-runner hands them over (fields recorded from a real provision).
"""

from __future__ import annotations

from io import StringIO

from rich.console import Console

from bkprov.display import PlayDisplay, phase_of

PLAYBOOK = "/work/main/playbooks/provision.yml"
ROLES = "/work/main/playbooks/collections/ansible_collections/bkprov/buildkit/roles"

# (role, module, task, task_path) of provision.yml's tasks, in order.
ASK_UID = (None, "ansible.builtin.raw", "Ask which user Ansible connects as", f"{PLAYBOOK}:29")
RUNC = ("runc", "bkprov.buildkit.converge", "Install runc v1.0.2", f"{ROLES}/runc/tasks/main.yml:5")
PLAN = ("buildkit", "bkprov.buildkit.buildkit_plan", "Resolve BuildKit v0.10.6", f"{ROLES}/buildkit/tasks/main.yml:4")
FACTS = ("buildkit", "bkprov.buildkit.host_facts", "Read the host's facts", f"{ROLES}/buildkit/tasks/main.yml:23")
CONVERGE = (
    "buildkit",
    "bkprov.buildkit.converge",
    "Install, configure and start",
    f"{ROLES}/buildkit/tasks/main.yml:66",
)
BUILD = ("verify", "bkprov.buildkit.verify_build", "Build a Dockerfile", f"{ROLES}/verify/tasks/main.yml:4")
PUBLISH = (None, "ansible.builtin.set_stats", "Publish the result", f"{PLAYBOOK}:72")
FAIL_HOST = (None, "ansible.builtin.fail", "Fail the host", f"{PLAYBOOK}:90")


def event(name: str, host: str, task: tuple, **data) -> dict:
    role, action, title, path = task
    return {
        "event": name,
        "event_data": {
            "host": host,
            "task": title,
            "role": role,
            "task_action": action,
            "resolved_action": action,
            "task_path": path,
            **data,
        },
    }


def run_task(
    display: PlayDisplay, host: str, task: tuple, outcome: str = "ok", changed: bool = False, phase: str = ""
) -> None:
    display(event("runner_on_start", host, task))
    res = {"changed": changed} if outcome == "ok" else {"msg": "it broke", **({"phase": phase} if phase else {})}
    display(event(f"runner_on_{outcome}", host, task, res=res))


def console(terminal: bool) -> tuple[Console, StringIO]:
    buffer = StringIO()
    return Console(file=buffer, force_terminal=terminal, width=200, soft_wrap=True), buffer


def test_tasks_are_placed_in_phases_by_role_and_module():
    def phase(task: tuple) -> str | None:
        return phase_of(event("runner_on_start", "h", task)["event_data"])

    assert [phase(t) for t in (ASK_UID, RUNC, PLAN, FACTS, CONVERGE, BUILD, PUBLISH)] == [
        None,
        "install",
        "preflight",
        "preflight",
        "install",
        "verify",
        None,
    ]
    doctor_read = (None, "bkprov.buildkit.host_facts", "Read the host", "/work/main/playbooks/doctor.yml:20")
    assert phase(doctor_read) == "diagnose"
    uninstall = ("buildkit", "ansible.builtin.file", "Remove", f"{ROLES}/buildkit/tasks/uninstall.yml:3")
    assert phase(uninstall) == "uninstall"


def test_off_a_terminal_each_host_gets_one_line_per_phase_and_one_for_its_failure():
    con, buffer = console(terminal=False)
    with PlayDisplay(con, "provision v0.10.6") as display:
        for task in (ASK_UID, RUNC, PLAN, FACTS):
            run_task(display, "a", task, changed=task is RUNC)
            run_task(display, "b", task, changed=task is RUNC)
        run_task(display, "a", CONVERGE, changed=True)
        run_task(display, "b", CONVERGE, outcome="failed", phase="start")  # the module says where it stopped
        run_task(display, "a", BUILD)
        run_task(display, "b", FAIL_HOST, outcome="failed")  # the rescue failing the host: no news
        run_task(display, "a", PUBLISH)

    assert buffer.getvalue().splitlines() == [
        "provision v0.10.6",
        "  a: connect (ok=0 changed=0 failed=0)",
        "  b: connect (ok=0 changed=0 failed=0)",
        "  a: install (ok=1 changed=0 failed=0)",
        "  b: install (ok=1 changed=0 failed=0)",
        "  a: preflight (ok=2 changed=1 failed=0)",
        "  b: preflight (ok=2 changed=1 failed=0)",
        "  a: install (ok=4 changed=1 failed=0)",
        "  b: install (ok=4 changed=1 failed=0)",
        "  b: failed in start: Install, configure and start (ok=4 changed=1 failed=1)",
        "  a: verify (ok=5 changed=2 failed=0)",
    ]


def test_on_a_terminal_the_table_has_one_row_per_host_and_nothing_is_left_behind():
    con, buffer = console(terminal=True)
    with PlayDisplay(con, "provision v0.10.6") as display:
        for task in (ASK_UID, RUNC, PLAN):
            run_task(display, "builder-1", task, changed=task is RUNC)
        display(event("runner_on_start", "builder-2", ASK_UID))
        display(event("runner_on_unreachable", "builder-2", ASK_UID, res={"msg": "no route"}))
        view, out = console(terminal=False)
        view.print(display.render())
    rows = [line.split() for line in out.getvalue().splitlines()]
    assert rows[0][:2] == ["provision", "v0.10.6"]
    assert rows[1][:5] == ["host", "phase", "ok", "changed", "failed"]
    assert rows[2][:5] == ["builder-1", "preflight", "3", "1", "0"]
    assert rows[3][:6] == ["builder-2", "connect", "(unreachable)", "0", "0", "1"]
    assert "builder-1" not in buffer.getvalue().split("\x1b[2K")[-1]  # transient: the live table is erased


def test_the_phase_a_host_ended_in_is_the_published_one():
    con, _ = console(terminal=False)
    with PlayDisplay(con, "provision v0.10.6") as display:
        run_task(display, "a", BUILD)
        stats = {"artifact_data": {"bkprov": {"a": {"phase": "done", "ok": True}}}}
        display({"event": "playbook_on_stats", "event_data": stats})
    assert display.hosts["a"].phase == "done"


def test_verbose_streams_ansibles_own_output():
    con, buffer = console(terminal=False)
    with PlayDisplay(con, "verify", verbose=True) as display:
        display({"event": "runner_on_ok", "stdout": "ok: [box]", "event_data": {"host": "box"}})
    assert buffer.getvalue() == "ok: [box]\n"
