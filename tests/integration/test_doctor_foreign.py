"""Doctor on BuildKit that bkprov did not install: containers set up by hand, the way a user does.

Each container here is made with the docker CLI from bkprov's base image (systemd as PID 1, cgroupns
host, /sys/fs/cgroup read-write, all capabilities this machine allows), never with bkprov's roles:
release binaries copied to /usr/local/bin, upstream's units in /usr/local/lib/systemd/system, a drop-in
in /etc/systemd/system/buildkit.service.d/, a --config file outside /etc/buildkit and a --root outside
/var/lib/buildkit. Doctor runs through `ansible-playbook playbooks/doctor.yml` with a docker-connection
inventory (root, no sudo in the image, no ansible_become), and through `bkprov doctor --container`
where the driver has it.

Parts that need no real binary use a fake buildkitd (a copy of python3 whose command line carries
buildkitd's flags: what doctor reads is /proc/PID/cmdline and systemd's view of the unit). Parts that
need a real BuildKit take it from the bkprov cache and skip, naming the missing files, without it.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from bkprov import artifacts
from bkprov.paths import cache_dir
from bkprov.targets.container import bounding_set_missing  # what --cap-add ALL must drop here
from tests.support.helpers import ansible_playbook, bkprov, require_real, sh
from tests.support.units import UPSTREAM_SERVICE

pytestmark = pytest.mark.docker

# runc v1.1.12 built without the seccomp build tag (`runc --version`: 1.1.12+noseccomp, no libseccomp line),
# as a test fixture in the cache or imported as runc release "v1.1.12+noseccomp".
NOSECCOMP_RUNC = (
    Path("test-fixtures/runc-noseccomp.amd64"),
    Path("opencontainers/runc/releases/download/v1.1.12+noseccomp/runc.amd64"),
)
CUSTOM_CONFIG = "/etc/buildkit-custom/buildkitd.toml"
CUSTOM_ROOT = "/srv/buildkit"
DROP_IN = "/etc/systemd/system/buildkit.service.d/50-local.conf"

UPSTREAM_SOCKET = """\
[Unit]
Description=BuildKit
Documentation=https://github.com/moby/buildkit

[Socket]
ListenStream=%t/buildkit/buildkitd.sock
SocketMode=0660

[Install]
WantedBy=sockets.target
"""
# docker_archive's way for releases before fd:// (v0.9.0's service, `--addr fd://` stripped with sed).
PLAIN_SERVICE = """\
[Unit]
Description=BuildKit
Documentation=https://github.com/moby/buildkit

[Service]
ExecStart=/usr/local/bin/buildkitd

[Install]
WantedBy=multi-user.target
"""


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr}")
    return done


def run_sh(name: str, command: str) -> str:
    done = sh(name, command)
    assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture
def stranger(base_image):
    """Start containers the way a user would with `docker run`; removed (with their volumes) afterwards."""
    made: list[str] = []

    def start(caps: str = "all", systemd: bool = True, volume: str | None = None) -> str:
        name = f"bkprov-stranger-{uuid.uuid4().hex[:8]}"
        made.append(name)
        options = ["--detach", "--name", name, "--network", "none", "--cgroupns", "host"]
        options += ["--tmpfs", "/run:rw,mode=755", "--tmpfs", "/run/lock", "--tmpfs", "/tmp:rw,exec,mode=1777"]
        options += ["-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--stop-signal", "SIGRTMIN+3"]
        if caps == "all":  # what --privileged gives, on a machine whose bounding set refuses --privileged
            options += ["--cap-add", "ALL", "--security-opt", "seccomp=unconfined"]
            options += ["--security-opt", "apparmor=unconfined"]
            for cap in bounding_set_missing():
                options += ["--cap-drop", cap]
        if volume:
            options += ["-v", f"{name}-root:{volume}"]
        docker("run", *options, base_image, *([] if systemd else ["sleep", "infinity"]))
        if systemd:
            deadline = time.monotonic() + 60
            state = ""
            while time.monotonic() < deadline:
                state = sh(name, "systemctl is-system-running").stdout.strip()
                if state in ("running", "degraded"):
                    break
                time.sleep(0.3)
            assert state in ("running", "degraded"), f"systemd in {name}: {state}"
        return name

    yield start
    for name in made:
        docker("rm", "--force", "--volumes", name, check=False)
        docker("volume", "rm", f"{name}-root", check=False)


def put(name: str, path: str, text: str) -> None:
    """Write a file into the container (docker exec; docker cp cannot write under the /run tmpfs)."""
    subprocess.run(
        ["docker", "exec", "-i", name, "sh", "-c", f"mkdir -p {shlex.quote(str(Path(path).parent))} && cat > {path}"],
        input=text,
        text=True,
        check=True,
    )


def install_release(name: str, version: str, tmp_path: Path) -> None:
    """The release's bin/ into /usr/local/bin, as upstream's README says."""
    (tarball,) = [cache_dir() / item.relpath for item in artifacts.needed(version, with_runc=False)]
    unpacked = tmp_path / f"release-{version}"
    with tarfile.open(tarball) as tar:
        tar.extractall(unpacked, filter="data")
    docker("cp", f"{unpacked}/bin/.", f"{name}:/usr/local/bin/")


def install_fake_buildkitd(name: str) -> None:
    """A 'buildkitd' whose /proc/PID/cmdline carries any flags: python3 under that name (-c keeps it alive)."""
    run_sh(name, "cp /usr/bin/python3.11 /usr/local/bin/buildkitd")


FAKE_ARGS = "-c \"__import__('time').sleep(3600)\""


def install_units(name: str, flags: str, socket: bool = True, exec_prefix: str = "") -> None:
    """Upstream's units in /usr/local/lib/systemd/system, and a drop-in changing ExecStart."""
    put(name, "/usr/local/lib/systemd/system/buildkit.service", UPSTREAM_SERVICE if socket else PLAIN_SERVICE)
    if socket:
        put(name, "/usr/local/lib/systemd/system/buildkit.socket", UPSTREAM_SOCKET)
    addr = "--addr fd:// " if socket else ""
    put(name, DROP_IN, f"[Service]\nExecStart=\nExecStart=/usr/local/bin/buildkitd {exec_prefix}{addr}{flags}\n")
    run_sh(name, "systemctl daemon-reload")


def start_units(name: str, socket: bool = True) -> None:
    run_sh(name, f"systemctl enable --now {'buildkit.socket' if socket else 'buildkit.service'}")


def doctor_play(tmp_path: Path, names: list[str], *extra: str, user: str | None = None) -> tuple[int, dict]:
    """ansible-playbook doctor.yml; (exit code, the per-host results it published with set_stats)."""
    inv = tmp_path / "inventory.yml"
    hosts = "".join(
        f"    {n}:\n      ansible_connection: community.docker.docker\n"
        f"      ansible_python_interpreter: /usr/bin/python3\n" + (f"      ansible_user: {user}\n" if user else "")
        for n in names
    )
    inv.write_text("all:\n  hosts:\n" + hosts)
    done = ansible_playbook(
        "doctor.yml",
        inv,
        *extra,
        env={"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_SHOW_CUSTOM_STATS": "1"},
    )
    try:
        stats = json.loads(done.stdout)["global_custom_stats"]["bkprov"]
    except (ValueError, KeyError) as exc:
        raise AssertionError(f"doctor.yml published no results ({exc}):\n{done.stdout[-3000:]}\n{done.stderr}") from exc
    return done.returncode, stats


def by_check(result: dict) -> dict[str, dict]:
    return {f["check"]: f for f in result["findings"]}


def problems(result: dict) -> dict[str, dict]:
    return {f["check"]: f for f in result["findings"] if f["status"] == "problem"}


def driver_has_container_option() -> bool:
    return "--container" in bkprov("doctor", "--help").stdout


def show(result: dict) -> str:
    """The findings as a person reads them, for assertion messages."""
    return "\n".join(
        f"{f['status']:8} {f['check']}: {f['summary']}\n         {f['evidence']}" for f in result["findings"]
    )


# --- no real binary needed ----------------------------------------------------------------------------------------


def test_drop_in_config_root_and_snapshotter_are_read_from_systemd(tmp_path, stranger):
    name = stranger()  # /srv/buildkit on the container's overlay root
    install_fake_buildkitd(name)
    put(name, CUSTOM_CONFIG, "# set by hand\n[worker.oci]\n  gc = true\n")
    install_units(
        name,
        f"--config {CUSTOM_CONFIG} --root {CUSTOM_ROOT} --oci-worker-snapshotter=overlayfs",
        exec_prefix=FAKE_ARGS + " ",
    )

    code, results = doctor_play(tmp_path, [name], "-e", "doctor_probe=false")
    result = results[name]
    found = by_check(result)
    assert code != 0 and result["ok"] is False and result["phase"] == "done", show(result)
    overlay = found["nested-overlayfs"]
    assert overlay["status"] == "problem"
    assert overlay["summary"] == f"{CUSTOM_ROOT} is on overlayfs and the snapshotter is forced to overlayfs"
    evidence = overlay["evidence"].splitlines()
    assert " - overlay " in evidence[0]
    assert (
        "snapshotter overlayfs: systemctl show buildkit.service: ExecStart … --oci-worker-snapshotter=overlayfs"
        f" ({DROP_IN}:3)" in evidence
    )
    assert (
        f"root {CUSTOM_ROOT}: systemctl show buildkit.service: ExecStart … --root {CUSTOM_ROOT} ({DROP_IN}:3)"
        in evidence
    )
    config = found["config"]["evidence"].splitlines()
    assert (
        f"config {CUSTOM_CONFIG}: systemctl show buildkit.service: ExecStart … --config {CUSTOM_CONFIG} ({DROP_IN}:3)"
        in config
    )
    buildkitd = found["buildkitd"]
    assert buildkitd["summary"] == "buildkitd (version unknown) not running (buildkit.service)"
    assert f"drop-ins: {DROP_IN}" in buildkitd["evidence"]
    # No runtime next to the fake: named, with the PATH searched.
    assert found["runtime"]["status"] == "problem"
    assert "PATH=/usr/local/sbin:/usr/local/bin" in found["runtime"]["evidence"]


def test_running_buildkitd_command_line_and_toml_lines_are_the_evidence(tmp_path, stranger):
    name = stranger()
    install_fake_buildkitd(name)
    toml = (
        '# by hand\ndebug = true\n\n[worker.oci]\n  snapshotter = "overlayfs"\n  binary = "/usr/local/sbin/my-runc"\n'
    )
    put(name, CUSTOM_CONFIG, toml)
    put(name, "/usr/local/sbin/my-runc", "#!/bin/sh\necho 'my-runc: broken' >&2\nexit 1\n")
    run_sh(name, "chmod 755 /usr/local/sbin/my-runc")
    # Started by hand, no unit: only /proc/PID/cmdline knows the flags.
    docker(
        "exec",
        "-d",
        name,
        "sh",
        "-c",
        f"exec /usr/local/bin/buildkitd {FAKE_ARGS} --config {CUSTOM_CONFIG} --root {CUSTOM_ROOT}",
    )
    pid = ""
    for _ in range(50):
        pid = sh(name, "pgrep -x buildkitd").stdout.strip()
        if pid:
            break
        time.sleep(0.1)
    assert pid

    code, results = doctor_play(tmp_path, [name], "-e", "doctor_probe=false")
    result = results[name]
    found = by_check(result)
    assert code != 0 and result["phase"] == "done", show(result)
    assert found["buildkitd"]["summary"] == f"buildkitd (version unknown) running as pid {pid} (buildkit.service)"
    assert found["buildkitd"]["evidence"].startswith("cmdline: /usr/local/bin/buildkitd -c ")
    overlay = found["nested-overlayfs"]
    assert overlay["status"] == "problem"
    assert f'snapshotter overlayfs: {CUSTOM_CONFIG}:5: snapshotter = "overlayfs"' in overlay["evidence"].splitlines()
    assert (
        f"root {CUSTOM_ROOT}: cmdline: --root {CUSTOM_ROOT} (/proc/{pid}/cmdline)" in overlay["evidence"].splitlines()
    )
    runtime = found["runtime"]
    assert (
        f'runtime /usr/local/sbin/my-runc: {CUSTOM_CONFIG}:6: binary = "/usr/local/sbin/my-runc"' in runtime["evidence"]
    )
    assert runtime["status"] == "warning" and runtime["summary"] == "the OCI runtime did not answer --version"


def test_a_missing_capability_is_named(tmp_path, stranger):
    name = stranger(caps="docker-default")
    code, results = doctor_play(tmp_path, [name])
    result = results[name]
    assert code != 0 and result["ok"] is False
    capabilities = by_check(result)["capabilities"]
    assert capabilities["status"] == "problem"
    assert "CAP_SYS_ADMIN" in capabilities["summary"]
    assert capabilities["evidence"].startswith("CapEff:")
    assert "--privileged" in capabilities["fix"]


def test_no_systemd_as_pid1_is_named(tmp_path, stranger):
    name = stranger(systemd=False)
    code, results = doctor_play(tmp_path, [name])
    systemd = by_check(results[name])["systemd"]
    assert code != 0
    assert (systemd["status"], systemd["evidence"]) == ("problem", "/proc/1/comm: sleep")


def test_hosts_doctor_cannot_read_get_one_clear_line_each(tmp_path, stranger):
    name = stranger()
    gone = f"bkprov-stranger-gone-{uuid.uuid4().hex[:6]}"
    code, as_root = doctor_play(tmp_path, [name, gone], "-e", "doctor_probe=false")
    # A root connection without sudo just works; the missing container is one line, not a Python trace.
    assert as_root[name]["phase"] == "done" and as_root[name]["error"] == ""
    assert as_root[gone]["phase"] == "read"
    assert as_root[gone]["error"] == f"there is no container {gone} (docker ps -a lists them)"
    assert [f["check"] for f in as_root[gone]["findings"]] == ["reach"]

    code, as_nobody = doctor_play(tmp_path, [name], "-e", "doctor_probe=false", user="nobody")
    result = as_nobody[name]
    assert code != 0 and result["ok"] is False and result["phase"] == "diagnose"
    assert result["error"] == (
        f"the connection is not root and {name} has no sudo: connect as root (ansible_user=root) or install sudo"
    )
    assert "deserialization" not in result["error"]
    assert by_check(result)["reach"]["summary"] == result["error"]
    assert by_check(result)["systemd"]["status"] == "ok"  # what nobody could read is still shown


def test_bkprov_doctor_container_exit_codes(tmp_path, stranger):
    if not driver_has_container_option():
        pytest.skip("`bkprov doctor --container` is not in this driver yet (the driver restructuring adds it)")
    healthy = stranger(volume=CUSTOM_ROOT)
    broken = stranger(caps="docker-default")
    assert bkprov("doctor", "--container", healthy, "--json").returncode == 0
    assert bkprov("doctor", "--container", broken, "--json").returncode == 1
    missing = bkprov("doctor", "--container", f"bkprov-stranger-gone-{uuid.uuid4().hex[:6]}")
    assert missing.returncode == 2, missing.stdout + missing.stderr


# --- real BuildKit binaries ---------------------------------------------------------------------------------------


@pytest.mark.real
def test_healthy_foreign_v0_10_6_passes_with_a_probe_build(tmp_path, stranger):
    require_real("v0.10.6", with_runc=False)
    name = stranger(volume=CUSTOM_ROOT)
    install_release(name, "v0.10.6", tmp_path)
    put(name, CUSTOM_CONFIG, "[worker.oci]\n  gc = true\n")
    install_units(name, f"--config {CUSTOM_CONFIG} --root {CUSTOM_ROOT}")
    start_units(name)

    code, results = doctor_play(tmp_path, [name])
    result = results[name]
    found = by_check(result)
    assert code == 0 and result["ok"] is True, show(result)
    assert result["installed_version"] == "v0.10.6"
    assert result["build_output"] == "bkprov doctor probe: RUN ok"
    assert found["probe"]["status"] == "ok"
    assert found["daemon"]["summary"] == "buildkitd answers on unix:///run/buildkit/buildkitd.sock"
    assert "org.mobyproject.buildkit.worker.snapshotter: overlayfs" in found["daemon"]["evidence"]
    assert found["runtime"]["evidence"].startswith("/usr/local/bin/buildkit-runc --version: runc version 1.0.2")
    assert found["nested-overlayfs"]["status"] == "ok"


@pytest.mark.real
def test_nested_overlayfs_forced_by_a_drop_in_fails_and_is_named(tmp_path, stranger):
    require_real("v0.10.6", with_runc=False)
    name = stranger()  # /srv/buildkit on the container's overlay root
    install_release(name, "v0.10.6", tmp_path)
    install_units(name, f"--config {CUSTOM_CONFIG} --root {CUSTOM_ROOT} --oci-worker-snapshotter=overlayfs")
    start_units(name)

    code, results = doctor_play(tmp_path, [name])
    result = results[name]
    found = problems(result)
    assert code != 0 and result["ok"] is False, show(result)
    assert result["build_output"] == ""
    probe = found["probe:nested-overlayfs"]
    assert "invalid argument" in probe["evidence"]
    assert "volume or tmpfs" in probe["fix"]
    assert f"ExecStart at {DROP_IN}:3)" in found["nested-overlayfs"]["evidence"]
    assert "probe" not in by_check(result) or by_check(result)["probe"]["status"] != "ok"


@pytest.mark.real
def test_runtime_without_seccomp_fails_and_is_named(tmp_path, stranger):
    require_real("v0.12.5", with_runc=False)
    found = [cache_dir() / path for path in NOSECCOMP_RUNC if (cache_dir() / path).is_file()]
    if not found:
        pytest.skip(f"no runc built without seccomp in {cache_dir()}: missing {' or '.join(map(str, NOSECCOMP_RUNC))}")
    runc = found[0]
    name = stranger(volume=CUSTOM_ROOT)
    install_release(name, "v0.12.5", tmp_path)
    docker("cp", str(runc), f"{name}:/usr/local/sbin/runc-noseccomp")
    run_sh(name, "chmod 755 /usr/local/sbin/runc-noseccomp")
    put(name, CUSTOM_CONFIG, '[worker.oci]\n  binary = "/usr/local/sbin/runc-noseccomp"\n')
    install_units(name, f"--config {CUSTOM_CONFIG} --root {CUSTOM_ROOT}")
    start_units(name)

    code, results = doctor_play(tmp_path, [name])
    result = results[name]
    found = problems(result)
    assert code != 0 and result["ok"] is False, show(result)
    probe = found["probe:runtime-no-seccomp"]
    assert "seccomp: config provided but seccomp not supported" in probe["evidence"]
    assert "buildkit-runc" in probe["fix"]
    runtime = by_check(result)["runtime"]
    assert f'{CUSTOM_CONFIG}:2: binary = "/usr/local/sbin/runc-noseccomp"' in runtime["evidence"]
    assert runtime["status"] == "warning" and "without seccomp" in runtime["summary"]


@pytest.mark.real
def test_healthy_foreign_v0_4_0_passes_with_a_probe_build(tmp_path, stranger):
    require_real("v0.4.0", with_runc=False)
    name = stranger(volume=CUSTOM_ROOT)
    install_release(name, "v0.4.0", tmp_path)
    put(name, CUSTOM_CONFIG, "[worker.oci]\n  enabled = true\n")
    install_units(name, f"--config {CUSTOM_CONFIG} --root {CUSTOM_ROOT}", socket=False)
    start_units(name, socket=False)

    code, results = doctor_play(tmp_path, [name])
    result = results[name]
    assert code == 0 and result["ok"] is True, show(result)
    assert result["installed_version"] == "v0.4.0"
    assert result["build_output"] == "bkprov doctor probe: RUN ok"
    assert "COPY helper image" in by_check(result)["probe"]["evidence"]


@pytest.mark.real
def test_v0_3_0_without_git_fails_at_start_and_is_named(tmp_path, stranger):
    require_real("v0.3.0", with_runc=False)
    name = stranger(volume=CUSTOM_ROOT)
    install_release(name, "v0.3.0", tmp_path)
    run_sh(name, "if [ -e /usr/bin/git ]; then mv /usr/bin/git /usr/bin/git.hidden; fi")  # a host without git
    install_units(name, f"--root {CUSTOM_ROOT}", socket=False)
    sh(name, "systemctl enable --now buildkit.service")  # starts, then exits at once

    code, results = doctor_play(tmp_path, [name])
    result = results[name]
    found = problems(result)
    assert code != 0 and result["ok"] is False, show(result)
    assert result["installed_version"] == "v0.3.0"
    assert found["requires:git"]["summary"] == "BuildKit v0.3.0 requires git, which is not in buildkitd's PATH"
    assert "apt-get install git" in found["requires:git"]["fix"]
    assert found["daemon"]["summary"] == "buildkit.service failed"
    assert "buildkitd: failed to find git binary" in found["daemon"]["evidence"]
    assert "buildkitd: failed to find git binary" in found["journal:git-missing"]["evidence"]


@pytest.mark.real
def test_runc_rc7_as_the_runtime_docker_archive_style(tmp_path, stranger):
    """v0.4.0 with upstream runc v1.0.0-rc7 as its runtime (buildkit-runc removed, rc7 as the system runc).

    The catalog knows rc7's keycreate defect (upstream's binary is built with the selinux tag); doctor
    names it, and the probe build says whether this rc7 really fails on this kernel."""
    require_real("v0.4.0", with_runc=True)  # v0.4.0's runc pairing is v1.0.0-rc7
    (runc,) = [cache_dir() / item.relpath for item in artifacts.needed("v0.4.0") if item.kind == "runc"]
    name = stranger(volume=CUSTOM_ROOT)
    install_release(name, "v0.4.0", tmp_path)
    docker("cp", str(runc), f"{name}:/usr/local/sbin/runc")
    run_sh(name, "chmod 755 /usr/local/sbin/runc && rm /usr/local/bin/buildkit-runc")
    install_units(name, f"--root {CUSTOM_ROOT}", socket=False)
    start_units(name, socket=False)

    code, results = doctor_play(tmp_path, [name])
    result = results[name]
    runtime = by_check(result)["runtime"]
    assert runtime["evidence"].startswith("/usr/local/sbin/runc --version: runc version 1.0.0-rc7")
    assert "keycreate" in runtime["summary"] and "keycreate" in runtime["cause"]
    probe = [f for f in result["findings"] if f["check"].startswith("probe")]
    if result["build_output"]:  # this rc7 was built without selinux: builds work, the catalog's warning stays
        assert code == 0 and runtime["status"] == "warning", show(result)
        assert runtime["summary"].endswith("; yet the probe build worked here")
    else:  # upstream's rc7 on a kernel without SELinux keyring labels
        assert code != 0 and [f["check"] for f in probe] == ["probe:keycreate"], show(result)


@pytest.mark.real
def test_missing_capability_with_a_real_buildkit(tmp_path, stranger):
    require_real("v0.10.6", with_runc=False)
    name = stranger(caps="docker-default", volume=CUSTOM_ROOT)
    install_release(name, "v0.10.6", tmp_path)
    install_units(name, f"--root {CUSTOM_ROOT}")
    sh(name, "systemctl enable --now buildkit.socket")

    code, results = doctor_play(tmp_path, [name])
    result = results[name]
    assert code != 0 and result["ok"] is False, show(result)
    assert "CAP_SYS_ADMIN" in problems(result)["capabilities"]["summary"]
    assert by_check(result).get("probe", {}).get("status") != "ok"
