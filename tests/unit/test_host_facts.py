"""host_facts' helpers (module_utils/host_facts.py: what it reads and runs on a host) and doctor's unread-host filter.

They run here against this machine's real files and processes; nothing is mocked.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys

import pytest
from ansible_collections.bkprov.buildkit.plugins.filter.doctor import doctor_unread_reason
from ansible_collections.bkprov.buildkit.plugins.module_utils import host_facts
from ansible_collections.bkprov.buildkit.plugins.module_utils.diagnosis import PROBE_RUN_MARK


def test_the_probe_dockerfile_runs_and_copies_onto_the_run_layer():
    lines = host_facts.PROBE_DOCKERFILE.splitlines()
    assert lines[0] == "FROM scratch"
    assert [line.split()[0] for line in lines] == ["FROM", "COPY", "RUN", "COPY"]
    assert lines[3] == "COPY Dockerfile /bkprov/run/Dockerfile"  # /bkprov/run is made by the RUN step
    # buildctl echoes the RUN line: the mark must only appear once the shell has run.
    assert PROBE_RUN_MARK not in host_facts.PROBE_DOCKERFILE


def test_the_probe_run_step_prints_the_mark_when_a_shell_runs_it(tmp_path):
    busybox = host_facts.find_busybox("")
    if not busybox:
        pytest.skip("no static busybox on this machine (Debian: busybox-static)")
    run = host_facts.PROBE_DOCKERFILE.splitlines()[2]
    argv = json.loads(run.removeprefix("RUN "))
    (tmp_path / "bkprov").mkdir()
    shutil.copy(busybox, tmp_path / "bkprov" / "busybox")
    argv[0] = str(tmp_path / "bkprov" / "busybox")
    argv[-1] = argv[-1].replace("/bkprov/", f"{tmp_path}/bkprov/")
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert done.stdout == PROBE_RUN_MARK + "\n"
    assert (tmp_path / "bkprov" / "run").is_dir()


def test_static_elf_tells_a_static_busybox_from_a_dynamic_binary():
    assert not host_facts.static_elf(sys.executable)
    assert not host_facts.static_elf(__file__)
    assert not host_facts.static_elf("/nonexistent")
    if (
        os.path.exists("/bin/busybox")
        and "statically"
        in subprocess.run(["file", "-L", "/bin/busybox"], capture_output=True, text=True, check=False).stdout
    ):
        assert host_facts.static_elf("/bin/busybox")


@pytest.mark.parametrize(
    ("output", "version"),
    [
        ("buildkitd github.com/moby/buildkit v0.10.6 0c9b5aeb269c740650786ba77d882b0259415ec7\n", "v0.10.6"),
        ("buildkitd github.com/moby/buildkit v0.21.0-rc2 52b004d2\n", "v0.21.0-rc2"),
        ("Python 3.11.2\n", ""),
        ("buildkitd github.com/moby/buildkit 0.0.0+unknown\n", ""),
        ("", ""),
    ],
)
def test_version_word(output, version):
    assert host_facts.version_word(output) == version


def test_inotify_usage_counts_this_process_instance():
    before = host_facts.inotify_usage(os.geteuid())
    fd = _inotify_init()
    try:
        after = host_facts.inotify_usage(os.geteuid())
    finally:
        os.close(fd)
    assert after["instances"] == before["instances"] + 1
    assert after["max_user_instances"] > 0 and after["processes"] > 0


def _inotify_init() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init()
    if fd < 0:
        pytest.skip("inotify_init failed here")
    return fd


def test_buildkitd_pids_finds_a_process_by_its_name(tmp_path):
    fake = tmp_path / "buildkitd"
    shutil.copy("/bin/sleep", fake)
    process = subprocess.Popen([str(fake), "30"])
    try:
        assert process.pid in host_facts.buildkitd_pids()
        assert host_facts.cmdline(process.pid) == [str(fake), "30"]
    finally:
        process.kill()
        process.wait()


def test_unit_states_reads_both_units_from_one_systemctl_show(tmp_path, monkeypatch):
    """What systemd 252 prints for `systemctl show -pUnitFileState -pActiveState` of the two units."""
    (tmp_path / "systemctl").write_text(
        "#!/bin/sh\n"
        "printf 'ActiveState=active\\nUnitFileState=enabled\\n\\nActiveState=inactive\\nUnitFileState=\\n'\n"
    )
    (tmp_path / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert host_facts.unit_states() == {
        "buildkit.socket": {"enabled": True, "active": True},
        "buildkit.service": {"enabled": False, "active": False},
    }


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (
            {
                "msg": "Module result deserialization failed: No start of json char found",
                "module_stderr": "/bin/sh: 1: sudo: not found\n",
            },
            "the connection is not root and h1 has no sudo: connect as root (ansible_user=root) or install sudo",
        ),
        (
            {
                "msg": "Module result deserialization failed",
                "module_stderr": "Error response from daemon: No such container: h1\n",
            },
            "there is no container h1 (docker ps -a lists them)",
        ),
        (
            {"module_stderr": "Error response from daemon: Container 3f1c is not running\n"},
            "container h1 is not running: docker start h1",
        ),
        (
            {
                "module_stderr": "/bin/sh: 1: /usr/bin/python3: not found\n",
                "msg": "The module failed to execute correctly",
            },
            "no usable Python on h1 (Ansible modules need python3): install python3 or set ansible_python_interpreter",
        ),
        ({"unreachable": True, "msg": "ssh: connect to host h1 port 22: Connection refused"}, None),
        ({"msg": "something new"}, "doctor could not read h1: something new"),
    ],
)
def test_doctor_unread_reason_is_one_line_to_act_on(result, reason):
    said = doctor_unread_reason(result, "h1")
    assert "\n" not in said and "deserialization" not in said
    if reason:
        assert said == reason
    else:
        assert said == "cannot reach h1: ssh: connect to host h1 port 22: Connection refused"
