"""Host diagnosis (collection/plugins/module_utils/diagnosis.py) on recorded evidence.

The evidence below is what the ``host_facts`` module reads on a host: /proc/1/comm, /proc/1/status,
/proc/1/attr/current, /proc/self/mountinfo, ``<runtime> --version`` and the buildkit journal. Each scenario
is a privileged Docker container running systemd (bkprov's container target), changed as its name says.
"""

from __future__ import annotations

import importlib.util
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
