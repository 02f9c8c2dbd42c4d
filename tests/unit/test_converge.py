"""The converge core (module_utils/converge.py) on real files (its stdin protocol: test_piped.py).

systemctl and journalctl are stand-in scripts on PATH where a unit's state matters; everything
else (tarballs, links, modes, diffs) is real.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
from ansible_collections.bkprov.buildkit.plugins.action.converge import selected_steps
from ansible_collections.bkprov.buildkit.plugins.module_utils import converge as cv

from tests.support.fakes import script_tarball, systemctl_showing, tools_on_path


def tarball(path: Path, names=("buildctl", "buildkitd", "buildkit-runc"), tag="v1") -> str:
    return script_tarball(path, names, tag, mode=0o700)  # 0700 as some release tarballs ship them


@pytest.fixture
def layout(tmp_path):
    root = tmp_path / "lib"
    return {
        "root": str(root),
        "bin_dir": str(tmp_path / "bin"),
        "keep": str(tmp_path / "cache" / "release.tar.gz"),
        "required": ["buildctl", "buildkitd", "buildkit-runc"],
        "expected": ["buildctl", "buildkitd", "buildkit-runc", "buildkit-qemu-arm"],
    }


def release_spec(layout, version, digest):
    return dict(layout, dest=os.path.join(layout["root"], version), sha256=digest)


def test_release_needs_the_artifact_then_installs_and_is_idempotent(tmp_path, layout):
    source = tmp_path / "v1.tar.gz"
    digest = tarball(source)
    spec = release_spec(layout, "v1", digest)

    first = cv.converge({"release": spec})
    assert first["needs_artifact"] is True and first["changed"] is False
    assert not os.path.exists(spec["dest"])  # nothing changed before the artifact came

    second = cv.converge({"release": spec}, str(source))
    assert second["changed"] is True and second["install"]["unpacked"] is True
    assert second["install"]["missing"] == ["buildkit-qemu-arm"]
    for name in layout["required"]:
        link = Path(layout["bin_dir"], name)
        assert os.readlink(link) == os.path.join(spec["dest"], "bin", name)
        assert stat.S_IMODE(os.stat(link).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(spec["dest"]).st_mode) == 0o755
    assert Path(layout["keep"]).read_bytes() == source.read_bytes()  # kept for a reinstall without transfer

    third = cv.converge({"release": spec})
    assert third["changed"] is False and third["needs_artifact"] is False


def test_release_reinstalls_from_the_kept_tarball_and_removes_other_versions_links(tmp_path, layout):
    v1 = tmp_path / "v1.tar.gz"
    cv.converge({"release": release_spec(layout, "v1", tarball(v1, tag="v1"))}, str(v1))
    v2 = tmp_path / "v2.tar.gz"
    digest2 = tarball(v2, names=("buildctl", "buildkitd", "buildkit-runc", "buildkit-qemu-arm"), tag="v2")
    spec2 = release_spec(layout, "v2", digest2)
    cv.converge({"release": spec2}, str(v2))
    assert os.readlink(Path(layout["bin_dir"], "buildkit-qemu-arm")).startswith(spec2["dest"])

    spec1 = release_spec(layout, "v1", tarball(tmp_path / "again.tar.gz", tag="v1"))
    back = cv.converge({"release": spec1}, str(tmp_path / "again.tar.gz"))
    assert back["install"]["removed"] == [os.path.join(layout["bin_dir"], "buildkit-qemu-arm")]
    assert not os.path.lexists(Path(layout["bin_dir"], "buildkit-qemu-arm"))

    # The kept tarball is v1's now: removing the install and converging again needs no artifact.
    import shutil

    shutil.rmtree(spec1["dest"])
    again = cv.converge({"release": spec1})
    assert again["needs_artifact"] is False and again["install"]["unpacked"] is True


def test_release_refuses_a_tarball_without_the_binaries_and_a_foreign_file_in_bin(tmp_path, layout):
    bad = tmp_path / "bad.tar.gz"
    out = cv.converge({"release": release_spec(layout, "v1", tarball(bad, names=("buildctl",)))}, str(bad))
    assert out["failed"] is True and out["phase"] == "install"
    assert "lacks bin/buildkitd, bin/buildkit-runc" in out["msg"]

    Path(layout["bin_dir"]).mkdir(parents=True)
    Path(layout["bin_dir"], "buildctl").write_text("someone else's\n")
    good = tmp_path / "good.tar.gz"
    out = cv.converge({"release": release_spec(layout, "v1", tarball(good))}, str(good))
    assert out["failed"] is True and "is not a bkprov link" in out["msg"]


def test_check_mode_reports_without_changing(tmp_path, layout):
    source = tmp_path / "v1.tar.gz"
    spec = release_spec(layout, "v1", tarball(source))
    files = [{"path": str(tmp_path / "etc" / "a.toml"), "content": "debug = true\n"}]
    out = cv.converge({"check_mode": True, "release": spec, "files": files, "group": ""})
    assert out["changed"] is True and out["needs_artifact"] is False
    assert out["files"]["changed_paths"] == [files[0]["path"]]
    assert not os.path.exists(spec["dest"]) and not os.path.exists(files[0]["path"])
    assert {
        "before_header": files[0]["path"],
        "after_header": files[0]["path"],
        "before": "",
        "after": "debug = true\n",
    } in out["diff"]


def test_files_modes_secrets_and_absent(tmp_path):
    key, conf, stale = tmp_path / "tls" / "key.pem", tmp_path / "buildkitd.toml", tmp_path / "old.socket"
    stale.write_text("x")
    secret = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"
    params = {
        "files": [
            {"path": str(key), "content": secret, "mode": "0600", "secret": True},
            {"path": str(conf), "content": "debug = false\n"},
        ],
        "absent": [str(stale)],
    }
    out = cv.converge(params)
    assert key.read_text() == secret and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644
    assert not stale.exists()
    assert secret not in json.dumps(out)  # never in a diff or result
    assert out["files"]["changed_paths"] == [str(key), str(conf), str(stale)]
    assert cv.converge(params)["changed"] is False

    os.chmod(key, 0o644)  # a mode drift alone is a change
    assert cv.converge(params)["files"]["changed_paths"] == [str(key)]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_binary_install_checks_its_version(tmp_path):
    source = tmp_path / "runc.amd64"
    source.write_text("#!/bin/sh\necho 'runc version 1.0.2'\n")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    spec = {"path": str(tmp_path / "sbin" / "runc"), "sha256": digest, "version": "1.0.2"}
    assert cv.converge({"binary": spec})["needs_artifact"] is True
    out = cv.converge({"binary": spec}, str(source))
    assert out["changed"] is True and stat.S_IMODE(os.stat(spec["path"]).st_mode) == 0o755
    assert cv.converge({"binary": spec})["changed"] is False

    wrong = dict(spec, version="1.1.0")
    os.unlink(spec["path"])
    out = cv.converge({"binary": wrong}, str(source))
    assert (
        out["failed"] is True and "--version does not name 1.1.0" in out["msg"] and "runc version 1.0.2" in out["msg"]
    )


@pytest.fixture
def fake_systemd(tmp_path, monkeypatch):
    """systemctl/journalctl stand-ins: the service's `systemctl show` answer is a file the test writes."""
    state = tmp_path / "state"
    bin_dir = tools_on_path(
        tmp_path / "fakebin",
        monkeypatch,
        {
            "systemctl": systemctl_showing(state),
            "journalctl": "echo 'Nov 28 08:33:24 host buildkitd[194]: buildkitd: failed to find git binary'\n",
            "buildctl": "echo 'connection refused' >&2\nexit 1\n",
        },
    )
    return state, str(bin_dir / "buildctl")


def service(wait_timeout=60):
    return {
        "service": "buildkit.service",
        "socket": "",
        "wait": {"argv": ["buildctl", "debug", "workers"], "timeout": wait_timeout, "what": "buildkitd v9"},
    }


@pytest.mark.parametrize(
    ("show", "why"),
    [
        (
            "ActiveState=failed\nSubState=failed\nResult=exit-code\nNRestarts=0\nExecMainStatus=1\n",
            "buildkit.service failed (result exit-code, exit status 1)",
        ),
        (
            "ActiveState=activating\nSubState=auto-restart\nResult=exit-code\nNRestarts=3\n",
            "buildkit.service is in a restart loop (3 restarts, result exit-code)",
        ),
    ],
)
def test_wait_ends_at_once_on_a_failed_unit_with_the_journal(fake_systemd, show, why):
    state, _buildctl = fake_systemd
    state.write_text(show)
    with pytest.raises(cv.Failure) as failure:
        cv.wait(service(wait_timeout=3600), since=0)  # a long timeout: only the unit's state can end this wait
    assert failure.value.phase == "start"
    message = str(failure.value)
    assert message.startswith(f"buildkitd v9 did not start: {why}")
    assert "buildkitd[194]: buildkitd: failed to find git binary" in message
    assert "connection refused" in message


def test_wait_times_out_naming_the_state(fake_systemd):
    state, _buildctl = fake_systemd
    state.write_text("ActiveState=activating\nSubState=start\nResult=success\nNRestarts=0\n")
    with pytest.raises(cv.Failure) as failure:
        cv.wait(service(wait_timeout=0), since=0)
    assert "did not answer within 0 s (buildkit.service is activating/start)" in str(failure.value)


@pytest.mark.parametrize(
    ("run", "skip", "expected"),
    [
        (["all"], [], {"install": True, "configure": True, "run": True, "restart": True}),
        (["buildkit"], [], {"install": True, "configure": True, "run": True, "restart": True}),
        (["buildkit_configure"], [], {"install": False, "configure": True, "run": False, "restart": True}),
        (["all"], ["buildkit_run"], {"install": True, "configure": True, "run": False, "restart": False}),
        (["install", "buildkit_run"], [], {"install": True, "configure": False, "run": True, "restart": True}),
    ],
)
def test_steps_follow_the_tags(run, skip, expected):
    step_tags = {
        "install": ["buildkit_install", "install"],
        "configure": ["buildkit_configure", "configure"],
        "run": ["buildkit_run"],
    }
    task_tags = ["buildkit", "buildkit_install", "install", "buildkit_configure", "configure", "buildkit_run"]
    assert selected_steps(step_tags, task_tags, run, skip) == expected
