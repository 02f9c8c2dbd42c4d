# Copyright: bkprov developers
# Apache-2.0
"""What the buildkit role and doctor must know about a host, read on the host in one go.

This file runs ON THE TARGET and uses only the Python standard library (3.7+: diagnosis.py's dataclass),
so the ``bkprov.buildkit.host_facts`` action can send it, with diagnosis.py and buildkitd_config.py, to
one piped ``python3 -c`` (plugin_utils/piped.py) instead of an AnsiballZ module. The
``bkprov.buildkit.host_facts`` module wraps the same ``main()`` for connections that cannot pipe stdin,
and documents the options; their types and defaults are ``ARGUMENT_SPEC`` below, for both paths.

``main(params)`` reads PID 1, the cgroup layout, the filesystem under BuildKit's root, the installed
version and the units, gathers the evidence ``diagnosis.diagnose()`` turns into findings and, with
``discover``, reads the configuration the running buildkitd really uses (and runs the probe build).
It changes nothing on the host but the probe's temporary build context.
"""

import os
import re
import shutil
import subprocess
import sys
import time

from ansible_collections.bkprov.buildkit.plugins.module_utils import buildkitd_config as bc
from ansible_collections.bkprov.buildkit.plugins.module_utils.diagnosis import (
    PROBE_RUN_MARK,
    cgroup_layout,
    diagnose,
    mount_of,
    mounts,
    runc_version,
)

SHOW_PROPERTIES = (
    "LoadState",
    "ActiveState",
    "SubState",
    "Result",
    "NRestarts",
    "MainPID",
    "ExecStart",
    "FragmentPath",
    "DropInPaths",
    "Sockets",
    "TriggeredBy",
    "Environment",
)
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox", "/usr/local/bin/busybox", "/sbin/busybox")

# The options of the host_facts module (its DOCUMENTATION describes them): AnsibleModule validates
# the module's arguments with it; the action validates the piped path's with it on the controller.
ARGUMENT_SPEC = dict(
    buildkit_root=dict(type="path", default="/var/lib/buildkit"),
    bin_dir=dict(type="path", default="/usr/local/bin"),
    unit_dir=dict(type="path", default="/etc/systemd/system"),
    release=dict(type="dict", default={}),
    runtime_release=dict(type="dict", default={}),
    snapshotter=dict(type="str", default="auto"),
    runtime=dict(type="str", default=""),
    config_file=dict(type="path", default="/etc/buildkit/buildkitd.toml"),
    journal=dict(type="bool", default=False),
    discover=dict(type="bool", default=False),
    unit=dict(type="str", default="buildkit.service"),
    probe=dict(type="bool", default=False),
    probe_timeout=dict(type="int", default=180),
    busybox=dict(type="path", default=""),
    # Not secret, but long: kept out of the echoed invocation.
    copy_helper=dict(type="dict", default={}, no_log=True),
)


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def read_or_none(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def existing(path):
    """The path itself, or its nearest existing parent, with symlinks resolved (before install
    /var/lib/buildkit may not exist yet; the filesystem it will land on is what matters)."""
    while not os.path.exists(path) and path != "/":
        path = os.path.dirname(path)
    return os.path.realpath(path)


def run(argv, timeout=30):
    """(rc, stdout+stderr) of a command; rc None when it could not start or timed out."""
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, str(exc)
    return done.returncode, done.stdout.decode("utf-8", "replace")


def run_stdout(argv):
    """(rc, stdout) of a command, its stderr apart (what AnsibleModule.run_command gave these callers)."""
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    except OSError:
        return None, ""
    return done.returncode, done.stdout.decode("utf-8", "replace")


def configured_snapshotter(config_file, unit_file):
    """The snapshotter bkprov's own files set (the preflight's view): the flag, else the TOML, else auto."""
    flag = re.search(r"--oci-worker-snapshotter[= ]+(\S+)", read(unit_file))
    if flag:
        return flag.group(1)
    toml = re.search(r'^\s*snapshotter\s*=\s*"([^"]*)"', read(config_file), re.MULTILINE)
    return toml.group(1) if toml else "auto"


def unit_states():
    """enabled and active of both units from one ``systemctl show`` (a process each costs on a slow host):
    UnitFileState and ActiveState are what ``systemctl is-enabled`` and ``is-active`` print."""
    units = ("buildkit.socket", "buildkit.service")
    out = run_stdout(["systemctl", "show", "--no-pager", "-pUnitFileState", "-pActiveState", *units])[1]
    blocks = out.strip("\n").split("\n\n")  # one block per unit, in the order asked
    states = {}
    for index, unit in enumerate(units):
        props = bc.parse_show(blocks[index]) if index < len(blocks) else {}
        states[unit] = {
            "enabled": props.get("UnitFileState") == "enabled",
            "active": props.get("ActiveState") == "active",
        }
    return states


# ---------------------------------------------------------------- finding the real buildkitd


def systemctl_show(unit):
    rc, out = run(["systemctl", "show", unit, "--no-pager"] + ["-p" + p for p in SHOW_PROPERTIES])
    return bc.parse_show(out) if rc == 0 else {}


def same_mount_namespace(pid):
    """A buildkitd of another container on this host is not ours; unknown (no permission) counts as ours."""
    try:
        return os.readlink("/proc/%s/ns/mnt" % pid) == os.readlink("/proc/self/ns/mnt")
    except OSError:
        return True


def buildkitd_pids():
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        comm = read("/proc/%s/comm" % name).strip()
        try:
            exe = os.path.basename(os.readlink("/proc/%s/exe" % name)).replace(" (deleted)", "")
        except OSError:
            exe = ""
        if "buildkitd" in (comm, exe) and same_mount_namespace(name):
            pids.append(int(name))
    return sorted(pids)


def cmdline(pid):
    raw = read("/proc/%s/cmdline" % pid)
    return [arg for arg in raw.split("\x00") if arg] if raw else []


def unit_of(pid):
    """The systemd service a process runs in, from its cgroup path ("" outside any)."""
    for line in read("/proc/%s/cgroup" % pid).splitlines():
        match = re.search(r"/([^/]+\.service)(?:/|$)", line.split(":", 2)[-1])
        if match:
            return match.group(1)
    return ""


def environ_path(pid):
    raw = read("/proc/%s/environ" % pid)
    for item in raw.split("\x00"):
        if item.startswith("PATH="):
            return item[len("PATH=") :]
    return ""


def which(name, path):
    if not name:
        return ""
    if os.path.isabs(name):
        return name if os.access(name, os.X_OK) else ""
    return shutil.which(name, path=path) or ""


def find_daemon(unit_param, systemd):
    """What buildkitd runs, or would run: process, unit, command line, executable, PATH."""
    daemon = {"unit": unit_param, "unit_props": {}, "pid": 0, "argv": [], "origin": [], "exe": "", "path": ""}
    props = systemctl_show(unit_param) if systemd else {}
    pid = int(props.get("MainPID") or 0)
    if not pid:
        pids = buildkitd_pids()
        pid = pids[0] if pids else 0
    if pid:
        unit = unit_of(pid)
        if systemd and unit and unit != unit_param:
            daemon["unit"], props = unit, systemctl_show(unit)
        daemon.update(pid=pid, argv=cmdline(pid), origin=["cmdline", "/proc/%d/cmdline" % pid])
        try:
            exe = os.readlink("/proc/%d/exe" % pid)
            daemon["exe"] = "/proc/%d/exe" % pid if exe.endswith(" (deleted)") else exe
        except OSError:
            pass
        daemon["path"] = environ_path(pid)
    location = ("", 0, "")
    if props.get("FragmentPath"):
        files = [props["FragmentPath"], *props.get("DropInPaths", "").split()]
        location = bc.exec_start_location([(f, read(f)) for f in files])
    daemon["exec_start"] = list(location)
    daemon["unit_argv"] = bc.exec_start_argv(props.get("ExecStart", ""), location[2])
    if not pid and props.get("LoadState") == "loaded" and daemon["unit_argv"]:
        daemon.update(argv=daemon["unit_argv"], origin=["systemctl", daemon["unit"]])
    daemon["unit_props"] = {k: v for k, v in props.items() if k != "ExecStart"}
    if not daemon["path"]:
        env = re.search(r"(?:^|\s)PATH=(\S+)", props.get("Environment", ""))
        daemon["path"] = env.group(1) if env else bc.SYSTEMD_PATH
    if not daemon["exe"]:
        daemon["exe"] = which(daemon["argv"][0] if daemon["argv"] else "buildkitd", daemon["path"])
    return daemon


def find_socket(daemon, systemd):
    """The socket unit that activates the service, with the paths it listens on."""
    props = daemon["unit_props"]
    names = (props.get("Sockets") or props.get("TriggeredBy") or "").split()
    names = [n for n in names if n.endswith(".socket")]
    if not names or not systemd:
        return {}
    rc, out = run(["systemctl", "show", names[0], "--no-pager", "-pListen", "-pActiveState", "-pFragmentPath"])
    show = bc.parse_show(out) if rc == 0 else {}
    return {
        "unit": names[0],
        "listen": bc.listen_paths(show.get("Listen", "")),
        "active": show.get("ActiveState", ""),
        "fragment": show.get("FragmentPath", ""),
    }


def resolve_runtime(runtime_setting, path):
    """The runtime binary buildkitd uses: --oci-worker-binary / [worker.oci] binary, else its default lookup."""
    names = [runtime_setting] if runtime_setting else list(bc.DEFAULT_RUNTIMES)
    for name in names:
        found = which(name, path)
        if found:
            return found
    return ""


def version_word(output):
    """v0.10.6 from `buildkitd github.com/moby/buildkit v0.10.6 0c9b5aeb…`; "" when none looks like a tag."""
    match = re.search(r"\s(v\d+\.\d+\.\d+\S*)", " " + output.strip().splitlines()[0]) if output.strip() else None
    return match.group(1) if match else ""


def ask_workers(buildctl, socket_path):
    if not buildctl:
        return None, "no buildctl next to buildkitd or in PATH"
    if not socket_path:
        return None, "no unix socket to reach buildkitd on"
    if not os.path.exists(socket_path):
        return None, "%s does not exist" % socket_path
    return run([buildctl, "--addr", "unix://" + socket_path, "debug", "workers", "-v"], timeout=30)


# ---------------------------------------------------------------- host requirements, inotify


def inotify_usage(uid):
    """inotify instances and watches held by ``uid``'s processes visible here (anon_inode:inotify fds)."""
    instances = watches = processes = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        processes += 1
        try:
            if os.stat("/proc/" + name).st_uid != uid:
                continue
            fds = os.listdir("/proc/%s/fd" % name)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink("/proc/%s/fd/%s" % (name, fd)) != "anon_inode:inotify":
                    continue
            except OSError:
                continue
            instances += 1
            watches += read("/proc/%s/fdinfo/%s" % (name, fd)).count("inotify wd:")

    def limit(key):
        text = read("/proc/sys/fs/inotify/" + key).strip()
        return int(text) if text.isdigit() else 0

    return {
        "max_user_instances": limit("max_user_instances"),
        "instances": instances,
        "max_user_watches": limit("max_user_watches"),
        "watches": watches,
        "processes": processes,
        "uid": uid,
    }


# ---------------------------------------------------------------- the probe build


def static_elf(path):
    """Whether ``path`` is a 64-bit ELF without an interpreter (runs in FROM scratch)."""
    try:
        with open(path, "rb") as handle:
            elf = handle.read(1 << 16)
    except OSError:
        return False
    if elf[:4] != b"\x7fELF" or len(elf) < 64 or elf[4] != 2:
        return False
    phoff = int.from_bytes(elf[32:40], "little")
    size, count = int.from_bytes(elf[54:56], "little"), int.from_bytes(elf[56:58], "little")
    return all(int.from_bytes(elf[phoff + i * size : phoff + i * size + 4], "little") != 3 for i in range(count))


def find_busybox(given):
    candidates = [given] if given else [shutil.which("busybox") or "", *BUSYBOX_CANDIDATES]
    for path in candidates:
        if path and static_elf(path):
            return path
    return ""


# RUN prints the mark only when it runs (the mark is not in the command line buildctl echoes: "$s"),
# then COPY lands on the RUN's layer: both need the snapshotter's mounts, RUN needs the runtime.
PROBE_DOCKERFILE = (
    "FROM scratch\n"
    "COPY busybox /bkprov/busybox\n"
    'RUN ["/bkprov/busybox", "sh", "-c", "s=ok; echo \\"%s $s\\"; /bkprov/busybox mkdir -p /bkprov/run"]\n'
    "COPY Dockerfile /bkprov/run/Dockerfile\n"
) % PROBE_RUN_MARK.rsplit(" ", 1)[0]


def start_copy_helper(helper, busybox, workdir):
    """Serve the COPY helper image on localhost; (process, image reference) or (None, why not)."""
    if not helper.get("copy") or not helper.get("registry"):
        return None, "COPY of this version needs the helper image files (the host_facts action plugin passes them)"
    for name in ("copy", "registry.py"):
        with open(os.path.join(workdir, name), "w", encoding="utf-8") as handle:
            handle.write(helper["copy" if name == "copy" else "registry"])
    ready = os.path.join(workdir, "ready")
    argv = [sys.executable, os.path.join(workdir, "registry.py"), "--copy", os.path.join(workdir, "copy")]
    process = subprocess.Popen(
        [*argv, "--busybox", busybox, "--ready", ready], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    for _attempt in range(100):
        if read(ready).strip() or process.poll() is not None:
            break
        time.sleep(0.1)
    image = read(ready).strip()
    if not image:
        process.kill()
        return None, "the built-in COPY helper registry did not start: %s" % process.stderr.read().decode()[-300:]
    return process, image


def run_probe(buildctl, socket_path, busybox, copy_mode, helper, timeout, frontend_opt="--opt"):
    """{"ran", "skipped", "rc", "output", "command", "run_line"} of one offline build.

    ``frontend_opt`` is the release's buildctl flag for frontend options (catalog fact); no-cache goes
    through it because v0.3.x buildctl refuses --no-cache with a frontend.
    """
    command = "%s --addr unix://%s build %s no-cache= --frontend dockerfile.v0 (FROM scratch, COPY, RUN, COPY)" % (
        buildctl,
        socket_path,
        frontend_opt,
    )
    probe = {"ran": False, "skipped": "", "rc": None, "output": "", "command": command, "run_line": ""}
    if not busybox:
        probe["skipped"] = (
            "no static busybox on the host for the FROM scratch image (Debian: apt-get install busybox-static)"
        )
        return probe
    import tempfile  # here, not at the top: only the probe needs it, and its import costs 0.15 s on an emulated VM

    work = tempfile.mkdtemp(prefix="bkprov-doctor-")
    context = os.path.join(work, "context")
    os.mkdir(context)
    registry = None
    try:
        shutil.copyfile(busybox, os.path.join(context, "busybox"))
        os.chmod(os.path.join(context, "busybox"), 0o755)
        with open(os.path.join(context, "Dockerfile"), "w", encoding="utf-8") as handle:
            handle.write(PROBE_DOCKERFILE)
        argv = [buildctl, "--addr", "unix://" + socket_path, "build", frontend_opt, "no-cache=", "--progress=plain"]
        argv += ["--frontend", "dockerfile.v0", "--local", "context=" + context, "--local", "dockerfile=" + context]
        if copy_mode != "fileop":
            registry, image = start_copy_helper(helper, busybox, work)
            if registry is None:
                probe["skipped"] = image
                return probe
            argv += [frontend_opt, "override-copy-image=" + image]
            probe["command"] += " with COPY helper image " + image
        probe["ran"] = True
        try:
            done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, check=False)
            probe["rc"], probe["output"] = done.returncode, done.stdout.decode("utf-8", "replace")
        except subprocess.TimeoutExpired as exc:
            probe["rc"] = "timeout"
            probe["output"] = (exc.output or b"").decode("utf-8", "replace") + "\n(timed out after %d s)" % timeout
    finally:
        if registry is not None:
            registry.kill()
            registry.wait()
        shutil.rmtree(work, ignore_errors=True)
    for line in probe["output"].splitlines():
        if PROBE_RUN_MARK in line:
            probe["run_line"] = re.sub(r"^#\d+\s+[\d.]+\s+", "", line.strip())
            break
    return probe


# ---------------------------------------------------------------- evidence


def read_config(daemon, runtime_param):
    """buildkitd's effective settings, each with its source, from its argv and the --config TOML."""
    location = daemon.get("exec_start") or ["", 0, ""]
    written = "%s:%d" % (location[0], location[1]) if location[0] else ""
    # The unit's ExecStart location is quoted only when it is what runs (or would run).
    if daemon["origin"] and daemon["origin"][0] == "cmdline" and daemon.get("unit_argv") != daemon["argv"]:
        written = ""
    argv, origin = daemon["argv"], (*daemon["origin"], written) if daemon["origin"] else ("cmdline", "none")
    config = bc.config_setting(argv, origin)
    toml_text = read_or_none(config["value"])
    eff = bc.effective(argv, origin, config["value"], toml_text)
    eff.update(config=config, config_exists=toml_text is not None)
    eff["runtime_path"] = resolve_runtime(runtime_param or eff["runtime"]["value"], daemon["path"])
    return eff


def ask_daemon(daemon, eff, systemd):
    """Where buildkitd listens, which buildctl reaches it, and its `debug workers -v` answer; the socket path."""
    socket = find_socket(daemon, systemd)
    socket_path, addr_source = bc.unix_socket(eff["addr"]["value"], socket.get("listen", []))
    daemon.update(socket=socket, addr="unix://" + socket_path if socket_path else "", addr_source=addr_source)
    exe_dir = os.path.dirname(daemon["exe"]) if daemon["exe"] and not daemon["exe"].startswith("/proc/") else ""
    sibling = os.path.join(exe_dir, "buildctl") if exe_dir else ""
    daemon["buildctl"] = sibling if sibling and os.access(sibling, os.X_OK) else which("buildctl", daemon["path"])
    if daemon["exe"]:
        daemon["version"] = run([daemon["exe"], "--version"])[1]
    answer, out = ask_workers(daemon["buildctl"], socket_path)
    daemon["workers_rc"], daemon["workers"] = answer, out
    if answer is None:
        daemon["not_asked"] = out
    return socket_path


def discover(p, evidence, systemd):
    """Evidence from the running system (doctor): effective configuration, daemon, requirements, probe."""
    daemon = find_daemon(p["unit"], systemd)
    evidence.update(
        daemon=daemon,
        inotify=inotify_usage(os.geteuid()),
        buildkit_root=bc.DEFAULTS["root"],
        snapshotter=bc.DEFAULTS["snapshotter"],
    )
    if not daemon["argv"] and not daemon["exe"]:
        return daemon, {}  # no BuildKit here: the host's own checks only
    eff = read_config(daemon, p["runtime"])
    socket_path = ask_daemon(daemon, eff, systemd)
    evidence.update(
        effective=eff,
        # Symlinks resolved; a root not made yet lands on the mount of its nearest parent all the same.
        buildkit_root=os.path.realpath(eff["root"]["value"]),
        snapshotter=eff["snapshotter"]["value"],
        runtime_version="",  # stays empty when the runtime is missing or silent: check_runtime says which
    )
    if eff["runtime_path"]:
        rc, out = run([eff["runtime_path"], "--version"])
        evidence["runtime_version"] = out if rc == 0 else ""
    needs = p["release"].get("host_requirement_details") or [
        {"name": n} for n in (p["release"].get("host_requirements") or {})
    ]
    if needs:
        evidence["host_tools"] = dict({n["name"]: which(n["name"], daemon["path"]) for n in needs}, PATH=daemon["path"])
    if p["journal"] and systemd:
        socket = daemon["socket"]
        units = ["-u", daemon["unit"]] + (["-u", socket["unit"]] if socket.get("unit") else [])
        evidence["journal"] = run(["journalctl", "--no-pager", "-n", "300", *units])[1]
    if p["probe"] and daemon["workers_rc"] != 0:
        evidence["probe"] = {
            "ran": False,
            "skipped": "buildkitd does not answer (see the daemon finding)",
            "command": "",
        }
    elif p["probe"]:
        copy_mode = (p["release"].get("dockerfile_copy") or {}).get("mode", "fileop")
        evidence["probe"] = run_probe(
            daemon["buildctl"],
            socket_path,
            find_busybox(p["busybox"]),
            copy_mode,
            p["copy_helper"],
            p["probe_timeout"],
            p["release"].get("buildctl_frontend_opt") or "--opt",
        )
    return daemon, eff


def main(params):
    """The module's result (facts, findings; ``changed`` always False) for ``params`` validated against
    ARGUMENT_SPEC (types converted, defaults filled, ``path`` options expanded)."""
    p = dict(params)
    p["release"] = p["release"] or {}
    mountinfo = read("/proc/self/mountinfo")
    table = mounts(mountinfo)
    pid1 = read("/proc/1/comm").strip()
    systemd = os.path.isdir("/run/systemd/system") and pid1 == "systemd"
    evidence = {
        "pid1": pid1,
        "proc1_status": read("/proc/1/status"),
        "apparmor": read("/proc/1/attr/current").rstrip("\x00\n"),
        "mountinfo": mountinfo,
    }
    installed = ""
    eff = {}
    if p["discover"]:
        daemon, eff = discover(p, evidence, systemd)
        installed = version_word(daemon.get("version") or "")
    else:
        evidence.update(
            buildkit_root=existing(p["buildkit_root"]),
            snapshotter=p["snapshotter"]
            or configured_snapshotter(p["config_file"], os.path.join(p["unit_dir"], "buildkit.service")),
        )
        runtime = p["runtime"] and (shutil.which(p["runtime"]) or "")
        if runtime:
            rc, out = run_stdout([runtime, "--version"])
            evidence["runtime_version"] = out if rc == 0 else ""
        if p["journal"]:
            evidence["journal"] = run_stdout(
                ["journalctl", "--no-pager", "-n", "300", "-u", "buildkit.service", "-u", "buildkit.socket"]
            )[1]
    findings = [f.as_dict() for f in diagnose(evidence, p["release"] or None, p["runtime_release"] or None)]
    link = os.path.join(p["bin_dir"], "buildkitd")
    if not installed and os.path.islink(link):
        # bkprov's layout: <root>/<version>/bin/buildkitd
        installed = os.path.basename(os.path.dirname(os.path.dirname(os.readlink(link))))
    runc_text = runc_version(evidence.get("runtime_version") or "")[0]
    return dict(
        changed=False,
        pid1=pid1,
        systemd=systemd,
        cgroup=cgroup_layout(table)[0],
        root_fstype=mount_of(evidence["buildkit_root"], table)[1],
        findings=findings,
        problems=[f for f in findings if f["status"] == "problem"],
        installed_version=installed,
        socket_unit=os.path.exists(os.path.join(p["unit_dir"], "buildkit.socket")),
        units=unit_states() if systemd else {},
        user_id=os.geteuid(),
        runtime_release_tag=("v" + runc_text.lstrip("v")) if runc_text else "",
        effective=eff,
        build_output=(evidence.get("probe") or {}).get("run_line", ""),
    )


def piped(params):
    """Entry of the piped path (plugin_utils/piped.py): ``params`` were validated on the controller with
    the ``path`` options as plain strings, since a ``~`` or ``$VAR`` in them means the host's; expanded
    here as AnsibleModule's ``path`` type expands them."""
    params = dict(params)
    for name, option in ARGUMENT_SPEC.items():
        if option.get("type") == "path" and params.get(name):
            params[name] = os.path.expanduser(os.path.expandvars(params[name]))
    return main(params)
