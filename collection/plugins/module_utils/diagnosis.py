# Copyright: bkprov developers
# Apache-2.0
"""Known causes of BuildKit failing with a bare "invalid argument", and friends.

``diagnose(evidence, release)`` turns raw evidence read on a host (kernel files, the mount
table, the journal; see ``EVIDENCE``) into findings, each with its cause, the evidence line
and the fix. Pure: the ``doctor`` module gathers the evidence on the host, the roles' preflight
and ``bkprov doctor`` show the findings, and unit tests feed recorded evidence.
Reference: shared/reference/buildkit-versions.md §7.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

# Evidence keys (all strings; empty when unreadable):
EVIDENCE = (
    "pid1",  # /proc/1/comm
    "proc1_status",  # /proc/1/status (CapEff, Seccomp)
    "apparmor",  # /proc/1/attr/current
    "mountinfo",  # /proc/self/mountinfo
    "buildkit_root",  # the configured --root
    "snapshotter",  # the configured OCI worker snapshotter
    "runtime_version",  # `<oci runtime> --version` (buildkit-runc, or the configured binary)
    "journal",  # last lines of the buildkit journal
)

CAP_SYS_ADMIN = 21
# Capabilities buildkitd's OCI worker needs to build (mounts, namespaces, chroot, devices).
NEEDED_CAPS = {21: "CAP_SYS_ADMIN", 18: "CAP_SYS_CHROOT", 27: "CAP_MKNOD", 12: "CAP_NET_ADMIN"}

OK, WARNING, PROBLEM = "ok", "warning", "problem"


@dataclass
class Finding:
    check: str
    status: str
    summary: str
    evidence: str = ""
    cause: str = ""
    fix: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def mounts(mountinfo: str) -> list[tuple[str, str, str]]:
    """(mount point, fstype, the line) per mountinfo line."""
    rows = []
    for line in mountinfo.splitlines():
        if " - " not in line:
            continue
        left, right = line.split(" - ", 1)
        fields = left.split()
        if len(fields) > 4 and right.split():
            rows.append((fields[4].replace("\\040", " "), right.split()[0], line))
    return rows


def mount_of(path: str, table: list[tuple[str, str, str]]) -> tuple[str, str, str]:
    """The mount holding ``path`` (longest matching mount point, last mounted wins)."""
    best = ("", "", "")
    for point, fstype, line in table:
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, fstype, line)
    return best


def cgroup_layout(table: list[tuple[str, str, str]]) -> tuple[str, str]:
    """("v1" | "hybrid" | "v2", evidence line)."""
    for point, fstype, line in table:
        if point == "/sys/fs/cgroup" and fstype == "cgroup2":
            return "v2", line
    for point, fstype, line in table:
        if fstype == "cgroup2" and point.startswith("/sys/fs/cgroup/"):
            return "hybrid", line
    for point, fstype, line in table:
        if fstype == "cgroup" and point.startswith("/sys/fs/cgroup/"):
            return "v1", line
    return "unknown", ""


def status_field(proc_status: str, name: str) -> str:
    for line in proc_status.splitlines():
        if line.startswith(name + ":"):
            return line
    return ""


def check_systemd(ev: dict) -> Finding:
    if ev.get("pid1") == "systemd":
        return Finding("systemd", OK, "systemd is PID 1", f"/proc/1/comm: {ev['pid1']}")
    return Finding(
        "systemd",
        PROBLEM,
        "systemd is not PID 1",
        f"/proc/1/comm: {ev.get('pid1') or 'unreadable'}",
        "bkprov installs systemd units; without systemd as PID 1 nothing starts buildkitd",
        "run the container with /lib/systemd/systemd as its command (bkprov's container target does), or use a VM",
    )


def check_capabilities(ev: dict) -> Finding:
    line = status_field(ev.get("proc1_status", ""), "CapEff")
    if not line:
        return Finding(
            "capabilities",
            WARNING,
            "capabilities unreadable",
            "/proc/1/status has no CapEff",
            "without CapEff bkprov cannot tell whether runc may mount and create namespaces",
            "check that /proc is mounted and readable on the host",
        )
    effective = int(line.split()[1], 16)
    missing = [name for bit, name in sorted(NEEDED_CAPS.items()) if not effective & (1 << bit)]
    if not missing:
        return Finding("capabilities", OK, "the capabilities builds need are there", line)
    return Finding(
        "capabilities",
        PROBLEM,
        f"missing {', '.join(missing)}",
        line,
        "runc needs them to mount the build's root filesystem and create namespaces; without them RUN fails "
        '(often as "operation not permitted" or "invalid argument" on mount)',
        "run the container --privileged, or with --cap-add ALL (dropping only what the host's bounding set lacks)",
    )


# AppArmor labels read "<profile> (enforce|complain)"; SELinux labels ("system_u:system_r:init_t:s0")
# share /proc/1/attr/current and are not AppArmor confinement.
APPARMOR_LABEL = re.compile(r"^(?P<profile>\S.*) \((?P<mode>enforce|complain|kill|unconfined)\)$")


def check_apparmor(ev: dict) -> Finding:
    profile = (ev.get("apparmor") or "").strip()
    label = APPARMOR_LABEL.match(profile)
    evidence = f"/proc/1/attr/current: {profile or '(none)'}"
    if not label or profile.startswith("unconfined") or label.group("mode") == "unconfined":
        return Finding("apparmor", OK, "no AppArmor confinement", evidence)
    if label.group("mode") == "complain":
        return Finding(
            "apparmor",
            WARNING,
            f"AppArmor profile {label.group('profile')} in complain mode",
            evidence,
            "complain mode only logs denials; an enforcing profile like Docker's default denies mount",
            "run the container with --security-opt apparmor=unconfined to be sure",
        )
    return Finding(
        "apparmor",
        PROBLEM,
        f"confined by AppArmor profile {profile}",
        f"/proc/1/attr/current: {profile}",
        "Docker's default AppArmor profile denies mount, which every RUN needs",
        "run the container with --security-opt apparmor=unconfined (bkprov's container target does)",
    )


def check_seccomp(ev: dict) -> Finding:
    line = status_field(ev.get("proc1_status", ""), "Seccomp")
    if not line or line.split()[1] == "0":
        return Finding("seccomp", OK, "no seccomp filter", line or "/proc/1/status has no Seccomp")
    return Finding(
        "seccomp",
        WARNING,
        "a seccomp filter is applied to the host's PID 1",
        line,
        "Docker's default seccomp profile blocks unshare and mount without CAP_SYS_ADMIN",
        "run the container with --security-opt seccomp=unconfined (bkprov's container target does)",
    )


def check_overlay(ev: dict, table: list[tuple[str, str, str]]) -> Finding:
    root = ev.get("buildkit_root") or "/var/lib/buildkit"
    point, fstype, line = mount_of(root, table)
    snapshotter = ev.get("snapshotter") or "auto"
    if fstype != "overlay":
        return Finding("nested-overlayfs", OK, f"{root} is on {fstype or 'unknown'} ({point or '?'})", line)
    if snapshotter in ("native", "fuse-overlayfs"):
        return Finding("nested-overlayfs", OK, f"{root} is on overlayfs; snapshotter {snapshotter} works there", line)
    if snapshotter == "overlayfs":
        return Finding(
            "nested-overlayfs",
            PROBLEM,
            f"{root} is on overlayfs and the snapshotter is forced to overlayfs",
            line,
            'an overlay mount on top of overlayfs fails with "invalid argument" (reference §7.3)',
            f"put a volume or tmpfs on {root} (bkprov's container target does), or use the native snapshotter",
        )
    return Finding(
        "nested-overlayfs",
        WARNING,
        f"{root} is on overlayfs; snapshotter {snapshotter} falls back to native",
        line,
        "overlayfs cannot stack on overlayfs; auto detects it and uses the slower native snapshotter",
        f"put a volume or tmpfs on {root} for the overlayfs snapshotter",
    )


def check_cgroups(release: dict | None, table: list[tuple[str, str, str]]) -> list[Finding]:
    layout, line = cgroup_layout(table)
    findings = [Finding("cgroups", OK, f"cgroup {layout}", line)]
    if not release:
        return findings
    version = release.get("version", "?")
    if layout == "v2" and not release.get("cgroup_v2", True):
        findings[0] = Finding(
            "cgroups",
            PROBLEM,
            f"cgroup v2 host; BuildKit {version} bundles a runc without working cgroup v2",
            line,
            'RUN fails with "mountpoint for cgroup not found" (reference §7.4)',
            "use the VM target or a cgroup v1/hybrid host, or BuildKit v0.8.0 or later (better v0.9.0+)",
        )
    elif layout in ("v1", "hybrid") and "cgroupns-cgroup-v1" in release.get("defects", []):
        findings[0] = Finding(
            "cgroups",
            WARNING,
            f"cgroup {layout} host and BuildKit {version} puts every RUN in a cgroup namespace",
            line,
            'RUN can fail with "mount cgroup … invalid argument" (moby/buildkit#4108, reference §7.2)',
            "use BuildKit v0.12.3 or later (v0.12.4, v0.12.5 are in the catalog), or a cgroup v2 host",
        )
    return findings


def check_runtime(ev: dict) -> Finding:
    version = ev.get("runtime_version") or ""
    first = version.splitlines()[0] if version else ""
    if not version:
        return Finding(
            "runtime",
            WARNING,
            "the OCI runtime did not answer --version",
            "(no output)",
            "buildkitd runs builds with this runtime; one that does not start cannot run RUN steps",
            "reinstall the release (buildkit-runc comes with it) or fix the configured --oci-worker-binary",
        )
    if re.search(r"1\.0\.0-rc7\b", version):
        return Finding(
            "runtime",
            PROBLEM,
            "builds run on runc v1.0.0-rc7",
            first,
            'rc7 fails every container on non-SELinux kernels: "write /proc/self/attr/keycreate: invalid argument" '
            "(reference §7.1)",
            "use the bundled buildkit-runc (bkprov's default), or runc v1.0.0-rc8 or later",
        )
    return Finding("runtime", OK, "OCI runtime", first)


# Journal lines that name a cause; the first match per cause is the evidence.
JOURNAL_SIGNS = (
    (
        "keycreate",
        r"/proc/self/attr/keycreate: invalid argument",
        "runc v1.0.0-rc7 keycreate labeling on a non-SELinux kernel (reference §7.1)",
        "use the bundled buildkit-runc or runc v1.0.0-rc8+",
    ),
    (
        "nested-overlayfs",
        # The failing mount of a forced overlayfs snapshotter (the logger may escape the quotes), not the
        # "failed to mount overlay" line of auto's probe, which then falls back to native.
        r'mount source: \\?"overlay\\?".*invalid argument',
        "overlayfs on top of overlayfs (reference §7.3)",
        "put a volume or tmpfs on the BuildKit root",
    ),
    (
        "cgroupns-cgroup-v1",
        r"mount(ing)? \"?cgroup\"?.*invalid argument",
        "a cgroup namespace on a cgroup v1 host (BuildKit v0.12.0-v0.12.2, reference §7.2)",
        "use BuildKit v0.12.3+ or a cgroup v2 host",
    ),
    (
        "old-runc-cgroup-v2",
        r"mountpoint for cgroup not found",
        "a runc without cgroup v2 support on a cgroup v2 host (reference §7.4)",
        "use a cgroup v1 host, the VM target, or BuildKit v0.8.0+",
    ),
    (
        "masked-path-tmpfs",
        r"can't mask dir .*invalid argument",
        "runc 1.3.6/1.4.3 masks paths with nr_inodes=1, which old kernels reject (reference §7.6)",
        "use a newer kernel or BuildKit v0.30.0 or earlier",
    ),
)


def check_journal(ev: dict) -> list[Finding]:
    findings = []
    journal = ev.get("journal") or ""
    for check, pattern, cause, fix in JOURNAL_SIGNS:
        for line in journal.splitlines():
            if re.search(pattern, line):
                findings.append(
                    Finding(
                        f"journal:{check}",
                        PROBLEM,
                        f"the buildkit journal shows {check}",
                        line.strip()[-300:],
                        cause,
                        fix,
                    )
                )
                break
    return findings


def diagnose(evidence: dict, release: dict | None = None) -> list[Finding]:
    """Every finding for the evidence; ``release`` is the catalog entry of the installed version."""
    table = mounts(evidence.get("mountinfo") or "")
    findings = [
        check_systemd(evidence),
        check_capabilities(evidence),
        check_apparmor(evidence),
        check_seccomp(evidence),
        check_overlay(evidence, table),
    ]
    findings += check_cgroups(release, table)
    if "runtime_version" in evidence:
        findings.append(check_runtime(evidence))
    findings += check_journal(evidence)
    return findings
