"""Per-host results from the stats event ansible-runner hands over (recorded from real runs)."""

from __future__ import annotations

import copy

import pytest

from bkprov.matrix import BUILD_FAILED, INSTALL_FAILED, OK, UNREACHABLE, Row
from bkprov.plays import Fleet
from bkprov.report import summary_json
from bkprov.results import PlayResult, host_results
from bkprov.runner import Collector

FINDING_OK = {"check": "systemd", "status": "ok", "summary": "systemd is PID 1", "evidence": "/proc/1/comm: systemd",
              "cause": "", "fix": ""}  # fmt: skip
FINDING_PROBLEM = {
    "check": "reach",
    "status": "problem",
    "summary": "there is no container gone (docker ps -a lists them)",
    "evidence": "Error response from daemon: No such container: gone",
    "cause": "doctor could not run its checks on this host",
    "fix": "fix what the summary names, then run doctor again",
}

# doctor.yml on a healthy container (trimmed to two findings).
DOCTOR_HEALTHY = {
    "playbook": "doctor.yml",
    "changed": {},
    "dark": {},
    "failures": {},
    "ignored": {},
    "ok": {"box": 6},
    "processed": {"box": 1},
    "rescued": {},
    "skipped": {"box": 1},
    "artifact_data": {
        "bkprov": {
            "box": {
                "playbook": "doctor",
                "phase": "done",
                "ok": True,
                "version": "",
                "installed_version": "",
                "build_output": "",
                "findings": [FINDING_OK],
                "error": "",
            }
        }
    },
}

# doctor.yml on a container that does not exist: published phase "read", then the play failed it.
DOCTOR_UNREAD = {
    "playbook": "doctor.yml",
    "changed": {},
    "dark": {},
    "failures": {"gone": 1},
    "ignored": {"gone": 1},
    "ok": {"gone": 4},
    "processed": {"gone": 1},
    "rescued": {},
    "skipped": {"gone": 1},
    "artifact_data": {
        "bkprov": {
            "gone": {
                "playbook": "doctor",
                "phase": "read",
                "ok": False,
                "version": "",
                "installed_version": "",
                "build_output": "",
                "findings": [FINDING_PROBLEM],
                "error": "there is no container gone (docker ps -a lists them)",
            }
        }
    },
}

# provision.yml that failed fetching runc, before it published anything.
PROVISION_UNPUBLISHED_FAILURE = {
    "playbook": "provision.yml",
    "changed": {},
    "dark": {},
    "failures": {"box": 1},
    "ignored": {},
    "ok": {"box": 3},
    "processed": {"box": 1},
    "rescued": {},
    "skipped": {},
    "artifact_data": {},
}
RUNC_ERROR = "Fetch and verify runc v1.0.2: could not download https://github.com/opencontainers/runc/…"

# verify.yml over SSH to a closed port.
VERIFY_UNREACHABLE = {
    "playbook": "verify.yml",
    "changed": {},
    "dark": {"127.0.0.1": 1},
    "failures": {},
    "ignored": {},
    "ok": {"127.0.0.1": 1},
    "processed": {"127.0.0.1": 1},
    "rescued": {},
    "skipped": {},
    "artifact_data": {},
}


def published(phase: str, ok: bool, **fields) -> dict:
    """The stats of a provision whose host published ``phase``/``ok`` (the roles' contract)."""
    entry = {
        "playbook": "provision",
        "phase": phase,
        "ok": ok,
        "version": "v0.10.6",
        "installed_version": "v0.10.6" if phase in ("verify", "done") else "",
        "build_output": "",
        "findings": [],
        "error": "",
        **fields,
    }
    return {
        "playbook": "provision.yml",
        "changed": {"box": 6},
        "dark": {},
        "failures": {} if ok else {"box": 1},
        "ok": {"box": 40},
        "processed": {"box": 1},
        "artifact_data": {"bkprov": {"box": entry}},
    }


def play(stats: dict, rc: int, errors: dict | None = None) -> PlayResult:
    result = PlayResult(stats["playbook"], rc=rc, status="successful" if rc == 0 else "failed")
    result.hosts = host_results(stats, errors)
    return result


def test_a_healthy_doctor_host_is_ok_with_its_findings():
    result = play(DOCTOR_HEALTHY, 0)
    box = result.hosts["box"]
    assert (box.status, box.phase, box.published) == ("ok", "done", True)
    assert box.findings == [FINDING_OK] and box.problems == []
    assert result.succeeded and result.exit_code() == 0
    assert result.findings == {"box": [FINDING_OK]}


def test_an_unread_doctor_host_is_failed_in_its_phase_with_the_published_error():
    result = play(DOCTOR_UNREAD, 2, {"gone": "Fail when the host could not be read: gone: there is no container"})
    gone = result.hosts["gone"]
    assert (gone.status, gone.phase) == ("failed", "read")
    assert gone.error == "there is no container gone (docker ps -a lists them)"  # published, not the task's text
    assert gone.problems == [FINDING_PROBLEM]
    assert not result.succeeded and result.exit_code() == 1


def test_a_host_that_failed_before_publishing_is_failed_in_an_unknown_phase_with_the_task_message():
    result = play(PROVISION_UNPUBLISHED_FAILURE, 2, {"box": RUNC_ERROR})
    box = result.hosts["box"]
    assert (box.status, box.phase, box.error, box.published) == ("failed", "unknown", RUNC_ERROR, False)
    assert result.exit_code() == 1


def test_a_dark_host_is_unreachable_and_the_play_could_not_run():
    result = play(VERIFY_UNREACHABLE, 4, {"127.0.0.1": "Read the installed BuildKit version: ssh: connect … refused"})
    host = result.hosts["127.0.0.1"]
    assert (host.status, host.phase) == ("unreachable", "unknown")
    assert "refused" in host.error
    assert result.exit_code() == 2


def test_no_stats_means_ansible_never_reached_a_host():
    result = PlayResult("provision.yml", rc=1, status="failed", output_tail=["ERROR! the playbook could not be found"])
    result.hosts = host_results({})
    assert not result.ran and not result.succeeded and result.exit_code() == 2


@pytest.mark.parametrize(
    ("phase", "ok", "expected"),
    [
        ("done", True, (OK, True, True)),
        ("verify", False, (BUILD_FAILED, True, False)),
        ("start", False, (INSTALL_FAILED, False, None)),
        ("install", False, (INSTALL_FAILED, False, None)),
        ("preflight", False, (INSTALL_FAILED, False, None)),
    ],
)
def test_matrix_rows_tell_an_install_failure_from_a_failed_build(phase, ok, expected):
    stats = published(
        phase, ok, error="" if ok else "it broke here\nsecond line", build_output="RUN line" if ok else ""
    )
    result = play(stats, 0 if ok else 2)
    summary = summary_json(result, {"version": "v0.10.6", "target": "container", "name": "box", "seconds": {}})
    row = Row("v0.10.6", "container")
    row.read(summary)
    assert (row.phase, row.provision_ok, row.build_ok) == expected
    assert row.reached == phase
    assert row.cause == ("" if ok else "it broke here")


def test_matrix_rows_name_an_unreachable_target():
    result = play(VERIFY_UNREACHABLE, 4, {"127.0.0.1": "ssh: connect to host 127.0.0.1 port 1: Connection refused"})
    row = Row("v0.10.6", "container")
    row.read(summary_json(result, {"seconds": {}}))
    assert (row.phase, row.provision_ok) == (UNREACHABLE, False)


def test_published_ok_but_a_later_task_failed_is_failed():
    stats = published("done", True)
    stats["failures"] = {"box": 1}
    result = play(stats, 2, {"box": "Some later task: boom"})
    assert result.hosts["box"].status == "failed" and result.hosts["box"].error == "Some later task: boom"


def test_json_has_one_object_per_host_and_overall_ok():
    stats = published("done", True, build_output="buildctl github.com/moby/buildkit v0.10.6 0c9b5aeb")
    data = summary_json(play(stats, 0), {"version": "v0.10.6"})
    assert data["ok"] is True and data["changed"] == 6
    assert data["build_output"] == "buildctl github.com/moby/buildkit v0.10.6 0c9b5aeb"
    assert data["hosts"]["box"] == {
        "host": "box",
        "status": "ok",
        "phase": "done",
        "changed": 6,
        "version": "v0.10.6",
        "installed_version": "v0.10.6",
        "build_output": "buildctl github.com/moby/buildkit v0.10.6 0c9b5aeb",
        "findings": [],
        "error": "",
    }


def test_collector_reads_the_stats_event_and_the_failed_task():
    collector = Collector("provision.yml", sink=None)
    events = [
        {"event": "playbook_on_task_start", "event_data": {"task": "Fetch and verify runc v1.0.2"}},
        {
            "event": "runner_on_failed",
            "event_data": {
                "host": "box",
                "task": "Check something optional",
                "ignore_errors": True,
                "res": {"msg": "x"},
            },
        },
        {
            "event": "runner_on_failed",
            "event_data": {"host": "box", "task": "Fetch and verify runc v1.0.2", "res": {"msg": "could not download"}},
        },
        {"event": "playbook_on_stats", "event_data": copy.deepcopy(PROVISION_UNPUBLISHED_FAILURE)},
    ]
    for event in events:
        assert collector(event) is False  # ansible-runner keeps no event files
    result = collector.finish(2, "failed", 1.5)
    assert result.hosts["box"].error == "Fetch and verify runc v1.0.2: could not download"
    assert result.exit_code() == 1


def test_an_unreachable_host_among_working_ones_fails_the_run_but_only_unreachable_hosts_mean_nothing_ran():
    stats = published("done", True)
    stats["dark"], stats["processed"]["gone"] = {"gone": 1}, 1
    result = play(stats, 4, {"gone": "ssh: connect to host gone port 22: No route to host"})
    assert (result.hosts["box"].status, result.hosts["gone"].status) == ("ok", "unreachable")
    assert result.exit_code() == 1
    del result.hosts["box"]
    assert result.exit_code() == 2


def test_doctors_problems_are_attached_to_the_host_they_were_found_on():
    result = play(published("preflight", False, error="cannot run BuildKit"), 2)
    unread = DOCTOR_UNREAD["artifact_data"]["bkprov"]["gone"]
    doctor = play({**DOCTOR_UNREAD, "failures": {"box": 1}, "artifact_data": {"bkprov": {"box": unread}}}, 2)
    result.attach_doctor(doctor)
    result.attach_doctor(doctor)  # twice: no duplicates
    assert result.hosts["box"].findings == [FINDING_PROBLEM]


def test_hosts_a_rollout_never_reached_keep_the_version_read_before_it():
    result = play(published("done", True), 0)
    before = PlayResult("installed.yml", rc=0, status="successful")
    read = {"playbook": "installed", "phase": "done", "ok": True, "installed_version": "v0.10.6"}
    before.hosts = host_results(
        {"ok": {"box": 1, "later": 1}, "artifact_data": {"bkprov": {"box": read, "later": read}}}
    )
    result.add_not_reached(before)
    assert list(result.hosts) == ["box", "later"]
    assert result.hosts["box"].installed_version == "v0.10.6" and result.hosts["box"].ok  # the play's own result
    later = result.hosts["later"]
    assert (later.status, later.installed_version) == ("not reached", "v0.10.6")
    assert not result.succeeded and result.exit_code() == 1


@pytest.mark.parametrize(
    ("fleet", "extra"),
    [
        (Fleet(), {}),
        (Fleet(serial="1"), {"bkprov_serial": 1, "bkprov_max_fail_percentage": 0}),
        (Fleet(serial="25%", max_fail=50), {"bkprov_serial": "25%", "bkprov_max_fail_percentage": 50}),
        (Fleet(max_fail=0), {"bkprov_max_fail_percentage": 0}),
    ],
)
def test_a_rollout_stops_at_the_first_failed_batch_unless_told_otherwise(fleet, extra):
    assert fleet.extravars() == extra
