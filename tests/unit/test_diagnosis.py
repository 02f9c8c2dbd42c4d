"""Host diagnosis (collection/plugins/module_utils/diagnosis.py) on recorded evidence.

The evidence below is what the ``host_facts`` module reads on a host: /proc/1/comm, /proc/1/status,
/proc/1/attr/current, /proc/self/mountinfo, ``<runtime> --version`` and the buildkit journal. Each scenario
is a privileged Docker container running systemd (bkprov's container target), changed as its name says.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

DIAGNOSIS_FILE = Path(__file__).resolve().parents[2] / "collection" / "plugins" / "module_utils" / "diagnosis.py"


def _load_diagnosis():
    spec = importlib.util.spec_from_file_location("bkprov_unit_diagnosis", DIAGNOSIS_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses looks the module up while building Finding
    spec.loader.exec_module(module)
    return module


diagnosis = _load_diagnosis()
OK, WARNING, PROBLEM = diagnosis.OK, diagnosis.WARNING, diagnosis.PROBLEM

# --- /proc/self/mountinfo, in pieces -------------------------------------------------------------------------------

# The container's root: Docker's overlay2 storage driver.
OVERLAY_ROOT = (
    "1157 1008 0:215 / / rw,relatime master:512 - overlay overlay rw,"
    "lowerdir=/var/lib/docker/overlay2/l/6Y5ZQ3KQJ2XK7LMTWV4NZKQ2FA:/var/lib/docker/overlay2/l/UZ4QH6R3D2SJ5VY7N3OQ6WLKXB,"
    "upperdir=/var/lib/docker/overlay2/3f1c9d2e7b5a48c0a1e6f0b9d8c7e6a5/diff,"
    "workdir=/var/lib/docker/overlay2/3f1c9d2e7b5a48c0a1e6f0b9d8c7e6a5/work"
)
CONTAINER_MOUNTS = """\
1158 1157 0:218 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1159 1157 0:219 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755,inode64
1160 1159 0:220 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620,ptmxmode=666
1161 1157 0:221 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
1163 1159 0:217 / /dev/mqueue rw,nosuid,nodev,noexec,relatime - mqueue mqueue rw
1164 1159 0:222 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k,inode64
1166 1157 253:1 /var/lib/docker/containers/3f1c9d2e/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda1 rw
1167 1157 253:1 /var/lib/docker/containers/3f1c9d2e/hostname /etc/hostname rw,relatime - ext4 /dev/vda1 rw
1176 1157 0:225 / /run rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,size=65536k,inode64
"""
# A named volume on the BuildKit root (`-v bk:/var/lib/buildkit`).
BUILDKIT_VOLUME = (
    "1165 1157 253:1 /var/lib/docker/volumes/bk/_data /var/lib/buildkit rw,relatime master:1"
    " - ext4 /dev/mapper/vg0-root rw,errors=remount-ro"
)
# Unified hierarchy, private cgroup namespace (Docker's default on a v2 host).
CGROUP_V2_LINE = (
    "1162 1161 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime"
    " - cgroup2 cgroup rw,nsdelegate,memory_recursiveprot"
)
CGROUP_V2 = CGROUP_V2_LINE + "\n"
# Legacy hierarchy: a tmpfs with one cgroup (v1) mount per controller.
CGROUP_V1_SYSTEMD_LINE = (
    "1171 1170 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime master:11"
    " - cgroup cgroup rw,xattr,name=systemd"
)
CGROUP_V1 = f"""\
1170 1161 0:223 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755,inode64
{CGROUP_V1_SYSTEMD_LINE}
1172 1170 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime master:15 - cgroup cgroup rw,cpu,cpuacct
1173 1170 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime master:16 - cgroup cgroup rw,memory
1174 1170 0:29 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime master:17 - cgroup cgroup rw,pids
1175 1170 0:31 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime master:18 - cgroup cgroup rw,devices
"""
# Hybrid (Ubuntu 20.04's default): v1 controllers plus the unified hierarchy on /sys/fs/cgroup/unified.
CGROUP_UNIFIED_LINE = (
    "1177 1170 0:26 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime master:10 - cgroup2 cgroup2 rw,nsdelegate"
)
CGROUP_HYBRID = CGROUP_V1 + CGROUP_UNIFIED_LINE + "\n"


def mountinfo(cgroups: str = CGROUP_V2, volume: bool = True) -> str:
    return OVERLAY_ROOT + "\n" + CONTAINER_MOUNTS + cgroups + (BUILDKIT_VOLUME + "\n" if volume else "")


# --- /proc/1/status -----------------------------------------------------------------------------------------------

STATUS = """\
Name:\tsystemd
Umask:\t0000
State:\tS (sleeping)
Tgid:\t1
Ngid:\t0
Pid:\t1
PPid:\t0
Uid:\t0\t0\t0\t0
Gid:\t0\t0\t0\t0
CapInh:\t0000000000000000
CapPrm:\t{cap}
CapEff:\t{cap}
CapBnd:\t{cap}
CapAmb:\t0000000000000000
NoNewPrivs:\t0
Seccomp:\t{seccomp}
Seccomp_filters:\t{filters}
Speculation_Store_Bypass:\tthread vulnerable
"""
CAP_FULL = "000001ffffffffff"  # --privileged
CAP_DOCKER_DEFAULT = "00000000a80425fb"  # Docker's default set: no CAP_SYS_ADMIN, no CAP_NET_ADMIN
CAP_NO_SYS_RESOURCE = "000001fffeffffff"  # everything but CAP_SYS_RESOURCE (24)


def proc1_status(cap: str = CAP_FULL, seccomp: int = 0) -> str:
    return STATUS.format(cap=cap, seccomp=seccomp, filters=int(seccomp == 2))


# --- runtimes and the journal -------------------------------------------------------------------------------------

RUNC_RC7 = "runc version 1.0.0-rc7\nspec: 1.0.1-dev\n"
RUNC_102 = "runc version 1.0.2\ncommit: v1.0.2-0-g52b36a2d\nspec: 1.0.2-dev\ngo: go1.19.8\nlibseccomp: 2.5.4\n"

# One journal line per JOURNAL_SIGNS entry, as `journalctl -u buildkit.service` shows it.
J = "Mar 04 10:12:31 bk1 buildkitd[734]: "
SIGN_LINES = {
    "keycreate": J + "runc run failed: container_linux.go:337: starting container process caused"
    r' "process_linux.go:403: container init caused \"write /proc/self/attr/keycreate: invalid argument\""',
    "nested-overlayfs": J + 'time="2024-03-04T10:12:31Z" level=error msg="failed to solve: mount source: "overlay",'
    ' target: "/var/lib/buildkit/tmp/buildkit-mount123", fstype: overlay, flags: 0, data: "lowerdir=...",'
    ' err: invalid argument"',
    "cgroupns-cgroup-v1": J + "runc run failed: unable to start container process: error during container init: error"
    ' mounting "cgroup" to rootfs at "/sys/fs/cgroup": mount cgroup:/sys/fs/cgroup/openrc (via /proc/self/fd/7),'
    " flags: 0xf, data: openrc: invalid argument",
    "old-runc-cgroup-v2": J + "runc did not terminate sucessfully: container_linux.go:345: starting container"
    ' process caused "process_linux.go:297: applying cgroup configuration for process caused'
    r' \"mountpoint for cgroup not found\""',
    "masked-path-tmpfs": J + "runc run failed: unable to start container process: error during container init: can't"
    ' mask dir "/proc/acpi": mount src=tmpfs, dst=/proc/acpi, flags=MS_RDONLY, data=nr_blocks=1,nr_inodes=1:'
    " invalid argument",
    "runtime-no-seccomp": J + 'level=error msg="/moby.buildkit.v1.Control/Solve returned error: rpc error: code ='
    " Unknown desc = runc run failed: unable to start container process: unable to init seccomp: seccomp: config"
    ' provided but seccomp not supported"',
    "copy-helper-image": J + 'level=error msg="/moby.buildkit.v1.Control/Solve returned error: rpc error: code ='
    " Unknown desc = failed to load cache key: failed to do request: Head"
    ' https://registry-1.docker.io/v2/docker/dockerfile-copy/manifests/v0.1.9: dial tcp: lookup registry-1.docker.io"',
    "git-missing": 'Oct 12 09:14:02 bk1 buildkitd[311]: buildkitd: failed to find git binary: exec: "git": executable'
    " file not found in $PATH",
}
# BuildKit's own log format (logrus quotes the message and escapes its quotes) for the same causes.
LOGRUS_LINES = {
    "cgroupns-cgroup-v1": 'Oct 02 08:41:17 bk1 buildkitd[912]: time="2023-10-02T08:41:17Z" level=error'
    r' msg="/moby.buildkit.v1.Control/Solve returned error: rpc error: code = Unknown desc = process \"/bin/sh -c'
    r" apk add git\" did not complete successfully: error mounting \"cgroup\" to rootfs at \"/sys/fs/cgroup\": mount"
    r' cgroup:/sys/fs/cgroup/openrc (via /proc/self/fd/6), flags: 0xf, data: openrc: invalid argument"',
    "masked-path-tmpfs": 'Jul 09 14:02:55 bk1 buildkitd[812]: time="2025-07-09T14:02:55Z" level=error'
    " msg=\"/moby.buildkit.v1.Control/Solve returned error: rpc error: code = Unknown desc = runc run failed: can't"
    r" mask dir \"/proc/acpi\": mount src=tmpfs, dst=/proc/acpi, flags=MS_RDONLY, data=nr_blocks=1,nr_inodes=1:"
    r' invalid argument"',
}
UNRELATED_JOURNAL = "\n".join(
    [
        "Mar 04 10:11:58 bk1 systemd[1]: Started BuildKit.",
        J + 'time="2024-03-04T10:11:58Z" level=info msg="auto snapshotter: using overlayfs"',
        J + 'time="2024-03-04T10:11:58Z" level=warning msg="using host network as the default"',
        J + r'time="2024-03-04T10:11:58Z" level=info msg="found worker \"k3x1\", labels=map[]"',
        J + 'time="2024-03-04T10:11:58Z" level=info msg="running server on /run/buildkit/buildkitd.sock"',
        J + 'time="2024-03-04T10:12:40Z" level=error msg="/moby.buildkit.v1.Control/Solve returned error: rpc error:'
        ' code = Unknown desc = failed to read dockerfile: open Dockerfile: no such file or directory"',
        J + 'time="2024-03-04T10:13:02Z" level=error msg="/moby.buildkit.v1.Control/Solve returned error: rpc error:'
        ' code = Unknown desc = failed to parse platform linux/amd64/v9: invalid argument"',
        "",
    ]
)


def host(**changes) -> dict:
    """A healthy host's evidence: systemd in a privileged, unconfined container, a volume on the BuildKit root,
    cgroup v2, snapshotter auto, a quiet journal. ``changes`` replace keys (None deletes one)."""
    evidence = {
        "pid1": "systemd",
        "proc1_status": proc1_status(),
        "apparmor": "unconfined",
        "mountinfo": mountinfo(),
        "buildkit_root": "/var/lib/buildkit",
        "snapshotter": "auto",
        "journal": "",
    }
    evidence.update(changes)
    return {key: value for key, value in evidence.items() if value is not None}


# The runc release (catalog key) the runtime of a scenario reports, where the catalog knows defects of it.
RUNTIME_RELEASES = {"runc-rc7": "v1.0.0-rc7", "plain-docker-run": "v1.0.0-rc7", "healthy-v0.12.5-runc-1.0.2": "v1.0.2"}

# Every scenario the tests diagnose: name -> (evidence, installed version or None).
SCENARIOS: dict[str, tuple[dict, str | None]] = {
    "healthy": (host(), None),
    "healthy-v0.12.5-runc-1.0.2": (host(runtime_version=RUNC_102), "v0.12.5"),
    "not-systemd": (host(pid1="sleep"), None),
    "pid1-unreadable": (host(pid1=""), None),
    "docker-default-caps": (host(proc1_status=proc1_status(CAP_DOCKER_DEFAULT, seccomp=2)), None),
    "no-sys-resource": (host(proc1_status=proc1_status(CAP_NO_SYS_RESOURCE)), None),
    "status-unreadable": (host(proc1_status=""), None),
    "apparmor-docker-default": (host(apparmor="docker-default (enforce)"), None),
    "apparmor-unreadable": (host(apparmor=""), None),
    "seccomp-filter": (host(proc1_status=proc1_status(seccomp=2)), None),
    "volume-overlayfs": (host(snapshotter="overlayfs"), None),
    "overlay-root-overlayfs": (host(mountinfo=mountinfo(volume=False), snapshotter="overlayfs"), None),
    "overlay-root-auto": (host(mountinfo=mountinfo(volume=False)), None),
    "overlay-root-no-snapshotter": (host(mountinfo=mountinfo(volume=False), snapshotter=None), None),
    "v0.4.0-on-v2": (host(), "v0.4.0"),
    "v0.4.0-on-v1": (host(mountinfo=mountinfo(CGROUP_V1)), "v0.4.0"),
    "v0.4.0-on-hybrid": (host(mountinfo=mountinfo(CGROUP_HYBRID)), "v0.4.0"),
    "v0.10.6-on-v2": (host(), "v0.10.6"),
    "v0.10.6-on-v1": (host(mountinfo=mountinfo(CGROUP_V1)), "v0.10.6"),
    "v0.12.0-on-v1": (host(mountinfo=mountinfo(CGROUP_V1)), "v0.12.0"),
    "v0.12.0-on-hybrid": (host(mountinfo=mountinfo(CGROUP_HYBRID)), "v0.12.0"),
    "v0.12.0-on-v2": (host(), "v0.12.0"),
    "runc-rc7": (host(runtime_version=RUNC_RC7), None),
    "runc-1.0.2": (host(runtime_version=RUNC_102), None),
    "runtime-silent": (host(runtime_version=""), None),
    "journal-unrelated": (host(journal=UNRELATED_JOURNAL), None),
    **{f"journal-{check}": (host(journal=UNRELATED_JOURNAL + line + "\n"), None) for check, line in SIGN_LINES.items()},
    # `docker run` without bkprov's options, everything at once.
    "plain-docker-run": (
        host(
            pid1="bash",
            proc1_status=proc1_status(CAP_DOCKER_DEFAULT, seccomp=2),
            apparmor="docker-default (enforce)",
            mountinfo=mountinfo(volume=False),
            snapshotter="overlayfs",
            runtime_version=RUNC_RC7,
            journal="\n".join(SIGN_LINES.values()),
        ),
        "v0.4.0",
    ),
}


@pytest.fixture
def diagnosed(release_of):
    """Diagnose a scenario by name, with the catalog's entries of its version and its runc as the releases."""

    def run(name: str) -> list:
        evidence, version = SCENARIOS[name]
        runc = RUNTIME_RELEASES.get(name)
        return diagnosis.diagnose(
            evidence, release_of(version) if version else None, release_of(f"runc:{runc}") if runc else None
        )

    return run


def only(findings: list, check: str):
    """The one finding of ``check``."""
    (finding,) = [f for f in findings if f.check == check]
    return finding


def statuses(findings: list) -> dict[str, str]:
    return {f.check: f.status for f in findings}


# --- the mount table ----------------------------------------------------------------------------------------------


def test_mounts_reads_point_type_and_line_of_every_mount():
    table = diagnosis.mounts(mountinfo(CGROUP_HYBRID))
    assert table[0] == ("/", "overlay", OVERLAY_ROOT)
    assert ("/var/lib/buildkit", "ext4", BUILDKIT_VOLUME) in table
    assert ("/sys/fs/cgroup/unified", "cgroup2", CGROUP_UNIFIED_LINE) in table
    assert len(table) == len(mountinfo(CGROUP_HYBRID).splitlines())


def test_mounts_unescapes_a_space_in_the_mount_point():
    line = "1180 1157 253:1 /srv/build\\040cache /var/lib/build\\040kit rw,relatime - ext4 /dev/sdb1 rw"
    assert diagnosis.mounts(line) == [("/var/lib/build kit", "ext4", line)]


def test_mounts_skips_lines_that_are_not_mounts():
    assert diagnosis.mounts("\ngarbage\n1 2 0:1 / - \n") == []


@pytest.mark.parametrize(
    ("path", "point", "fstype"),
    [
        ("/var/lib/buildkit", "/var/lib/buildkit", "ext4"),
        ("/var/lib/buildkit/runc-overlayfs/snapshots", "/var/lib/buildkit", "ext4"),
        ("/var/lib/buildkit2", "/", "overlay"),  # a sibling sharing the prefix is not inside the volume
        ("/var/lib", "/", "overlay"),
        ("/run/buildkit", "/run", "tmpfs"),
        ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory", "cgroup"),
    ],
)
def test_mount_of_picks_the_longest_mount_point(path, point, fstype):
    assert diagnosis.mount_of(path, diagnosis.mounts(mountinfo(CGROUP_V1)))[:2] == (point, fstype)


def test_mount_of_prefers_the_last_of_two_mounts_on_the_same_point():
    tmpfs = "1190 1165 0:230 / /var/lib/buildkit rw,relatime - tmpfs tmpfs rw,inode64"
    table = diagnosis.mounts(mountinfo() + tmpfs + "\n")
    assert diagnosis.mount_of("/var/lib/buildkit", table) == ("/var/lib/buildkit", "tmpfs", tmpfs)


def test_mount_of_an_empty_table_is_empty():
    assert diagnosis.mount_of("/var/lib/buildkit", []) == ("", "", "")


@pytest.mark.parametrize(
    ("cgroups", "layout", "line"),
    [
        (CGROUP_V2, "v2", CGROUP_V2_LINE),
        (CGROUP_V1, "v1", CGROUP_V1_SYSTEMD_LINE),
        (CGROUP_HYBRID, "hybrid", CGROUP_UNIFIED_LINE),
        ("", "unknown", ""),
    ],
)
def test_cgroup_layout(cgroups, layout, line):
    assert diagnosis.cgroup_layout(diagnosis.mounts(mountinfo(cgroups))) == (layout, line)


# --- every check's outcome ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "check", "status"),
    [
        ("healthy", "systemd", OK),
        ("not-systemd", "systemd", PROBLEM),
        ("pid1-unreadable", "systemd", PROBLEM),
        ("healthy", "capabilities", OK),
        ("docker-default-caps", "capabilities", PROBLEM),
        ("no-sys-resource", "capabilities", OK),
        ("status-unreadable", "capabilities", WARNING),
        ("healthy", "apparmor", OK),
        ("apparmor-unreadable", "apparmor", OK),
        ("apparmor-docker-default", "apparmor", PROBLEM),
        ("healthy", "seccomp", OK),
        ("status-unreadable", "seccomp", OK),
        ("seccomp-filter", "seccomp", WARNING),
        ("healthy", "nested-overlayfs", OK),
        ("volume-overlayfs", "nested-overlayfs", OK),
        ("overlay-root-overlayfs", "nested-overlayfs", PROBLEM),
        ("overlay-root-auto", "nested-overlayfs", WARNING),
        ("overlay-root-no-snapshotter", "nested-overlayfs", WARNING),
        ("healthy", "cgroups", OK),
        ("v0.4.0-on-v2", "cgroups", PROBLEM),
        ("v0.4.0-on-v1", "cgroups", OK),
        ("v0.4.0-on-hybrid", "cgroups", OK),
        ("v0.10.6-on-v2", "cgroups", OK),
        ("v0.10.6-on-v1", "cgroups", OK),
        ("v0.12.0-on-v1", "cgroups", WARNING),
        ("v0.12.0-on-hybrid", "cgroups", WARNING),
        ("v0.12.0-on-v2", "cgroups", OK),
        ("runc-rc7", "runtime", PROBLEM),
        ("runc-1.0.2", "runtime", OK),
        ("runtime-silent", "runtime", WARNING),
    ],
)
def test_check_status(diagnosed, scenario, check, status):
    assert only(diagnosed(scenario), check).status == status


def test_a_healthy_host_has_only_ok_findings(diagnosed):
    findings = diagnosed("healthy-v0.12.5-runc-1.0.2")
    assert statuses(findings) == {
        "systemd": OK,
        "capabilities": OK,
        "apparmor": OK,
        "seccomp": OK,
        "nested-overlayfs": OK,
        "cgroups": OK,
        "runtime": OK,
    }
    assert [f.check for f in findings] == list(statuses(findings))  # one finding per check


def test_plain_docker_run_is_a_problem_in_every_check_but_seccomp(diagnosed):
    assert statuses(diagnosed("plain-docker-run")) == {
        "systemd": PROBLEM,
        "capabilities": PROBLEM,
        "apparmor": PROBLEM,
        "seccomp": WARNING,
        "nested-overlayfs": PROBLEM,
        "cgroups": PROBLEM,
        "runtime": PROBLEM,
        **{f"journal:{check}": PROBLEM for check in SIGN_LINES},
    }


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_findings_serialize_to_plain_dicts(diagnosed, scenario):
    for finding in diagnosed(scenario):
        assert set(finding.as_dict()) == {"check", "status", "summary", "evidence", "cause", "fix"}
        assert finding.status in (OK, WARNING, PROBLEM)
        assert finding.summary


# --- what each finding says ---------------------------------------------------------------------------------------


def test_systemd_not_pid1_names_pid1(diagnosed):
    finding = only(diagnosed("not-systemd"), "systemd")
    assert finding.evidence == "/proc/1/comm: sleep"
    assert "systemd" in finding.fix


def test_systemd_unreadable_pid1_says_so(diagnosed):
    assert only(diagnosed("pid1-unreadable"), "systemd").evidence == "/proc/1/comm: unreadable"


def test_docker_default_capabilities_name_what_is_missing(diagnosed):
    finding = only(diagnosed("docker-default-caps"), "capabilities")
    assert finding.summary == "missing CAP_NET_ADMIN, CAP_SYS_ADMIN"
    assert finding.evidence == f"CapEff:\t{CAP_DOCKER_DEFAULT}"


@pytest.mark.parametrize("scenario", ["healthy", "no-sys-resource"])
def test_capabilities_evidence_is_the_capeff_line(diagnosed, scenario):
    finding = only(diagnosed(scenario), "capabilities")
    assert finding.evidence.startswith("CapEff:\t")
    assert "missing" not in finding.summary


def test_apparmor_profile_is_named(diagnosed):
    finding = only(diagnosed("apparmor-docker-default"), "apparmor")
    assert finding.evidence == "/proc/1/attr/current: docker-default (enforce)"
    assert "docker-default (enforce)" in finding.summary
    assert "apparmor=unconfined" in finding.fix


def test_seccomp_evidence_is_the_seccomp_line_not_seccomp_filters(diagnosed):
    assert only(diagnosed("seccomp-filter"), "seccomp").evidence == "Seccomp:\t2"
    assert only(diagnosed("healthy"), "seccomp").evidence == "Seccomp:\t0"


@pytest.mark.parametrize("scenario", ["overlay-root-overlayfs", "overlay-root-auto"])
def test_nested_overlay_evidence_is_the_overlay_root_mount(diagnosed, scenario):
    finding = only(diagnosed(scenario), "nested-overlayfs")
    assert finding.evidence == OVERLAY_ROOT
    assert "/var/lib/buildkit" in finding.fix


def test_nested_overlay_ok_evidence_is_the_volume(diagnosed):
    finding = only(diagnosed("volume-overlayfs"), "nested-overlayfs")
    assert finding.evidence == BUILDKIT_VOLUME
    assert finding.summary == "/var/lib/buildkit is on ext4 (/var/lib/buildkit)"


def test_nested_overlay_follows_a_configured_root():
    tmpfs = "1191 1157 0:231 / /srv/buildkit rw,relatime - tmpfs tmpfs rw,inode64"
    on_tmpfs = host(mountinfo=mountinfo(volume=False) + tmpfs + "\n", buildkit_root="/srv/buildkit")
    on_overlay = host(mountinfo=mountinfo(), buildkit_root="/srv/buildkit", snapshotter="overlayfs")
    assert only(diagnosis.diagnose(on_tmpfs), "nested-overlayfs").evidence == tmpfs
    assert only(diagnosis.diagnose(on_overlay), "nested-overlayfs").status == PROBLEM


@pytest.mark.parametrize(
    ("scenario", "line"),
    [
        ("v0.4.0-on-v2", CGROUP_V2_LINE),
        ("v0.12.0-on-v1", CGROUP_V1_SYSTEMD_LINE),
        ("v0.12.0-on-hybrid", CGROUP_UNIFIED_LINE),
        ("v0.12.0-on-v2", CGROUP_V2_LINE),
    ],
)
def test_cgroups_evidence_is_the_cgroup_mount(diagnosed, scenario, line):
    assert only(diagnosed(scenario), "cgroups").evidence == line


@pytest.mark.parametrize(
    ("scenario", "summary"),
    [
        ("v0.4.0-on-v2", "cgroup v2 host; BuildKit v0.4.0 bundles a runc without working cgroup v2"),
        ("v0.12.0-on-v1", "cgroup v1 host and BuildKit v0.12.0 puts every RUN in a cgroup namespace"),
        ("v0.12.0-on-hybrid", "cgroup hybrid host and BuildKit v0.12.0 puts every RUN in a cgroup namespace"),
        ("v0.10.6-on-v2", "cgroup v2"),
        ("v0.10.6-on-v1", "cgroup v1"),
    ],
)
def test_cgroups_summary_names_layout_and_version(diagnosed, scenario, summary):
    # host_facts reads the layout back as the summary's second word
    finding = only(diagnosed(scenario), "cgroups")
    assert finding.summary == summary
    assert finding.summary.split()[1] in ("v1", "v2", "hybrid")


def test_runtime_evidence_is_the_version_line(diagnosed):
    assert only(diagnosed("runc-rc7"), "runtime").evidence == "runc version 1.0.0-rc7"
    assert only(diagnosed("runc-1.0.2"), "runtime").evidence == "runc version 1.0.2"


def test_no_runtime_version_no_runtime_finding(diagnosed):
    assert "runtime_version" not in SCENARIOS["healthy"][0]
    assert "runtime" not in statuses(diagnosed("healthy"))


@pytest.mark.parametrize("runc", ["v1.0.0-rc8", "v1.0.0-rc6"])
def test_runtime_defects_come_from_the_runc_catalog_entry(release_of, runc):
    evidence = host(runtime_version=f"runc version {runc[1:]}\nspec: 1.0.1-dev")
    assert only(diagnosis.diagnose(evidence, None, release_of(f"runc:{runc}")), "runtime").status == OK


def test_runtime_rc7_texts_are_the_catalogs(release_of):
    rc7 = release_of("runc:v1.0.0-rc7")
    finding = only(diagnosis.diagnose(host(runtime_version=RUNC_RC7), None, rc7), "runtime")
    (detail,) = rc7["defect_details"]
    assert (finding.cause, finding.fix) == (detail["summary"], detail["fix"])
    assert finding.summary == "builds run on runc 1.0.0-rc7 (catalog defect keycreate)"


# --- the journal --------------------------------------------------------------------------------------------------


def test_sign_lines_cover_every_journal_sign():
    assert set(SIGN_LINES) == {check for check, *_ in diagnosis.SIGNS}


@pytest.mark.parametrize("check", list(SIGN_LINES))
def test_journal_sign_is_a_problem_with_its_line(diagnosed, check):
    journal = [f for f in diagnosed(f"journal-{check}") if f.check.startswith("journal:")]
    assert [(f.check, f.status) for f in journal] == [(f"journal:{check}", PROBLEM)]
    assert journal[0].evidence == SIGN_LINES[check].strip()


@pytest.mark.parametrize("check", list(SIGN_LINES))
def test_journal_sign_repeated_is_one_finding_with_the_first_line(check):
    first = SIGN_LINES[check]
    later = first.replace("10:12:31", "10:20:07")
    findings = diagnosis.diagnose(host(journal="\n".join([first, UNRELATED_JOURNAL, later, later])))
    (finding,) = [f for f in findings if f.check == f"journal:{check}"]
    assert finding.evidence == first.strip()


@pytest.mark.parametrize("check", list(LOGRUS_LINES))
def test_journal_sign_in_buildkit_log_format(check):
    findings = diagnosis.diagnose(host(journal=LOGRUS_LINES[check]))
    assert [f.check for f in findings if f.check.startswith("journal:")] == [f"journal:{check}"]


def test_the_auto_probe_line_is_not_a_problem():
    # auto's probe logs this and falls back to native: harmless (check_overlay warns about it instead).
    line = (
        'Mar 04 10:11:58 bk1 buildkitd[734]: time="2024-03-04T10:11:58Z" level=debug msg="auto snapshotter:'
        " overlayfs is not available for /var/lib/buildkit, trying fuse-overlayfs: failed to mount overlay:"
        ' invalid argument"'
    )
    assert not [f for f in diagnosis.diagnose(host(journal=line)) if f.check.startswith("journal:")]


def test_journal_evidence_keeps_the_end_of_a_long_line():
    line = J + 'time="2024-03-04T10:12:31Z" level=error msg="' + "x" * 400 + ' mountpoint for cgroup not found"'
    evidence = only(diagnosis.diagnose(host(journal=line)), "journal:old-runc-cgroup-v2").evidence
    assert len(evidence) == 300
    assert line.endswith(evidence)


@pytest.mark.parametrize("scenario", ["healthy", "journal-unrelated"])
def test_unrelated_journal_has_no_journal_findings(diagnosed, scenario):
    assert not [f for f in diagnosed(scenario) if f.check.startswith("journal:")]


def test_all_journal_signs_at_once(diagnosed):
    checks = [f.check for f in diagnosed("plain-docker-run") if f.check.startswith("journal:")]
    assert checks == [f"journal:{check}" for check, *_ in diagnosis.SIGNS]


# --- every non-ok finding explains itself -------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_problem_and_warning_has_cause_and_fix(diagnosed, scenario):
    for finding in diagnosed(scenario):
        if finding.status != OK:
            assert finding.cause, finding
            assert finding.fix, finding


# --- defects found and fixed ---


@pytest.mark.parametrize("label", ["system_u:system_r:init_t:s0", "system_u:system_r:spc_t:s0"])
def test_selinux_label_is_not_an_apparmor_profile(label):
    assert only(diagnosis.diagnose(host(apparmor=label)), "apparmor").status == OK


def test_native_snapshotter_on_overlay_root_is_ok():
    evidence = host(mountinfo=mountinfo(volume=False), snapshotter="native")
    assert only(diagnosis.diagnose(evidence), "nested-overlayfs").status == OK


def test_journal_nested_overlay_mount_error_in_buildkit_log_format():
    line = (
        'Mar 04 10:14:02 bk1 buildkitd[734]: time="2024-03-04T10:14:02Z" level=error'
        r' msg="/moby.buildkit.v1.Control/Solve returned error: rpc error: code = Unknown desc = failed to mount'
        r" /tmp/containerd-mount2716424151: mount source: \"overlay\", target: \"/tmp/containerd-mount2716424151\","
        r" fstype: overlay, flags: 0, data: \"index=off,workdir=/var/lib/buildkit/w,upperdir=/var/lib/buildkit/u,"
        r'lowerdir=/var/lib/buildkit/l\", err: invalid argument"'
    )
    assert only(diagnosis.diagnose(host(journal=line)), "journal:nested-overlayfs").status == PROBLEM


# --- what doctor reads from the running system (host_facts discover) ---------------------------------------------

RECORDINGS = Path(__file__).resolve().parent / "doctor_recordings"
DROP_IN = "/etc/systemd/system/buildkit.service.d/50-local.conf"


def recorded(name: str) -> str:
    return (RECORDINGS / name).read_text()


def setting(value, source: str) -> dict:
    return {"value": value, "source": source}


def from_drop_in(token: str) -> str:
    return f"cmdline: {token} (/proc/144/cmdline; ExecStart at {DROP_IN}:3)"


def effective(**changes) -> dict:
    """buildkitd_config.effective() as host_facts returns it for v0.10.6 under upstream's units and a drop-in."""
    eff = {
        "toml_error": "",
        "config": setting("/etc/buildkit/buildkitd.toml", "default (no --config flag)"),
        "config_exists": False,
        "root": setting("/var/lib/buildkit", "default (no --root flag)"),
        "addr": setting(["fd://"], from_drop_in("--addr fd://")),
        "snapshotter": setting("auto", "default (no --oci-worker-snapshotter flag)"),
        "runtime": setting("", "default (no --oci-worker-binary flag)"),
        "runtime_path": "/usr/local/bin/buildkit-runc",
    }
    eff.update(changes)
    return eff


ARGV = ["/usr/local/bin/buildkitd", "--addr", "fd://"]


def daemon(**changes) -> dict:
    """A socket-activated v0.10.6 that answers (host_facts' daemon evidence)."""
    info = {
        "unit": "buildkit.service",
        "unit_props": {"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "Result": "success"},
        "pid": 144,
        "argv": ARGV,
        "unit_argv": ARGV,
        "origin": ["cmdline", "/proc/144/cmdline"],
        "exe": "/usr/local/bin/buildkitd",
        "path": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "exec_start": [DROP_IN, 3, "ExecStart=" + " ".join(ARGV)],
        "version": "buildkitd github.com/moby/buildkit v0.10.6 0c9b5aeb269c740650786ba77d882b0259415ec7\n",
        "addr": "unix:///run/buildkit/buildkitd.sock",
        "addr_source": "fd:// (socket unit ListenStream /run/buildkit/buildkitd.sock)",
        "buildctl": "/usr/local/bin/buildctl",
        "workers_rc": 0,
        "workers": recorded("workers-v0.10.6-native.txt").replace("native", "overlayfs"),
    }
    info.update(changes)
    return info


PROBE_COMMAND = "/usr/local/bin/buildctl --addr unix:///run/buildkit/buildkitd.sock build --no-cache …"


def probe(output: str, rc=1, ran: bool = True) -> dict:
    return {"ran": ran, "skipped": "", "rc": rc, "output": output, "command": PROBE_COMMAND}


def discovered(**changes) -> dict:
    """A healthy foreign v0.10.6 as doctor reads it: volume on the root, runc 1.0.2, answering, probe ok."""
    evidence = host(
        runtime_version=RUNC_102,
        effective=effective(),
        daemon=daemon(),
        probe=probe(recorded("probe-ok-v0.10.6.txt"), rc=0),
    )
    evidence.update(changes)
    return {key: value for key, value in evidence.items() if value is not None}


def test_a_healthy_foreign_install_is_all_ok(release_of):
    findings = diagnosis.diagnose(discovered(), release_of("v0.10.6"), release_of("runc:v1.0.2"))
    assert {f.check: f.status for f in findings if f.status != OK} == {}
    assert only(findings, "probe").evidence.splitlines()[-1] == "#5 0.151 bkprov doctor probe: RUN ok"
    assert only(findings, "buildkitd").summary == "buildkitd v0.10.6 running as pid 144 (buildkit.service)"
    assert only(findings, "daemon").evidence.splitlines()[1:] == [
        "org.mobyproject.buildkit.worker.executor: oci",
        "org.mobyproject.buildkit.worker.network: host",
        "org.mobyproject.buildkit.worker.snapshotter: overlayfs",
    ]


# Recorded probe failures: the finding each gives (check, words its evidence carries).
PROBE_CAUSES = {
    "probe-nested-overlayfs-v0.10.6.txt": ("probe:nested-overlayfs", "did not complete successfully: invalid argument"),
    "probe-runtime-no-seccomp-v0.12.5.txt": (
        "probe:runtime-no-seccomp",
        "runc run failed: unable to start container process: seccomp: config provided but seccomp not supported",
    ),
    "probe-keycreate-v0.4.0-composed.txt": ("probe:keycreate", "write /proc/self/attr/keycreate: invalid argument"),
    "probe-cgroupns-cgroup-v1-v0.12.0-composed.txt": (
        "probe:cgroupns-cgroup-v1",
        'error mounting "cgroup" to rootfs at "/sys/fs/cgroup"',
    ),
    "probe-old-runc-cgroup-v2-v0.4.0-composed.txt": ("probe:old-runc-cgroup-v2", "mountpoint for cgroup not found"),
}


def nested_overlay_host() -> dict:
    """Root on the container's overlay root, overlayfs forced by a drop-in (what the real test sets up)."""
    return discovered(
        mountinfo=mountinfo(volume=False),
        snapshotter="overlayfs",
        buildkit_root="/srv/buildkit",
        effective=effective(
            snapshotter=setting("overlayfs", from_drop_in("--oci-worker-snapshotter=overlayfs")),
            root=setting("/srv/buildkit", from_drop_in("--root /srv/buildkit")),
        ),
        probe=probe(recorded("probe-nested-overlayfs-v0.10.6.txt")),
    )


@pytest.mark.parametrize("recording", list(PROBE_CAUSES))
def test_a_failed_probe_is_sorted_into_its_cause(recording):
    check, words = PROBE_CAUSES[recording]
    evidence = nested_overlay_host() if "nested" in recording else discovered(probe=probe(recorded(recording)))
    findings = diagnosis.diagnose(evidence)
    probes = [f for f in findings if f.check.startswith("probe")]
    assert [(f.check, f.status) for f in probes] == [(check, PROBLEM)]
    assert words in probes[0].evidence
    assert probes[0].cause and probes[0].fix


def test_nested_overlayfs_probe_names_the_root_mount_and_the_snapshotter():
    finding = only(diagnosis.diagnose(nested_overlay_host()), "probe:nested-overlayfs")
    assert finding.evidence.splitlines()[1:] == [OVERLAY_ROOT, "snapshotter in use: overlayfs"]
    assert finding.fix == "put a volume or tmpfs on /srv/buildkit (/ is overlay), or use the native snapshotter"


def test_nested_overlayfs_config_names_the_drop_in():
    finding = only(diagnosis.diagnose(nested_overlay_host()), "nested-overlayfs")
    assert finding.status == PROBLEM
    assert finding.evidence.splitlines() == [
        OVERLAY_ROOT,
        "snapshotter overlayfs: " + from_drop_in("--oci-worker-snapshotter=overlayfs"),
        "root /srv/buildkit: " + from_drop_in("--root /srv/buildkit"),
        "buildctl debug workers -v: org.mobyproject.buildkit.worker.snapshotter: overlayfs",
    ]


def test_the_bare_invalid_argument_is_not_nested_overlayfs_on_a_volume():
    # Same error text, but the root is on a volume: not a cause doctor knows, so never "ok" and never guessed.
    evidence = discovered(probe=probe(recorded("probe-nested-overlayfs-v0.10.6.txt")))
    (finding,) = [f for f in diagnosis.diagnose(evidence) if f.check.startswith("probe")]
    assert (finding.check, finding.status) == ("probe", PROBLEM)
    assert finding.summary == "the probe build failed (exit 1) with an error bkprov does not know"


def test_an_unknown_probe_failure_shows_the_raw_error_and_the_other_problems():
    evidence = discovered(
        probe=probe(recorded("probe-unknown-composed.txt")), proc1_status=proc1_status(CAP_DOCKER_DEFAULT)
    )
    finding = only(diagnosis.diagnose(evidence), "probe")
    assert finding.status == PROBLEM
    assert finding.evidence.startswith(PROBE_COMMAND)
    assert finding.evidence.endswith("did not complete successfully: no space left on device")
    assert "the problems found (capabilities) may explain it" in finding.cause


def test_a_probe_that_exits_0_without_its_run_line_is_not_ok():
    output = recorded("probe-ok-v0.10.6.txt").replace("bkprov doctor probe: RUN ok", "something else")
    assert only(diagnosis.diagnose(discovered(probe=probe(output, rc=0))), "probe").status == PROBLEM


def test_the_command_line_echo_is_not_the_run_line():
    # buildctl echoes the RUN command; the mark appears only in what RUN printed.
    output = recorded("probe-nested-overlayfs-v0.10.6.txt")
    assert "RUN $s" in output and diagnosis.PROBE_RUN_MARK not in output


def test_a_probe_not_run_is_a_warning_with_the_reason():
    skipped = {"ran": False, "skipped": "buildkitd does not answer (see the daemon finding)", "command": ""}
    finding = only(diagnosis.diagnose(discovered(probe=skipped)), "probe")
    assert (finding.status, finding.summary) == (
        WARNING,
        "probe build not run: buildkitd does not answer (see the daemon finding)",
    )


def test_a_working_probe_outweighs_a_predicted_runtime_defect(release_of):
    # A hand-built rc7 without the selinux tag: the catalog's keycreate defect does not hit it.
    rc7 = release_of("runc:v1.0.0-rc7")
    evidence = discovered(runtime_version=RUNC_RC7)
    finding = only(diagnosis.diagnose(evidence, release_of("v0.4.0"), rc7), "runtime")
    assert finding.status == WARNING
    assert finding.summary == "builds run on runc 1.0.0-rc7 (catalog defect keycreate); yet the probe build worked here"
    failed = discovered(runtime_version=RUNC_RC7, probe=probe(recorded("probe-keycreate-v0.4.0-composed.txt")))
    assert only(diagnosis.diagnose(failed, release_of("v0.4.0"), rc7), "runtime").status == PROBLEM


def test_the_catalogs_keycreate_texts_name_the_probe_failure(release_of):
    rc7 = release_of("runc:v1.0.0-rc7")
    evidence = discovered(runtime_version=RUNC_RC7, probe=probe(recorded("probe-keycreate-v0.4.0-composed.txt")))
    finding = only(diagnosis.diagnose(evidence, None, rc7), "probe:keycreate")
    (detail,) = rc7["defect_details"]
    assert (finding.cause, finding.fix) == (detail["summary"], detail["fix"])


# --- defect texts come from the catalog ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "defect"), [("v0.4.0-on-v2", "old-runc-cgroup-v2"), ("v0.12.0-on-v1", "cgroupns-cgroup-v1")]
)
def test_cgroup_defect_texts_are_the_catalogs(diagnosed, release_of, scenario, defect):
    version = SCENARIOS[scenario][1]
    (detail,) = [d for d in release_of(version)["defect_details"] if d["id"] == defect]
    finding = only(diagnosed(scenario), "cgroups")
    assert (finding.cause, finding.fix) == (detail["summary"], detail["fix"])


def test_a_journal_sign_of_the_releases_defect_uses_the_catalogs_texts(release_of):
    release = release_of("v0.12.0")
    (detail,) = [d for d in release["defect_details"] if d["id"] == "cgroupns-cgroup-v1"]
    evidence = host(journal=SIGN_LINES["cgroupns-cgroup-v1"])
    finding = only(diagnosis.diagnose(evidence, release), "journal:cgroupns-cgroup-v1")
    assert (finding.cause, finding.fix) == (detail["summary"], detail["fix"])


def test_no_version_facts_are_written_in_diagnosis():
    # Release facts belong to the catalog: diagnosis.py names no BuildKit release.
    source = Path(diagnosis.__file__).read_text()
    assert not re.findall(r"v0\.\d+\.\d+", source)


# --- the runtime --------------------------------------------------------------------------------------------------

RUNC_NOSECCOMP = (
    "runc version 1.1.12+noseccomp\ncommit: 51d5e94601ceffbbd85688df1c928ecccbfa4685\nspec: 1.0.2-dev\ngo: go1.21.13\n"
)
RUNC_RC6 = "runc version 1.0.0-rc6\ncommit: ccb5efd37fb7c86364786e9137e22948751de7ed\nspec: 1.0.1-dev\n"


def test_a_runc_without_seccomp_is_a_warning_before_any_build():
    runtime = setting("/usr/local/sbin/runc-noseccomp", '/etc/bk.toml:2: binary = "/usr/local/sbin/runc-noseccomp"')
    evidence = host(
        runtime_version=RUNC_NOSECCOMP,
        effective=effective(runtime=runtime, runtime_path="/usr/local/sbin/runc-noseccomp"),
    )
    finding = only(diagnosis.diagnose(evidence), "runtime")
    assert (finding.status, finding.summary) == (WARNING, "runc 1.1.12+noseccomp was built without seccomp")
    assert finding.evidence.splitlines() == [
        "/usr/local/sbin/runc-noseccomp --version: runc version 1.1.12+noseccomp",
        'runtime /usr/local/sbin/runc-noseccomp: /etc/bk.toml:2: binary = "/usr/local/sbin/runc-noseccomp"',
        "(no libseccomp line in --version)",
    ]
    assert "buildkit-runc" in finding.fix


def test_runc_before_1_0_prints_no_libseccomp_line_and_is_fine():
    assert only(diagnosis.diagnose(host(runtime_version=RUNC_RC6)), "runtime").status == OK


def test_a_runtime_that_is_not_there_is_a_problem():
    runtime = setting("runc", '/etc/bk.toml:2: binary = "runc"')
    evidence = host(runtime_version="", effective=effective(runtime=runtime, runtime_path=""), daemon=daemon())
    finding = only(diagnosis.diagnose(evidence), "runtime")
    assert (finding.status, finding.summary) == (PROBLEM, "the OCI runtime runc is not in buildkitd's PATH")
    assert finding.evidence.splitlines()[-1].startswith("PATH=/usr/local/sbin:")


# --- buildkitd, its config, its daemon ----------------------------------------------------------------------------


def test_no_buildkitd_at_all_is_a_warning():
    nothing = daemon(pid=0, argv=[], exe="", unit_props={"LoadState": "not-found"}, workers_rc=None, not_asked="")
    findings = diagnosis.diagnose(host(daemon=nothing))
    assert only(findings, "buildkitd").status == WARNING
    assert only(findings, "buildkitd").evidence.endswith("LoadState=not-found; none in PATH")
    assert "daemon" not in statuses(findings)  # nothing to ask


def test_a_buildkitd_not_running_names_the_unit_it_would_run_from():
    stopped = daemon(pid=0, origin=["systemctl", "buildkit.service"], version="", workers_rc=None, not_asked="x")
    finding = only(diagnosis.diagnose(host(daemon=stopped)), "buildkitd")
    assert finding.summary == "buildkitd (version unknown) not running (buildkit.service)"
    assert finding.evidence.splitlines()[:2] == [
        "systemctl show buildkit.service: ExecStart argv[]=/usr/local/bin/buildkitd --addr fd://",
        f"{DROP_IN}:3: ExecStart=/usr/local/bin/buildkitd --addr fd://",
    ]


def test_a_process_started_by_hand_is_told_apart_from_the_unit():
    by_hand = daemon(argv=["/usr/local/bin/buildkitd", "--root", "/srv/other"])
    evidence = only(diagnosis.diagnose(host(daemon=by_hand)), "buildkitd").evidence.splitlines()
    assert evidence[1].endswith("(buildkit.service; not what runs)")


def test_a_failed_unit_is_a_problem_with_its_journal_lines():
    failed = daemon(
        pid=0,
        unit_props={"LoadState": "loaded", "ActiveState": "failed", "SubState": "failed", "Result": "exit-code"},
        workers_rc=None,
        not_asked="/run/buildkit/buildkitd.sock does not exist",
    )
    finding = only(diagnosis.diagnose(host(daemon=failed, journal=SIGN_LINES["git-missing"])), "daemon")
    assert (finding.status, finding.summary) == (PROBLEM, "buildkit.service failed")
    assert finding.evidence.splitlines() == [
        "systemctl show buildkit.service: ActiveState=failed SubState=failed Result=exit-code",
        SIGN_LINES["git-missing"],
    ]


def test_a_restart_loop_is_a_problem():
    looping = daemon(unit_props={"ActiveState": "activating", "SubState": "auto-restart", "NRestarts": "4"})
    looping.update(workers_rc=None, not_asked="", pid=0)
    assert only(diagnosis.diagnose(host(daemon=looping)), "daemon").summary == "buildkit.service keeps restarting"


def test_a_running_daemon_that_does_not_answer_is_a_problem():
    silent = daemon(workers_rc=1, workers="error: context deadline exceeded\n")
    finding = only(diagnosis.diagnose(host(daemon=silent)), "daemon")
    assert (finding.status, finding.summary) == (
        PROBLEM,
        "buildkitd does not answer on unix:///run/buildkit/buildkitd.sock",
    )
    assert "error: context deadline exceeded" in finding.evidence


def test_a_config_file_buildkitd_cannot_parse_is_a_problem():
    eff = effective(
        config=setting("/etc/bk/custom.toml", "cmdline: --config /etc/bk/custom.toml (/proc/144/cmdline)"),
        config_exists=True,
        toml_error="Expected '=' after a key in a key/value pair (at line 2, column 5)",
    )
    finding = only(diagnosis.diagnose(host(effective=eff)), "config")
    assert (finding.status, finding.summary) == (PROBLEM, "buildkitd cannot parse its config file /etc/bk/custom.toml")
    assert finding.evidence.startswith("/etc/bk/custom.toml: Expected '=' after a key")


def test_a_missing_config_file_given_on_the_command_line_is_a_warning():
    eff = effective(config=setting("/etc/bk/typo.toml", "cmdline: --config /etc/bk/typo.toml (/proc/144/cmdline)"))
    finding = only(diagnosis.diagnose(host(effective=eff)), "config")
    assert (finding.status, finding.summary) == (
        WARNING,
        "the config file /etc/bk/typo.toml given to buildkitd does not exist",
    )
    assert only(diagnosis.diagnose(host(effective=effective())), "config").status == OK  # the default may be absent


# --- host requirements and inotify --------------------------------------------------------------------------------

SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_a_required_tool_missing_is_a_problem_with_the_catalogs_reason(release_of):
    release = release_of("v0.3.0")
    (need,) = [d for d in release["host_requirement_details"] if d["name"] == "git"]
    assert need["level"] == "required"
    finding = only(diagnosis.diagnose(host(host_tools={"PATH": SYSTEMD_PATH, "git": ""}), release), "requires:git")
    assert (finding.status, finding.summary) == (
        PROBLEM,
        "BuildKit v0.3.0 requires git, which is not in buildkitd's PATH",
    )
    assert finding.evidence == f"PATH={SYSTEMD_PATH}: no git"
    assert finding.cause == need["why"]
    assert finding.fix == "install git on the host (Debian/Ubuntu: apt-get install git)"


def test_an_optional_tool_missing_is_a_warning_and_a_present_one_ok(release_of):
    release = release_of("v0.10.6")
    missing = only(diagnosis.diagnose(host(host_tools={"PATH": SYSTEMD_PATH, "git": ""}), release), "requires:git")
    assert missing.status == WARNING
    present = host(host_tools={"PATH": SYSTEMD_PATH, "git": "/usr/bin/git"})
    assert only(diagnosis.diagnose(present, release), "requires:git").summary == "git is at /usr/bin/git"


@pytest.mark.parametrize(("used", "status"), [(6, OK), (102, OK), (103, WARNING), (149, WARNING)])
def test_inotify_instances_close_to_the_limit_are_a_warning(used, status):
    inotify = {"max_user_instances": 128, "instances": used, "max_user_watches": 0, "processes": 40, "uid": 0}
    finding = only(diagnosis.diagnose(host(inotify=inotify)), "inotify-instances")
    assert finding.status == status
    assert finding.evidence == (
        f"/proc/sys/fs/inotify/max_user_instances: 128; in use by uid 0: {used} (from /proc/*/fd of the 40 processes"
        " visible here)"
    )
    if status == WARNING:
        assert "sysctl -w fs.inotify.max_user_instances=1024" in finding.fix
        assert "dies while booting" in finding.cause
