# Copyright: bkprov developers
# Apache-2.0
"""Known causes of BuildKit failing with a bare "invalid argument", and friends.

``diagnose(evidence, release, runtime_release)`` turns raw evidence read on a host (kernel files,
the mount table, buildkitd's effective configuration, the daemon's answer, a probe build, the
journal; see ``EVIDENCE``) into findings, each with its cause, the evidence line and the fix.
Pure: the ``host_facts`` module gathers the evidence on the host, the roles' preflight and
``bkprov doctor`` show the findings, and unit tests feed recorded evidence.

Texts of a release's known defects (summary, fix) come from the catalog entries passed in
(``defect_details``), never from here; what is written here describes hosts and error texts.
Reference: shared/reference/buildkit-versions.md §7.
"""

from __future__ import annotations

import re

# Evidence keys. Strings are empty when unreadable; the dicts are present only when gathered.
EVIDENCE = (
    "pid1",  # /proc/1/comm
    "proc1_status",  # /proc/1/status (CapEff, Seccomp)
    "apparmor",  # /proc/1/attr/current
    "mountinfo",  # /proc/self/mountinfo
    "buildkit_root",  # the configured --root
    "snapshotter",  # the configured OCI worker snapshotter
    "runtime_version",  # `<oci runtime> --version` (buildkit-runc, or the configured binary)
    "journal",  # last lines of the buildkit journal
    "effective",  # dict: buildkitd_config.effective() plus "config" (setting) and "config_exists"
    "daemon",  # dict: the buildkitd found (process, unit, version) and its answer to `buildctl debug workers -v`
    "probe",  # dict: the probe build (ran, skipped, rc, output, command)
    "host_tools",  # dict: tool -> its path in buildkitd's PATH ("" when missing), "PATH" -> the PATH searched
    "inotify",  # dict: max_user_instances, instances, max_user_watches, watches, processes, uid
)

CAP_SYS_ADMIN = 21
# Capabilities buildkitd's OCI worker needs to build (mounts, namespaces, chroot, devices).
NEEDED_CAPS = {21: "CAP_SYS_ADMIN", 18: "CAP_SYS_CHROOT", 27: "CAP_MKNOD", 12: "CAP_NET_ADMIN"}

OK, WARNING, PROBLEM = "ok", "warning", "problem"
# The line the probe build's RUN step prints (host_facts writes the Dockerfile).
PROBE_RUN_MARK = "bkprov doctor probe: RUN ok"


class Finding:
    """One check's outcome. A plain class, not a dataclass: importing dataclasses (inspect, ast, dis) costs
    0.25-0.4 s of every host_facts run on an emulated VM, where this file runs."""

    FIELDS = ("check", "status", "summary", "evidence", "cause", "fix")
    __slots__ = FIELDS

    def __init__(self, check: str, status: str, summary: str, evidence: str = "", cause: str = "", fix: str = ""):
        self.check, self.status, self.summary = check, status, summary
        self.evidence, self.cause, self.fix = evidence, cause, fix

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Finding) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        return "Finding(%s)" % ", ".join("%s=%r" % item for item in self.as_dict().items())


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


def catalog_defects(*entries: dict | None) -> dict[str, dict]:
    """{defect id: {summary, fix, …}} of the catalog entries given (a release, a runc release, and
    the runc a release pairs with): the only place defect texts come from."""
    details: dict[str, dict] = {}
    for entry in entries:
        if not entry:
            continue
        for detail in entry.get("defect_details") or []:
            details.setdefault(detail.get("id", ""), detail)
        details.update({k: v for k, v in catalog_defects(entry.get("runc")).items() if k not in details})
    return details


def version_of(release: dict | None) -> str:
    return (release or {}).get("version", "?")


def _setting(ev: dict, name: str) -> dict:
    return (ev.get("effective") or {}).get(name) or {}


def _source_line(ev: dict, name: str, label: str) -> str:
    """ "<label> <value>: <source>" of an effective setting, or "" when the setting was not read."""
    found = _setting(ev, name)
    if not found:
        return ""
    value = found.get("value")
    if isinstance(value, list):
        value = ", ".join(value)
    return "%s %s: %s" % (label, value or "(default lookup)", found.get("source", "?"))


def worker_labels(workers: str) -> dict[str, str]:
    """The labels in `buildctl debug workers -v` output (first worker): {label: value}."""
    labels: dict[str, str] = {}
    for line in workers.splitlines():
        match = re.match(r"\s*(org\.mobyproject\.buildkit\.worker\.[\w.-]+):\s*(.*?)\s*$", line)
        if match and match.group(1) not in labels:
            labels[match.group(1)] = match.group(2)
    return labels


SNAPSHOTTER_LABEL = "org.mobyproject.buildkit.worker.snapshotter"
# buildkitd's runtime lookup when none is configured (executor/runcexecutor, every tag).
DEFAULT_RUNTIMES = ("buildkit-runc", "runc")


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
    # Where the values came from (doctor reads them from the running system; the preflight passes them).
    sources = [s for s in (_source_line(ev, "snapshotter", "snapshotter"), _source_line(ev, "root", "root")) if s]
    used = worker_labels((ev.get("daemon") or {}).get("workers") or "").get(SNAPSHOTTER_LABEL)
    if used:
        sources.append("buildctl debug workers -v: %s: %s" % (SNAPSHOTTER_LABEL, used))
    evidence = "\n".join([line, *sources]) if sources else line
    if fstype != "overlay":
        return Finding("nested-overlayfs", OK, f"{root} is on {fstype or 'unknown'} ({point or '?'})", evidence)
    if snapshotter in ("native", "fuse-overlayfs"):
        return Finding(
            "nested-overlayfs", OK, f"{root} is on overlayfs; snapshotter {snapshotter} works there", evidence
        )
    if snapshotter == "overlayfs" or used == "overlayfs":
        return Finding(
            "nested-overlayfs",
            PROBLEM,
            f"{root} is on overlayfs and the snapshotter is forced to overlayfs",
            evidence,
            'an overlay mount on top of overlayfs fails with "invalid argument" (reference §7.3)',
            f"put a volume or tmpfs on {root} (bkprov's container target does), or use the native snapshotter",
        )
    return Finding(
        "nested-overlayfs",
        WARNING,
        f"{root} is on overlayfs; snapshotter {snapshotter} falls back to native",
        evidence,
        "overlayfs cannot stack on overlayfs; auto detects it and uses the slower native snapshotter",
        f"put a volume or tmpfs on {root} for the overlayfs snapshotter",
    )


def _defect_finding(check: str, status: str, summary: str, evidence: str, defect: str, details: dict) -> Finding:
    detail = details.get(defect) or {}
    return Finding(
        check,
        status,
        summary,
        evidence,
        detail.get("summary") or f"catalog defect {defect}",
        detail.get("fix") or "see `bkprov versions` for releases without this defect",
    )


def check_cgroups(release: dict | None, table: list[tuple[str, str, str]]) -> list[Finding]:
    layout, line = cgroup_layout(table)
    findings = [Finding("cgroups", OK, f"cgroup {layout}", line)]
    if not release:
        return findings
    version = version_of(release)
    details = catalog_defects(release)
    defects = release.get("defects") or []
    if layout == "v2" and ("old-runc-cgroup-v2" in defects or release.get("cgroup_v2") is False):
        findings[0] = _defect_finding(
            "cgroups",
            PROBLEM,
            f"cgroup v2 host; BuildKit {version} bundles a runc without working cgroup v2",
            line,
            "old-runc-cgroup-v2",
            details,
        )
    elif layout in ("v1", "hybrid") and "cgroupns-cgroup-v1" in defects:
        findings[0] = _defect_finding(
            "cgroups",
            WARNING,
            f"cgroup {layout} host and BuildKit {version} puts every RUN in a cgroup namespace",
            line,
            "cgroupns-cgroup-v1",
            details,
        )
    return findings


def runc_version(output: str) -> tuple[str, tuple[int, ...]]:
    """("1.1.12", (1, 1, 12, 1)) from `runc --version`; the last number is 0 for release candidates."""
    match = re.search(r"runc version (\S+)", output)
    if not match:
        return "", ()
    text = match.group(1)
    numbers = re.match(r"v?(\d+)\.(\d+)\.(\d+)(-rc\d+)?", text)
    if not numbers:
        return text, ()
    return text, (int(numbers.group(1)), int(numbers.group(2)), int(numbers.group(3)), 0 if numbers.group(4) else 1)


def check_runtime(ev: dict, runtime_release: dict | None) -> Finding:
    version = ev.get("runtime_version") or ""
    first = version.splitlines()[0] if version else ""
    where = _source_line(ev, "runtime", "runtime")
    path = (ev.get("effective") or {}).get("runtime_path") or ""
    evidence = "\n".join(x for x in (f"{path} --version: {first}" if path else first, where) if x)
    runtime = _setting(ev, "runtime")
    if "effective" in ev and not path:
        wanted = runtime.get("value") or " or ".join(DEFAULT_RUNTIMES)
        return Finding(
            "runtime",
            PROBLEM,
            f"the OCI runtime {wanted} is not in buildkitd's PATH",
            "\n".join(x for x in (where, "PATH=%s" % ((ev.get("daemon") or {}).get("path") or "?")) if x),
            "buildkitd's OCI worker cannot start without its runtime (it exits, or every RUN fails)",
            "install the release's bin/buildkit-runc next to buildkitd, or point --oci-worker-binary / "
            "[worker.oci] binary at a runc that exists",
        )
    if not version:
        return Finding(
            "runtime",
            WARNING,
            "the OCI runtime did not answer --version",
            evidence or "(no output)",
            "buildkitd runs builds with this runtime; one that does not start cannot run RUN steps",
            "reinstall the release (buildkit-runc comes with it) or fix the configured --oci-worker-binary",
        )
    text, number = runc_version(version)
    details = catalog_defects(runtime_release)
    if details:
        defect_id, detail = next(iter(details.items()))
        return Finding(
            "runtime",
            PROBLEM,
            f"builds run on runc {text} (catalog defect {defect_id})",
            evidence,
            detail.get("summary", ""),
            detail.get("fix", ""),
        )
    # runc prints a libseccomp line when built with seccomp (from v1.0.0); BuildKit sends a seccomp
    # profile with every RUN on a kernel with seccomp, which such a runc refuses.
    if number and number >= (1, 0, 0, 1) and "libseccomp" not in version:
        return Finding(
            "runtime",
            WARNING,
            f"runc {text} was built without seccomp",
            evidence + "\n(no libseccomp line in --version)",
            RUNTIME_NO_SECCOMP_CAUSE,
            RUNTIME_NO_SECCOMP_FIX,
        )
    return Finding("runtime", OK, "OCI runtime", evidence)


RUNTIME_NO_SECCOMP_CAUSE = (
    "buildkitd sends a seccomp profile with each RUN (newer versions always do) and a runc built without the "
    'seccomp tag refuses it: "seccomp: config provided but seccomp not supported"'
)
RUNTIME_NO_SECCOMP_FIX = (
    "use a runc built with seccomp, such as the release's own bin/buildkit-runc "
    "(drop --oci-worker-binary / [worker.oci] binary, or rebuild runc with BUILDTAGS=seccomp)"
)

# Error texts that name a cause, in the journal or in the probe build's output:
# (check, pattern, catalog defect id whose texts apply when the release has it, cause, fix).
SIGNS = (
    (
        "keycreate",
        r"/proc/self/attr/keycreate: invalid argument",
        "keycreate",
        "the runtime labels the session keyring and the kernel refuses it (runc built with selinux on a "
        "kernel without SELinux keyring labels; reference §7.1)",
        "run builds on the release's bundled buildkit-runc instead of this runc",
    ),
    (
        "runtime-no-seccomp",
        r"seccomp: config provided but seccomp not supported",
        "",
        RUNTIME_NO_SECCOMP_CAUSE,
        RUNTIME_NO_SECCOMP_FIX,
    ),
    (
        "nested-overlayfs",
        # The failing mount of a forced overlayfs snapshotter (the logger may escape the quotes), not the
        # "failed to mount overlay" line of auto's probe, which then falls back to native.
        r'mount source: \\?"overlay\\?".*invalid argument',
        "",
        "overlayfs on top of overlayfs (reference §7.3)",
        "put a volume or tmpfs on the BuildKit root, or use the native snapshotter",
    ),
    (
        "cgroupns-cgroup-v1",
        r"mount(ing)? \\?\"?cgroup\\?\"?.*invalid argument",
        "cgroupns-cgroup-v1",
        "a cgroup namespace for RUN on a cgroup v1 host, which the kernel refuses (reference §7.2)",
        "use a BuildKit release without catalog defect cgroupns-cgroup-v1, or a cgroup v2 host",
    ),
    (
        "old-runc-cgroup-v2",
        r"mountpoint for cgroup not found",
        "old-runc-cgroup-v2",
        "a runc without cgroup v2 support on a cgroup v2 host (reference §7.4)",
        "use a cgroup v1 host, the VM target, or a BuildKit release without catalog defect old-runc-cgroup-v2",
    ),
    (
        "masked-path-tmpfs",
        r"can't mask dir .*invalid argument",
        "",
        "runc 1.3.6/1.4.3 masks paths with nr_inodes=1, which old kernels reject (reference §7.6)",
        "use a newer kernel or a BuildKit whose runc is not 1.3.6/1.4.3",
    ),
    (
        "copy-helper-image",
        # The helper image of COPY before FileOp (catalog dockerfile_copy), pulled from Docker Hub.
        r"(docker/dockerfile-copy|tonistiigi/copy)\S*.*(failed|error|dial tcp|no such host|not found)",
        "",
        "this BuildKit runs COPY in a helper image from Docker Hub (before FileOp), which the host cannot pull",
        "let buildkitd --version name a catalog release so doctor's probe serves the helper image itself, or make "
        "the image reachable (a registry mirror in buildkitd.toml)",
    ),
    (
        "git-missing",
        r"buildkitd: failed to find git binary",  # v0.3.x exits; later versions only warn (git source off)
        "",
        "buildkitd's git source needs git in buildkitd's PATH; this buildkitd exits at start without it",
        "install git on the host (Debian/Ubuntu: apt-get install git)",
    ),
)


def match_signs(text: str) -> list[tuple[tuple, str]]:
    """[(sign, first matching line)] of each sign found in ``text``, in SIGNS order."""
    found = []
    lines = text.splitlines()
    for sign in SIGNS:
        for line in lines:
            if re.search(sign[1], line):
                found.append((sign, line.strip()))
                break
    return found


def _sign_texts(sign: tuple, details: dict) -> tuple[str, str]:
    _check, _pattern, defect, cause, fix = sign
    detail = details.get(defect) if defect else None
    if detail:
        return detail.get("summary") or cause, detail.get("fix") or fix
    return cause, fix


def check_journal(ev: dict, details: dict | None = None) -> list[Finding]:
    findings = []
    for sign, line in match_signs(ev.get("journal") or ""):
        cause, fix = _sign_texts(sign, details or {})
        findings.append(
            Finding(f"journal:{sign[0]}", PROBLEM, f"the buildkit journal shows {sign[0]}", line[-300:], cause, fix)
        )
    return findings


def check_buildkitd(ev: dict) -> Finding:
    """Which buildkitd doctor found and where its command line came from."""
    daemon = ev.get("daemon") or {}
    argv = daemon.get("argv") or []
    version = (daemon.get("version") or "").strip().splitlines()
    version_line = version[0] if version else ""
    version_word = next((w for w in version_line.split() if re.match(r"v\d+\.\d+\.\d+", w)), "")
    unit = daemon.get("unit") or "buildkit.service"
    props = daemon.get("unit_props") or {}
    if not argv and not daemon.get("exe"):
        return Finding(
            "buildkitd",
            WARNING,
            "no buildkitd found",
            "no buildkitd process (/proc/*/comm); systemctl show %s: LoadState=%s; none in PATH"
            % (unit, props.get("LoadState") or "?"),
            "there is no BuildKit here to diagnose beyond the host itself",
            "install BuildKit (`bkprov provision VERSION --host …`), or name the unit with doctor_unit",
        )
    location = daemon.get("exec_start") or ["", 0, ""]
    lines = []
    if daemon.get("pid"):
        lines.append("cmdline: %s (/proc/%s/cmdline)" % (" ".join(argv), daemon["pid"]))
    elif argv:
        lines.append("systemctl show %s: ExecStart argv[]=%s" % (unit, " ".join(argv)))
    if location[0]:
        runs_it = not daemon.get("pid") or daemon.get("unit_argv") == argv
        lines.append(
            "%s:%s: %s%s" % (location[0], location[1], location[2], "" if runs_it else f" ({unit}; not what runs)")
        )
    if props.get("DropInPaths"):
        lines.append("drop-ins: %s" % props["DropInPaths"])
    if version_line:
        lines.append("%s --version: %s" % (daemon.get("exe") or (argv[:1] or ["buildkitd"])[0], version_line))
    state = "running as pid %s" % daemon["pid"] if daemon.get("pid") else "not running"
    summary = "buildkitd %s %s (%s)" % (version_word or "(version unknown)", state, unit)
    return Finding("buildkitd", OK, summary, "\n".join(lines))


def check_config(ev: dict) -> Finding:
    eff = ev.get("effective") or {}
    config = eff.get("config") or {}
    path = config.get("value", "")
    lines = [s for s in (_source_line(ev, n, n) for n in ("config", "root", "addr", "snapshotter", "runtime")) if s]
    evidence = "\n".join(lines)
    if eff.get("toml_error"):
        return Finding(
            "config",
            PROBLEM,
            f"buildkitd cannot parse its config file {path}",
            f"{path}: {eff['toml_error']}\n{evidence}",
            "buildkitd refuses to start with a config file that is not valid TOML",
            f"fix the TOML syntax of {path} (docs/buildkitd.toml.md of the release)",
        )
    if not eff.get("config_exists") and not config.get("source", "").startswith("default"):
        return Finding(
            "config",
            WARNING,
            f"the config file {path} given to buildkitd does not exist",
            evidence,
            "buildkitd silently treats a missing --config file as empty (reference §6): its settings do not apply",
            f"create {path} or fix the --config path",
        )
    summary = "root %s, snapshotter %s, runtime %s" % (
        _setting(ev, "root").get("value", "?"),
        _setting(ev, "snapshotter").get("value", "?"),
        _setting(ev, "runtime").get("value") or "buildkit-runc/runc from PATH",
    )
    return Finding("config", OK, summary, evidence)


def check_requirements(ev: dict, release: dict | None) -> list[Finding]:
    tools = ev.get("host_tools") or {}
    details = (release or {}).get("host_requirement_details") or [
        {"name": name, "level": level, "why": ""}
        for name, level in ((release or {}).get("host_requirements") or {}).items()
    ]
    findings = []
    for need in details:
        name, level = need.get("name", ""), need.get("level", "")
        found = tools.get(name, "")
        search = "PATH=%s" % tools.get("PATH", "?")
        if found:
            findings.append(Finding(f"requires:{name}", OK, f"{name} is at {found}", search))
            continue
        why = need.get("why") or f"the catalog marks {name} {level} for BuildKit {version_of(release)}"
        findings.append(
            Finding(
                f"requires:{name}",
                PROBLEM if level == "required" else WARNING,
                f"BuildKit {version_of(release)} {'requires' if level == 'required' else 'can use'} {name}, "
                "which is not in buildkitd's PATH",
                f"{search}: no {name}",
                why,
                f"install {name} on the host (Debian/Ubuntu: apt-get install {name})",
            )
        )
    return findings


def check_inotify(ev: dict) -> list[Finding]:
    """inotify instances and watches of buildkitd's user against fs.inotify limits (per user, host-wide)."""
    ino = ev.get("inotify") or {}
    findings = []
    for kind, limit_key, used_key in (
        ("instances", "max_user_instances", "instances"),
        ("watches", "max_user_watches", "watches"),
    ):
        limit, used = ino.get(limit_key) or 0, ino.get(used_key) or 0
        if not limit:
            continue
        evidence = (
            "/proc/sys/fs/inotify/%s: %d; in use by uid %s: %d (from /proc/*/fd of the %s processes visible here)"
            % (
                limit_key,
                limit,
                ino.get("uid", "?"),
                used,
                ino.get("processes", "?"),
            )
        )
        if used * 5 >= limit * 4:  # 80%: a few more systemd instances and the next one fails
            findings.append(
                Finding(
                    f"inotify-{kind}",
                    WARNING,
                    f"{used} of {limit} inotify {kind} in use",
                    evidence,
                    "every systemd (each systemd container too) takes inotify instances and watches; at the limit a "
                    "new systemd container dies while booting (about 1.6 s, empty log) and services fail to start",
                    "raise the limit on the Docker host: sysctl -w fs.inotify.%s=%d (persist it in /etc/sysctl.d/), "
                    "or run fewer systemd containers" % (limit_key, max(limit * 8, 1024)),
                )
            )
        else:
            findings.append(Finding(f"inotify-{kind}", OK, f"{used} of {limit} inotify {kind} in use", evidence))
    return findings


def found(ev: dict) -> bool:
    """Whether doctor found a buildkitd (a process, a unit's command line or a binary) to ask."""
    daemon = ev.get("daemon") or {}
    return bool(daemon.get("argv") or daemon.get("exe"))


def check_daemon(ev: dict) -> Finding:
    daemon = ev.get("daemon") or {}
    unit = daemon.get("unit") or "buildkit.service"
    props = daemon.get("unit_props") or {}
    state = " ".join(
        "%s=%s" % (k, props[k]) for k in ("ActiveState", "SubState", "Result", "NRestarts") if props.get(k)
    )
    addr = daemon.get("addr") or ""
    where = "%s (%s)" % (addr, daemon.get("addr_source")) if daemon.get("addr_source") else addr
    restarting = props.get("ActiveState") in ("activating", "deactivating") and props.get("NRestarts", "0") not in (
        "",
        "0",
    )
    if props.get("ActiveState") == "failed" or restarting:
        journal = [line for line in (ev.get("journal") or "").splitlines() if line.strip()][-8:]
        return Finding(
            "daemon",
            PROBLEM,
            f"{unit} {'failed' if not restarting else 'keeps restarting'}",
            "\n".join([f"systemctl show {unit}: {state}", *journal]),
            "buildkitd exits at start; the journal lines above say why (known causes are named in other findings)",
            f"fix what the journal names, then `systemctl restart {unit}`",
        )
    if daemon.get("workers_rc") == 0:
        labels = worker_labels(daemon.get("workers") or "")
        shown = [
            f"{k}: {v}" for k, v in labels.items() if k.rsplit(".", 1)[-1] in ("executor", "snapshotter", "network")
        ]
        return Finding(
            "daemon",
            OK,
            f"buildkitd answers on {addr}",
            "\n".join([f"buildctl --addr {where} debug workers -v", *shown]),
        )
    asked = daemon.get("workers_rc") is not None
    reason = (daemon.get("workers") or "").strip().splitlines()[-3:] if asked else [daemon.get("not_asked", "")]
    running = bool(daemon.get("pid")) or props.get("ActiveState") == "active"
    return Finding(
        "daemon",
        PROBLEM if running and asked else WARNING,
        f"buildkitd does not answer{' on ' + addr if addr else ''}",
        "\n".join([f"buildctl --addr {where} debug workers -v" if asked else "not asked", *reason, state]).strip(),
        "a running buildkitd that does not answer cannot build"
        if running
        else "buildkitd is not running and nothing starts it on demand",
        f"read `journalctl -u {unit}`; start it with `systemctl start {unit}`",
    )


def check_probe(ev: dict, findings: list[Finding], table: list[tuple[str, str, str]], details: dict) -> list[Finding]:
    """The probe build's outcome, its error sorted into the known causes (never "ok" on a failure)."""
    probe = ev.get("probe") or {}
    command = probe.get("command", "")
    if not probe.get("ran"):
        return [
            Finding(
                "probe",
                WARNING,
                "probe build not run: %s" % (probe.get("skipped") or "unknown reason"),
                command,
                "without a build, doctor can only name causes it sees in files and the journal",
                "make buildkitd answer (see the daemon finding), then run doctor again",
            )
        ]
    output = probe.get("output") or ""
    run_line = next((line for line in output.splitlines() if PROBE_RUN_MARK in line), "")
    if probe.get("rc") == 0 and run_line:
        return [
            Finding(
                "probe",
                OK,
                "the probe build ran RUN and COPY",
                "%s\n%s" % (command, run_line.strip()),
            )
        ]
    tail = "\n".join(output.strip().splitlines()[-15:])
    named = []
    for sign, line in match_signs(output):
        cause, fix = _sign_texts(sign, details)
        named.append(Finding("probe:" + sign[0], PROBLEM, f"the probe build fails: {sign[0]}", line[-400:], cause, fix))
    if not named and "invalid argument" in output:
        root = ev.get("buildkit_root") or "/var/lib/buildkit"
        used = worker_labels((ev.get("daemon") or {}).get("workers") or "").get(SNAPSHOTTER_LABEL)
        snapshotter = used or ev.get("snapshotter") or "auto"
        point, fstype, mount = mount_of(root, table)
        if fstype == "overlay" and snapshotter == "overlayfs":
            line = next((x for x in output.splitlines() if "invalid argument" in x), "").strip()
            named.append(
                Finding(
                    "probe:nested-overlayfs",
                    PROBLEM,
                    "the probe build fails: nested-overlayfs",
                    "\n".join([line[-400:], mount, f"snapshotter in use: {snapshotter}"]),
                    'an overlay mount on top of overlayfs fails with "invalid argument" (reference §7.3)',
                    f"put a volume or tmpfs on {root} ({point} is overlay), or use the native snapshotter",
                )
            )
    if named:
        return named
    others = [f.check for f in findings if f.status == PROBLEM]
    return [
        Finding(
            "probe",
            PROBLEM,
            "the probe build failed (exit %s) with an error bkprov does not know" % probe.get("rc"),
            "%s\n%s" % (command, tail),
            "not one of the known error texts"
            + (f"; the problems found ({', '.join(others)}) may explain it" if others else "")
            + "; all evidence gathered is in the other findings",
            "read the error above with the other findings; `bkprov doctor --json` keeps all of it for a report",
        )
    ]


def diagnose(evidence: dict, release: dict | None = None, runtime_release: dict | None = None) -> list[Finding]:
    """Every finding for the evidence; ``release`` is the catalog entry of the installed version,
    ``runtime_release`` the catalog entry of the runc release the runtime reports (both may be empty)."""
    table = mounts(evidence.get("mountinfo") or "")
    details = catalog_defects(release, runtime_release)
    findings = [
        check_systemd(evidence),
        check_capabilities(evidence),
        check_apparmor(evidence),
        check_seccomp(evidence),
    ]
    if "daemon" in evidence:
        findings.append(check_buildkitd(evidence))
    if "effective" in evidence:
        findings.append(check_config(evidence))
    findings.append(check_overlay(evidence, table))
    findings += check_cgroups(release, table)
    if "runtime_version" in evidence:
        findings.append(check_runtime(evidence, runtime_release))
    if "host_tools" in evidence:
        findings += check_requirements(evidence, release)
    if "inotify" in evidence:
        findings += check_inotify(evidence)
    if found(evidence):
        findings.append(check_daemon(evidence))
    if "probe" in evidence:
        probe = check_probe(evidence, findings, table, details)
        if probe[0].status == OK:
            findings = [proven_wrong(f) for f in findings]
        findings += probe
    findings += check_journal(evidence, details)
    return findings


# Checks that predict a build failure from versions and mounts; a probe build that worked outweighs them.
PREDICTIONS = ("runtime", "cgroups", "nested-overlayfs")


def proven_wrong(finding: Finding) -> Finding:
    """A predicted problem the probe build contradicts: a warning that says so (e.g. a runc rc7 built
    without the selinux tag, which the catalog's keycreate defect does not hit)."""
    if finding.check not in PREDICTIONS or finding.status != PROBLEM:
        return finding
    return Finding(
        finding.check,
        WARNING,
        finding.summary + "; yet the probe build worked here",
        finding.evidence,
        finding.cause,
        finding.fix,
    )
