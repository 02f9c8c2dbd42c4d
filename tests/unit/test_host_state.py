"""module_utils/host_state.py on real files: a snapshot taken after a converge, then what a later run sees.

systemctl is a stand-in script on PATH (the unit's properties are a file the test writes); the files,
links and drop-ins are real. The proof script runs for real with sh.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.bkprov.buildkit.plugins.module_utils import host_state as hs

from tests.support.fakes import systemctl_showing, tools_on_path


@pytest.fixture
def systemd(tmp_path, monkeypatch):
    """A systemctl whose `show` prints the file ``show`` (one unit)."""
    show = tmp_path / "show"
    tools_on_path(tmp_path / "fakebin", monkeypatch, {"systemctl": systemctl_showing(show)})
    return show


def unit_text(dropins: str = "", active: str = "active") -> str:
    return (
        "LoadState=loaded\nFragmentPath=/etc/systemd/system/buildkit.service\n"
        f"DropInPaths={dropins}\nUnitFileState=enabled\nActiveState={active}\nNeedDaemonReload=no\n"
    )


@pytest.fixture
def host(tmp_path, systemd):
    """A converged host: a binary, a link to it, a unit file, and a path that must stay absent."""
    binary = tmp_path / "lib" / "buildkitd"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\n")
    link = tmp_path / "buildkitd"
    link.symlink_to(binary)
    unit = tmp_path / "buildkit.service"
    unit.write_text("[Service]\nExecStart=/usr/local/bin/buildkitd\n")
    systemd.write_text(unit_text())
    paths = [str(binary), str(link), str(unit), str(tmp_path / "old.socket")]
    return {"snap": hs.snapshot(paths, ["buildkit.service"]), "binary": binary, "link": link, "unit": unit}


def test_an_untouched_host_has_no_differences(host):
    assert hs.differences(json.loads(json.dumps(host["snap"]))) == []  # as recorded: through JSON


def test_every_kind_of_change_is_named(host, tmp_path, systemd):
    host["unit"].write_text("[Service]\nExecStart=/usr/local/bin/buildkitd --debug\n")  # same size or not: ctime moves
    host["link"].unlink()
    host["link"].symlink_to(tmp_path / "elsewhere")
    (tmp_path / "old.socket").write_text("")
    host["binary"].unlink()
    dropin = tmp_path / "override.conf"
    dropin.write_text("[Service]\nExecStart=\n")
    systemd.write_text(unit_text(dropins=str(dropin), active="inactive"))
    found = hs.differences(host["snap"])
    assert f"{host['unit']} changed" in found
    assert f"{host['link']} changed" in found
    assert f"{tmp_path / 'old.socket'} exists (it was absent)" in found
    assert f"{host['binary']} is gone" in found
    assert f"{dropin} is new (a drop-in)" in found
    assert "buildkit.service ActiveState is 'inactive' (was 'active')" in found


def test_a_touch_that_keeps_content_is_still_a_change(host):
    os.utime(host["binary"])  # same bytes, but someone wrote it: the run must converge again
    assert hs.differences(host["snap"]) == [f"{host['binary']} changed"]


def test_prove_runs_the_script_only_on_an_unchanged_host(host, tmp_path):
    marker = tmp_path / "ran"
    script = f"touch {marker}; echo '#5 0.1 buildctl github.com/moby/buildkit v9 abc'"
    same = hs.prove([host["snap"]], script, 30)
    assert same["same"] is True and same["rc"] == 0 and "moby/buildkit v9 abc" in same["stdout"] and marker.exists()
    marker.unlink()
    host["unit"].write_text("changed")
    changed = hs.prove([host["snap"]], script, 30)
    assert changed == {"same": False, "differences": [f"{host['unit']} changed"]} and not marker.exists()


def test_main_as_the_driver_runs_it(host):
    """python3 -c SOURCE JSON, as `bkprov provision` sends it to a host."""
    source = Path(hs.__file__).read_text()
    params = {"snapshots": [host["snap"]], "script": "echo proof; exit 3", "timeout": 30}
    argv = [sys.executable, "-c", source, json.dumps(params)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    answer = json.loads(proc.stdout.splitlines()[-1])
    assert answer == {"same": True, "rc": 3, "stdout": "proof\n", "stderr": ""}
