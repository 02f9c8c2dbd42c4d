"""The container target: systemd as PID 1 in a Docker container, made with the Docker SDK.

/var/lib/buildkit lives on a named volume (never on the overlay root: nested overlayfs
is a known cause of "invalid argument"), cgroupns is the host's and /sys/fs/cgroup is
mounted read-write so systemd can run. The container has no network of its own.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import docker
import docker.errors
from docker.models.containers import Container

from bkprov.errors import EXIT_USAGE, BkprovError
from bkprov.targets.base import Inventory, Target

KIND_LABEL = "dev.bkprov.target"
VERSION_LABEL = "dev.bkprov.version"
CAPS_LABEL = "dev.bkprov.capabilities"
# Capability numbers Docker 20.10 knows by name (CAP_CHECKPOINT_RESTORE, BPF and PERFMON it rejects).
CAPABILITIES = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
]

Log = Callable[[str], None]
BUILTIN_NETWORKS = ("none", "host", "bridge", "default")


@dataclass
class ContainerTarget(Target):
    """A systemd container bkprov made (labelled ``dev.bkprov.target=container``)."""

    kind: ClassVar[str] = "container"
    name: str
    version: str
    status: str
    capabilities: str  # "privileged" or "explicit (without …)"

    @property
    def volume(self) -> str:
        return volume_name(self.name)

    @property
    def detail(self) -> str:
        return self.capabilities

    def inventory(self) -> Inventory:
        return inventory(self.name)

    def exec(self, command: list[str]) -> int:
        if self.status != "running":
            raise BkprovError(
                f"container {self.name} is {self.status}; `bkprov provision` or `docker start {self.name}` starts it",
                EXIT_USAGE,
            )
        return exec_streaming(client(), self.name, command)

    def capture(self, command: list[str], timeout: float) -> tuple[int, str, str] | None:
        return exec_capture(client(), self.name, command) if self.status == "running" else None

    def start(self) -> None:
        container = get(client(), self.name)
        if container is None:
            raise BkprovError(f"container {self.name} is gone; `bkprov list` shows the targets", EXIT_USAGE)
        ensure_running(container)
        self.status = "running"

    def destroy(self) -> None:
        destroy(client(), self.name)


def volume_name(name: str) -> str:
    return f"{name}-buildkit"


def bounding_set_missing() -> list[str]:
    """Capabilities Docker knows that this machine's bounding set lacks (privileged fails on them)."""
    with open("/proc/self/status", encoding="utf-8") as handle:
        bounding = next(int(line.split()[1], 16) for line in handle if line.startswith("CapBnd:"))
    return [name for bit, name in enumerate(CAPABILITIES) if not bounding & (1 << bit)]


def client() -> docker.DockerClient:
    try:
        cli = docker.from_env()
        cli.ping()
        return cli
    except docker.errors.DockerException as exc:
        raise BkprovError(
            f"cannot reach the Docker daemon ({exc}). Start it (e.g. `systemctl start docker`, or "
            "`dockerd --iptables=false --bridge=none &`) or set DOCKER_HOST.",
            EXIT_USAGE,
        ) from exc


def get(cli: docker.DockerClient, name: str) -> Container | None:
    try:
        return cli.containers.get(name)
    except docker.errors.NotFound:
        return None


def existing_target(cli: docker.DockerClient, name: str) -> Container | None:
    """bkprov's container called ``name``, or None; refuses a name that something else uses."""
    container = get(cli, name)
    if container is not None and not ours(container):
        raise BkprovError(
            f"a container named {name} exists and is not a bkprov target; pick another --name", exit_code=2
        )
    return container


def check_spec(cli: docker.DockerClient, name: str, image: str | None, network: str) -> None:
    """Refuse (exit 2) a container target that cannot be made as asked: a foreign name, no such image or network."""
    existing_target(cli, name)
    if image:
        try:
            cli.images.get(image)
        except docker.errors.ImageNotFound as exc:
            raise BkprovError(f"--image {image}: no such image here; `docker images` lists them", EXIT_USAGE) from exc
    if network not in BUILTIN_NETWORKS and not network.startswith("container:"):
        try:
            cli.networks.get(network)
        except docker.errors.NotFound as exc:
            raise BkprovError(
                f"--network {network}: no such Docker network; `docker network ls` lists them (default: none)",
                EXIT_USAGE,
            ) from exc


def describe(container: Container) -> ContainerTarget:
    labels = container.labels
    return ContainerTarget(container.name, labels.get(VERSION_LABEL, ""), container.status, labels.get(CAPS_LABEL, ""))


def ours(container: Container) -> bool:
    return container.labels.get(KIND_LABEL) == "container"


def list_targets(cli: docker.DockerClient) -> list[ContainerTarget]:
    found = cli.containers.list(all=True, filters={"label": f"{KIND_LABEL}=container"})
    return sorted((describe(c) for c in found), key=lambda t: t.name)


def _run(
    cli: docker.DockerClient, image: str, name: str, version: str, extra: dict, caps: str, network: str
) -> Container:
    return cli.containers.run(
        image,
        name=name,
        hostname=name,
        detach=True,
        labels={KIND_LABEL: "container", VERSION_LABEL: version, CAPS_LABEL: caps},
        cgroupns="host",
        stop_signal="SIGRTMIN+3",  # systemd's clean shutdown
        # A terminal gives systemd a /dev/console: without one its boot messages, and the last
        # words of a PID 1 that dies at boot, go nowhere and `docker logs` is empty.
        tty=True,
        network_mode=network,
        tmpfs={"/run": "rw,mode=755", "/run/lock": "rw", "/tmp": "rw,exec,mode=1777"},
        volumes={
            "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
            volume_name(name): {"bind": "/var/lib/buildkit", "mode": "rw"},
        },
        **extra,
    )


def create(
    cli: docker.DockerClient, name: str, image: str, version: str, log: Log, network: str = "none", wait: bool = True
) -> Container:
    """Start a new systemd container; try --privileged, fall back to explicit capabilities.

    A Docker engine that refused --privileged once is remembered (by its ID), so later targets skip the
    failing attempt. With ``wait=False`` the container is returned while systemd still boots (the caller
    overlaps the boot with its own start-up and waits with ``wait_for_systemd`` before relying on it).
    """
    engine = cli.info().get("ID", "")
    container = None
    if engine not in privileged_refused():
        try:
            container = _run(cli, image, name, version, {"privileged": True}, "privileged", network)
        except docker.errors.APIError as exc:
            if "apply caps" not in str(exc) and "operation not permitted" not in str(exc):
                raise BkprovError(f"docker could not start {name}: {exc.explanation or exc}") from exc
            leftover = get(cli, name)
            if leftover is not None:
                leftover.remove(force=True)
            remember_privileged_refused(engine)
            log(f"--privileged refused ({exc.explanation}); using explicit capabilities from now on")
    if container is None:
        missing = bounding_set_missing()
        caps = f"explicit (without {', '.join(missing) or 'nothing'})"
        log(f"using all capabilities but {', '.join(missing) or 'none'} (this Docker engine refuses --privileged)")
        extra = {
            "cap_add": ["ALL"],
            "cap_drop": missing,
            "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
        }
        try:
            container = _run(cli, image, name, version, extra, caps, network)
        except docker.errors.APIError as exc2:
            raise BkprovError(f"docker could not start {name}: {exc2.explanation or exc2}") from exc2
    if wait:
        wait_for_systemd(container)
    return container


def privileged_refused() -> set[str]:
    """IDs of the Docker engines that refused --privileged here."""
    from bkprov.paths import state_dir

    path = state_dir() / "docker-privileged-refused"
    return set(path.read_text().split()) if path.is_file() else set()


def remember_privileged_refused(engine: str) -> None:
    from bkprov.paths import state_dir

    with open(state_dir() / "docker-privileged-refused", "a", encoding="utf-8") as handle:
        handle.write(engine + "\n")


def wait_for_systemd(container: Container, timeout: float = 60) -> None:
    """Wait until systemd reports running or degraded; say why when it dies or stalls."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        container.reload()
        if container.status != "running":
            raise boot_failure(container)
        try:
            _, out = container.exec_run(["systemctl", "is-system-running"])
        except docker.errors.APIError:  # died between the reload and the exec
            container.reload()
            if container.status != "running":
                raise boot_failure(container) from None
            raise
        state = out.decode(errors="replace").strip()
        if state in ("running", "degraded"):
            return
        time.sleep(0.3)
    raise BkprovError(
        f"systemd in {container.name} did not come up within {timeout:.0f} s (state: {state or 'unknown'})\n"
        f"systemd's console (`docker logs {container.name}`):\n{_indent(console_tail(container))}\n"
        f"{inotify_use().verdict()}"
    )


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def console_tail(container: Container, lines: int = 20) -> str:
    """The last lines systemd wrote to its console (the container's terminal), without colours."""
    try:
        raw = container.logs(tail=lines).decode(errors="replace")
    except docker.errors.APIError as exc:
        return f"(could not read the logs: {exc.explanation or exc})"
    text = ANSI_ESCAPE.sub("", raw).replace("\r", "")
    return "\n".join(line for line in text.splitlines() if line.strip())


def _indent(text: str) -> str:
    return textwrap.indent(text or "(empty)", "  ")


def boot_failure(container: Container) -> BkprovError:
    """Why a container exited while systemd was booting: its exit code, Docker's State.Error,
    systemd's console and whether the host has inotify instances left for another systemd."""
    state = container.attrs.get("State", {})
    console = console_tail(container)
    # The line that explains it is systemd's last complaint, e.g. "Failed to allocate manager
    # object: Too many open files" (no inotify instance left).
    complaints = [line.strip() for line in console.splitlines() if "fail" in line.lower() or "error" in line.lower()]
    with_reason = [line for line in complaints if ": " in line] or complaints
    headline = f": {with_reason[-1]}" if with_reason else ""
    oom = ", killed for lack of memory" if state.get("OOMKilled") else ""
    inotify = inotify_use()
    short = " (the host has no inotify instances left for it, see below)" if inotify.shortfall(1) else ""
    return BkprovError(
        f"container {container.name} exited while booting systemd (exit code {state.get('ExitCode', '?')}{oom})"
        f"{headline}{short}\n"
        f"Docker's State.Error: {state.get('Error') or '(empty)'}\n"
        f"systemd's console (last lines of `docker logs {container.name}`):\n{_indent(console)}\n"
        f"{inotify.verdict()}"
    )


# A booted bkprov target (systemd 252, with or without buildkitd) holds 7 inotify instances:
# systemd 5, systemd-logind 1 (charged to root) and dbus-daemon 1 (its own uid); about 25
# watches. Budgeted at 7 and 32, all charged to root (the uid systemd runs as on the host).
INOTIFY_PER_TARGET = 7
INOTIFY_WATCHES_PER_TARGET = 32
INOTIFY_SYSCTL = Path("/proc/sys/fs/inotify")


@dataclass(frozen=True)
class InotifyUse:
    """Root's inotify instances and watches now, against the host's per-user limits.

    Containers run as root on the host (no user namespace), so every systemd target is
    charged to uid 0; an instance count near ``fs.inotify.max_user_instances`` makes the
    next systemd die at boot with "Failed to allocate manager object: Too many open files".
    """

    instances: int
    watches: int
    max_instances: int
    max_watches: int
    unreadable: int = 0  # root processes whose descriptors we could not read (not root ourselves)

    def room(self) -> int:
        """How many more systemd targets fit under both limits."""
        return max(
            0,
            min(
                (self.max_instances - self.instances) // INOTIFY_PER_TARGET,
                (self.max_watches - self.watches) // INOTIFY_WATCHES_PER_TARGET,
            ),
        )

    def shortfall(self, targets: int) -> str:
        """What to raise so ``targets`` more systemd targets fit; "" when they do."""
        advice = []
        for knob, used, limit, each in (
            ("max_user_instances", self.instances, self.max_instances, INOTIFY_PER_TARGET),
            ("max_user_watches", self.watches, self.max_watches, INOTIFY_WATCHES_PER_TARGET),
        ):
            needed = used + targets * each
            if needed > limit:
                value = 512 if each == INOTIFY_PER_TARGET else 65536
                while value < 2 * needed:
                    value *= 2
                advice.append(
                    f"fs.inotify.{knob} is {limit}: root holds {used} and {targets} systemd target(s) need "
                    f"about {targets * each} more. Raise it: `sysctl -w fs.inotify.{knob}={value}` "
                    f"(to keep it: `echo fs.inotify.{knob}={value} > /etc/sysctl.d/60-bkprov-inotify.conf`)"
                )
        return "\n".join(advice)

    def verdict(self) -> str:
        """One line for a boot failure: is the host out of inotify instances for systemd?"""
        counted = f" (counted without {self.unreadable} unreadable processes)" if self.unreadable else ""
        usage = (
            f"inotify: root holds {self.instances} of fs.inotify.max_user_instances={self.max_instances} "
            f"and {self.watches} of max_user_watches={self.max_watches}{counted}"
        )
        lack = self.shortfall(1)
        if lack:
            return f"{usage}; too few for another systemd container: that is why it died.\n{lack}"
        return f"{usage}; room for {self.room()} more systemd containers, so not the cause."


def inotify_use() -> InotifyUse:
    """Count the inotify instances and watches root's processes hold (from /proc)."""
    instances = watches = unreadable = 0
    for pid in (entry for entry in os.listdir("/proc") if entry.isdigit()):
        try:
            with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
                euid = next(line.split()[2] for line in handle if line.startswith("Uid:"))
            if euid != "0":
                continue
            fds = os.listdir(f"/proc/{pid}/fd")
        except PermissionError:
            unreadable += 1
            continue
        except (OSError, StopIteration):  # the process ended meanwhile
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:inotify":
                    continue
                instances += 1
                with open(f"/proc/{pid}/fdinfo/{fd}", encoding="utf-8") as info:
                    watches += sum(1 for line in info if line.startswith("inotify wd:"))
            except OSError:
                continue
    return InotifyUse(
        instances,
        watches,
        int((INOTIFY_SYSCTL / "max_user_instances").read_text()),
        int((INOTIFY_SYSCTL / "max_user_watches").read_text()),
        unreadable,
    )


def destroy(cli: docker.DockerClient, name: str) -> None:
    container = get(cli, name)
    if container is not None:
        container.remove(force=True, v=True)
    with contextlib.suppress(docker.errors.NotFound):
        cli.volumes.get(volume_name(name)).remove(force=True)


def inventory(name: str, interpreter: str = "/usr/bin/python3", root: bool = True) -> dict:
    """Ansible reaches the container through the docker connection, as root (no sudo in the image).

    ``root``: the connection is known to be root (bkprov's image), so the playbooks need not ask
    (``bkprov_connect_uid``; see playbooks/vars/become.yml).
    """
    hostvars = {
        "ansible_connection": "community.docker.docker",
        "ansible_host": name,
        "ansible_python_interpreter": interpreter,
        "ansible_become": False,
    }
    if root:
        hostvars["bkprov_connect_uid"] = 0
    return {"all": {"hosts": {name: hostvars}}}


def exec_streaming(cli: docker.DockerClient, name: str, command: list[str]) -> int:
    """`docker exec` with the output passed through as it comes; the command's exit code."""
    exec_id = cli.api.exec_create(name, command, stdout=True, stderr=True)["Id"]
    for stdout, stderr in cli.api.exec_start(exec_id, stream=True, demux=True):
        for data, stream in ((stdout, sys.stdout), (stderr, sys.stderr)):
            if data:
                stream.buffer.write(data)
                stream.flush()
    return int(cli.api.exec_inspect(exec_id)["ExitCode"] or 0)


def exec_capture(cli: docker.DockerClient, name: str, command: list[str]) -> tuple[int, str, str]:
    """`docker exec` as root with the output collected: (exit code, stdout, stderr)."""
    exit_code, (stdout, stderr) = cli.containers.get(name).exec_run(command, user="root", demux=True)
    return int(exit_code or 0), (stdout or b"").decode(errors="replace"), (stderr or b"").decode(errors="replace")


def default_name(version: str) -> str:
    return "bkprov-" + version.replace(".", "-")


def ensure_running(container: Container, wait: bool = True) -> None:
    """Start a stopped target and (unless told not to) wait for systemd."""
    container.reload()
    if container.status != "running":
        container.start()
    if wait:
        wait_for_systemd(container)
