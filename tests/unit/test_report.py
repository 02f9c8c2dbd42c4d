"""The per-host summary after a fleet's play: every host's outcome, whatever happened to the others."""

from __future__ import annotations

import json

from bkprov.report import report, summary_json
from bkprov.results import PlayResult, host_results

RUN_LINE = "buildctl github.com/moby/buildkit v0.12.5 bac3f2b673f3f9d33e79046008e7a38e856b3dc6"
NOT_PID1 = {
    "check": "systemd",
    "status": "problem",
    "summary": "systemd is not PID 1",
    "evidence": "/proc/1/comm: sleep",
    "cause": "bkprov installs systemd units; without systemd as PID 1 nothing starts buildkitd",
    "fix": "run the container with /lib/systemd/systemd as its command (bkprov's container target does), or use a VM",
}


def entry(phase: str, ok: bool, **fields) -> dict:
    return {
        "playbook": "provision",
        "phase": phase,
        "ok": ok,
        "version": "v0.12.5",
        "installed_version": "v0.12.5" if ok else "",
        "build_output": RUN_LINE if ok else "",
        "findings": [],
        "error": "" if ok else "it broke",
        **fields,
    }


def rollout() -> PlayResult:
    """A rolling upgrade that stopped at its second batch: one host upgraded, one failed, one not reached."""
    stats = {
        "changed": {"b1": 2, "b2": 1},
        "dark": {},
        "failures": {"b2": 1},
        "ok": {"b1": 9, "b2": 5},
        "processed": {"b1": 1, "b2": 1},
        "artifact_data": {
            "bkprov": {
                "b1": entry("done", True),
                "b2": entry("start", False, error="buildkitd v0.12.5 did not answer within 60s"),
            }
        },
    }
    result = PlayResult("provision.yml", rc=2, status="failed", hosts=host_results(stats))
    before = PlayResult("installed.yml", rc=0, status="successful")
    read = {"playbook": "installed", "phase": "done", "ok": True, "installed_version": "v0.10.6"}
    hosts = ("b1", "b2", "b3")
    before.hosts = host_results(
        {"ok": dict.fromkeys(hosts, 1), "artifact_data": {"bkprov": dict.fromkeys(hosts, read)}}
    )
    result.add_not_reached(before)
    doctor = PlayResult("doctor.yml", rc=2, status="failed")
    doctor.hosts = host_results(
        {
            "failures": {"b2": 1},
            "ok": {"b2": 4},
            "artifact_data": {
                "bkprov": {"b2": {"playbook": "doctor", "phase": "done", "ok": False, "findings": [NOT_PID1]}}
            },
        }
    )
    result.attach_doctor(doctor)
    return result


SUMMARY = {"version": "v0.12.5", "target": "inventory", "name": "/srv/fleet.yml", "seconds": {"total": 61.0}}


def test_the_summary_names_each_host_its_version_and_the_failed_hosts_cause(capsys):
    code = report(rollout(), SUMMARY, as_json=False)

    assert code == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "b1  ok  BuildKit v0.12.5  changed=2",
        f"  RUN output: {RUN_LINE}",
        "b2  failed in start  changed=1",
        "  buildkitd v0.12.5 did not answer within 60s",
        "  doctor: systemd is not PID 1",
        "    cause: bkprov installs systemd units; without systemd as PID 1 nothing starts buildkitd",
        "    evidence: /proc/1/comm: sleep",
        "    fix: run the container with /lib/systemd/systemd as its command (bkprov's container target does), "
        "or use a VM",
        "b3  not reached  still on v0.10.6  changed=0",
        "FAILED BuildKit v0.12.5 on inventory /srv/fleet.yml: 1 ok, 1 failed, 1 not reached; changed=3 (total 61.0s)",
    ]


def test_json_has_every_host_with_its_status_and_the_counts(capsys):
    code = report(rollout(), SUMMARY, as_json=True)

    data = json.loads(capsys.readouterr().out)
    assert code == 1 and data["ok"] is False
    assert data["counts"] == {"ok": 1, "failed": 1, "unreachable": 0, "not reached": 1}
    assert {h: r["status"] for h, r in data["hosts"].items()} == {"b1": "ok", "b2": "failed", "b3": "not reached"}
    assert data["hosts"]["b1"]["build_output"] == RUN_LINE
    assert data["hosts"]["b2"]["findings"] == [NOT_PID1]
    assert data["hosts"]["b3"] == {
        "host": "b3",
        "status": "not reached",
        "phase": "none",
        "changed": 0,
        "version": "",
        "installed_version": "v0.10.6",
        "build_output": "",
        "findings": [],
        "error": "",
    }


def test_a_multi_line_error_stays_aligned_under_its_host(capsys):
    stats = {"failures": {"box": 1}, "artifact_data": {"bkprov": {"box": entry("verify", False, error="one\ntwo")}}}
    result = PlayResult("verify.yml", rc=2, status="failed", hosts=host_results(stats))
    summary_json(result, SUMMARY)  # serialisable as it is
    report(result, {**SUMMARY, "seconds": {}}, as_json=False)
    assert capsys.readouterr().out.splitlines()[:3] == ["box  failed in verify  changed=0", "  one", "  two"]


def test_a_problem_the_error_already_names_is_not_repeated(capsys):
    refused = f"box cannot run BuildKit v0.12.5:\n- {NOT_PID1['summary']}\n  cause: {NOT_PID1['cause']}"
    stats = {"failures": {"box": 1}, "artifact_data": {"bkprov": {"box": entry("preflight", False, error=refused)}}}
    result = PlayResult("provision.yml", rc=2, status="failed", hosts=host_results(stats))
    result.hosts["box"].findings = [NOT_PID1]
    report(result, {**SUMMARY, "seconds": {}}, as_json=False)
    printed = capsys.readouterr().out
    assert printed.count("systemd is not PID 1") == 1 and "doctor:" not in printed
