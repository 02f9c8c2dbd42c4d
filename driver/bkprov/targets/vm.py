"""The VM target: QEMU with the bkprov VM disk, reached over SSH on a 127.0.0.1 port forward.

KVM is used only where it really works: /dev/kvm can exist while a Debian kernel dies in
KVM with "emulation failure", so a short boot probe decides (cached per host kernel and
guest kernel), with software emulation (TCG) as the fallback. The guest's user-mode network
is restricted: it reaches nothing outside; only the SSH forward comes in.

Under TCG every guest instruction is emulated, so the machine is kept minimal (no default
devices, no bootloader: vm_image.py has the kernel, initrd and disk side) and SSH is made to
cost one handshake: bkprov waits for sshd's banner (a plain TCP read, every 0.1 s), then opens
one SSH master connection that its own commands and Ansible share (ControlPath), so Ansible's
first task does not pay another key exchange in the emulated guest. Each VM's host key is made
on the controller and pinned (known_hosts with a HostKeyAlias), so bkprov's SSH checks it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

from bkprov.errors import EXIT_USAGE, BkprovError
from bkprov.paths import state_dir
from bkprov.targets.base import Inventory, Target
from bkprov.targets.vm_image import FW_CFG_DIR, FW_CFG_FILES, SUDO_USER, VmImage, ensure_vm_image, run_tool

Log = Callable[[str], None]
QEMU = "qemu-system-x86_64"
BOOT_TIMEOUT = 240.0
POLL = 0.1  # seconds between looks at sshd's banner while the guest boots
# The guest kernel's command line: what the boot can skip in a throwaway test VM, each of which is
# emulated work under TCG: CPU vulnerability mitigations, crypto self-tests, audit, AppArmor (nothing
# in the guest loads profiles), probing for more serial ports and a PS/2 mouse. Timekeeping stays
# the kernel's own (no tsc=reliable): under TCG the TSC can be unstable, and the kernel must be free
# to fall back to the HPET. The console stays (errors only) for the tail bkprov shows when a boot fails.
CMDLINE = "console=ttyS0 quiet mitigations=off cryptomgr.notests audit=0 apparmor=0 8250.nr_uarts=1 i8042.noaux"
# TCG's CPU model: QEMU's baseline x86-64 (SSE2, no AVX, no ERMS), which every Debian and Go binary
# runs on. Emulating more makes the guest slower, not faster: with `max`, glibc and the kernel copy
# memory with `rep movsb` (ERMS), emulated byte by byte, and OpenSSL takes AVX2 paths. Measured on
# a fresh VM: 39 MB through SSH in 5 s with qemu64, 12 s with max; a whole provision about 5 % faster
# than max without ERMS. Two vCPUs: one took 100 s instead of 70 (MTTCG runs them on two host threads).
TCG_CPU = "qemu64"
# Options for every SSH bkprov makes to a VM. curve25519 first: OpenSSH 9's default key exchange
# (sntrup761x25519) costs the emulated guest more for nothing a loopback forward needs.
SSH_OPTIONS = [
    "-o",
    "LogLevel=ERROR",
    "-o",
    "BatchMode=yes",
    "-o",
    "KexAlgorithms=curve25519-sha256,curve25519-sha256@libssh.org,sntrup761x25519-sha512@openssh.com",
    # A guest that stopped answering (a wedged emulated kernel) ends the connection, and with it the
    # Ansible task, within two minutes instead of never.
    "-o",
    "ServerAliveInterval=15",
    "-o",
    "ServerAliveCountMax=8",
]
CONNECT_OPTIONS = ["-o", "ConnectTimeout=30"]
CONTROL_PERSIST = "10m"  # the shared SSH master outlives bkprov's run this long after its last use
# A socket path has at most 107 bytes; ssh adds 17 while it makes the socket, %r up to 16 (our users: root, bkprov).
SOCKET_PATH_MAX = 107 - 17 - 16


@dataclass
class VmTarget(Target):
    """A QEMU VM bkprov made; its state lives in <cache>/.bkprov/vms/NAME/vm.json."""

    kind: ClassVar[str] = "vm"
    name: str
    version: str
    port: int
    accel: str
    pid: int

    @property
    def directory(self) -> Path:
        return vms_dir() / self.name

    @property
    def key(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def console(self) -> Path:
        return self.directory / "console.log"

    @property
    def host_key_alias(self) -> str:
        return f"bkprov-vm-{self.name}"

    def ssh_options(self) -> list[str]:
        """How any SSH client reaches this VM: its pinned host key and the shared master connection."""
        known_hosts = self.directory / "known_hosts"
        if known_hosts.is_file():
            checks = [
                "StrictHostKeyChecking=yes",
                f"UserKnownHostsFile={known_hosts}",
                f"HostKeyAlias={self.host_key_alias}",
            ]
        else:  # a VM made before host keys were pinned
            checks = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"]
        options = [*SSH_OPTIONS, *(arg for check in checks for arg in ("-o", check))]
        path = control_path(self)
        if path is not None:
            options += ["-o", f"ControlPath={path}"]
        return options

    @property
    def running(self) -> bool:
        try:
            return "qemu" in Path(f"/proc/{self.pid}/cmdline").read_text()
        except OSError:
            return False

    @property
    def status(self) -> str:
        return "running" if self.running else "stopped"

    @property
    def detail(self) -> str:
        return f"{self.accel}, ssh 127.0.0.1:{self.port}"

    def inventory(self) -> Inventory:
        return inventory(self)

    def exec(self, command: list[str]) -> int:
        if not self.running:
            raise BkprovError(
                f"VM {self.name} is stopped; `bkprov destroy {self.name}` and provision again", EXIT_USAGE
            )
        return self.ssh(command).returncode

    def start(self) -> None:
        # QEMU state is not kept across a stop: a stopped VM is made again, not restarted.
        if not self.running:
            raise BkprovError(
                f"VM {self.name} is stopped; `bkprov destroy {self.name}` and provision again", EXIT_USAGE
            )

    def capture(self, command: list[str], timeout: float) -> tuple[int, str, str] | None:
        if not self.running:
            return None
        try:
            done = self.ssh(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        if done.returncode == 255:  # ssh itself failed: bkprov has no answer, the caller takes another way
            return None
        return done.returncode, done.stdout, done.stderr

    def destroy(self) -> None:
        destroy(self.name)

    def ssh_argv(self, command: list[str], user: str = "root") -> list[str]:
        remote = " ".join(shlex.quote(part) for part in command)  # ssh hands one string to the remote shell
        return [
            "ssh",
            *self.ssh_options(),
            *CONNECT_OPTIONS,
            "-o",
            "ControlMaster=no",
            "-i",
            str(self.key),
            "-p",
            str(self.port),
            f"{user}@127.0.0.1",
            "--",
            remote,
        ]

    def ssh(self, command: list[str], user: str = "root", **kwargs: object) -> subprocess.CompletedProcess:
        """Run a command over SSH: through the shared master when it is up (no new key exchange)."""
        if user == "root":
            self.open_master()
        return subprocess.run(self.ssh_argv(command, user), check=False, **kwargs)  # type: ignore[call-overload]

    def open_master(self) -> bool:
        """Make sure the shared SSH master connection is up; False when it cannot be made now.

        The master runs in the background (ControlPersist) with no pipe of ours: a caller reading
        our output must not wait for it.
        """
        path = control_path(self)
        if path is None:
            return False
        check = ["ssh", *self.ssh_options(), "-O", "check", "-p", str(self.port), "root@127.0.0.1"]
        if subprocess.run(check, capture_output=True, check=False).returncode == 0:
            return True
        argv = ["ssh", *self.ssh_options(), *CONNECT_OPTIONS, "-o", "ControlMaster=auto"]
        argv += ["-o", f"ControlPersist={CONTROL_PERSIST}", "-i", str(self.key), "-p", str(self.port)]
        argv += ["root@127.0.0.1", "true"]
        opened = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
        )
        return opened.returncode == 0


def vms_dir() -> Path:
    path = state_dir() / "vms"
    path.mkdir(parents=True, exist_ok=True)
    return path


def get(name: str) -> VmTarget | None:
    meta = vms_dir() / name / "vm.json"
    if not meta.is_file():
        return None
    return VmTarget(**json.loads(meta.read_text()))


def list_targets() -> list[VmTarget]:
    return [vm for vm in (get(p.name) for p in sorted(vms_dir().iterdir())) if vm is not None]


def control_path(vm: VmTarget) -> str | None:
    """The shared master's socket, per VM and remote user (%r); None where the path would be too long."""
    token = hashlib.sha256(f"{vm.name}:{vm.port}".encode()).hexdigest()[:12]
    path = state_dir() / "ssh" / f"{token}-%r"
    if len(str(path)) - len("%r") > SOCKET_PATH_MAX:
        return None
    path.parent.mkdir(mode=0o700, exist_ok=True)
    return str(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def probe_kvm(image: VmImage, log: Log) -> str:
    """'kvm' if a guest kernel really boots under KVM here, else 'tcg'. Cached per kernel pair."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    cache = state_dir() / "kvm-probe.json"
    key = f"{platform.release()}|{image.kernel.stat().st_size}"
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    if key not in known:
        log("probing whether KVM really boots a guest kernel here (a few seconds, once)")
        verdict, reason = _boot_probe(image)
        if verdict == "tcg":
            log(f"KVM does not boot a guest here ({reason}); using software emulation (TCG)")
        known[key] = verdict
        cache.write_text(json.dumps(known))
    return str(known[key])


def _boot_probe(image: VmImage, seconds: float = 20) -> tuple[str, str]:
    """Boot the guest kernel under KVM for a few seconds: ('kvm', '') or ('tcg', why not)."""
    argv = [QEMU, "-accel", "kvm", "-cpu", "host", "-m", "512", "-display", "none", "-no-reboot"]
    argv += ["-serial", "stdio", "-kernel", str(image.kernel), "-initrd", str(image.initrd)]
    argv += ["-append", "console=ttyS0 panic=-1 quiet"]
    log_file = state_dir() / "kvm-probe.log"
    with log_file.open("wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
    verdict = "tcg"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        output = log_file.read_text(errors="replace")
        if "emulation failure" in output or "KVM internal error" in output:
            break
        if "initramfs" in output.lower() or "Run /init" in output or "Freeing unused" in output:
            verdict = "kvm"
            break
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    if verdict == "kvm":
        return verdict, ""
    output = log_file.read_text(errors="replace")
    if "emulation failure" in output:
        return verdict, "KVM internal error: emulation failure"
    if proc.returncode not in (None, -9) and output.strip():
        return verdict, f"QEMU stopped: {output.strip().splitlines()[-1]}"
    return verdict, f"no boot within {seconds:.0f} s"


def check_tools() -> None:
    """Refuse (exit 2) when a tool the VM target needs is missing."""
    for tool in (QEMU, "qemu-img", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise BkprovError(
                f"{tool} is not installed; on Debian: apt-get install qemu-system-x86 qemu-utils openssh-client",
                EXIT_USAGE,
            )


def create(
    name: str, version: str, log: Log, accel: str = "auto", memory: str = "2048", cgroup_v1: bool = False
) -> VmTarget:
    """Boot a new VM on a copy-on-write overlay of the base disk; wait until SSH answers.

    ``cgroup_v1`` boots the guest with the legacy cgroup hierarchy, for BuildKit whose bundled
    runc predates working cgroup v2 (the catalog's ``cgroup_v2: false``).
    """
    check_tools()
    image = ensure_vm_image(log)
    if accel == "auto":
        accel = probe_kvm(image, log)
    directory = vms_dir() / name
    if directory.exists():
        raise BkprovError(f"a VM named {name} exists; `bkprov destroy {name}` first", exit_code=EXIT_USAGE)
    directory.mkdir(parents=True)
    try:
        overlay = ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.disk), "-F", "qcow2"]
        run_tool([*overlay, str(directory / "disk.qcow2")], "qemu-img create")
        make_keys(name, directory)
        port = free_port()
        log(f"booting VM {name} ({accel.upper()}, cgroup {'v1' if cgroup_v1 else 'v2'}, SSH on 127.0.0.1:{port})")
        started = subprocess.run(
            qemu_argv(name, directory, image, accel, memory, port, cgroup_v1),
            capture_output=True,
            text=True,
            check=False,
        )
        if started.returncode != 0:
            raise BkprovError(f"QEMU did not start: {started.stderr.strip()}")
        pid = int((directory / "qemu.pid").read_text().strip())
        vm = VmTarget(name, version, port, accel, pid)
        (directory / "vm.json").write_text(json.dumps(asdict(vm)))
        wait_for_ssh(vm)
        return vm
    except BaseException:
        destroy(name)
        raise


def make_keys(name: str, directory: Path) -> None:
    """The VM's client key and its SSH host key, made here and passed in through fw_cfg; the host key pinned.

    Made on the controller: generating host keys in the emulated guest took seconds of its boot.
    """
    keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
    run_tool([*keygen, "-C", f"bkprov-{name}", "-f", str(directory / "id_ed25519")], "ssh-keygen")
    host_key = directory / "ssh_host_ed25519_key"
    run_tool([*keygen, "-C", f"bkprov-vm-{name}", "-f", str(host_key)], "ssh-keygen")
    public = host_key.with_name(host_key.name + ".pub").read_text().split()
    (directory / "known_hosts").write_text(f"bkprov-vm-{name} {public[0]} {public[1]}\n")


def qemu_argv(
    name: str, directory: Path, image: VmImage, accel: str, memory: str, port: int, cgroup_v1: bool
) -> list[str]:
    """QEMU for one VM: its overlay disk, the SSH forward on 127.0.0.1 only, a network that reaches nothing.

    No default devices (VGA and its option ROM, CD-ROM, floppy, parallel port: time in the firmware
    and the kernel under emulation); virtio-rng so the guest never waits for entropy; the overlay
    is throwaway, so its writes are never flushed to the host disk (cache=unsafe).
    """
    cmdline = CMDLINE + (" systemd.unified_cgroup_hierarchy=0" if cgroup_v1 else "")
    argv = [QEMU, "-name", name, "-nodefaults", "-no-user-config", "-machine", "q35"]
    if accel == "kvm":
        argv += ["-accel", "kvm", "-cpu", "host"]
    else:
        argv += ["-accel", "tcg,thread=multi", "-cpu", TCG_CPU]
    argv += ["-smp", "2", "-m", memory, "-kernel", str(image.kernel), "-initrd", str(image.initrd)]
    argv += ["-append", cmdline]
    argv += ["-drive", f"file={directory / 'disk.qcow2'},if=virtio,format=qcow2,cache=unsafe"]
    argv += [
        "-netdev",
        f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device",
        "virtio-net-pci,netdev=n0",
        "-device",
        "virtio-rng-pci",
    ]
    sources = {"authorized_keys": "id_ed25519.pub"}
    for entry in FW_CFG_FILES:
        argv += ["-fw_cfg", f"name={FW_CFG_DIR}/{entry},file={directory / sources.get(entry, entry)}"]
    argv += ["-serial", f"file:{directory / 'console.log'}", "-display", "none"]
    return [*argv, "-daemonize", "-pidfile", str(directory / "qemu.pid")]


def sshd_banner(port: int) -> bool:
    """True when sshd in the guest greets a TCP connection (no key exchange: nothing to emulate)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.settimeout(2)
            return sock.recv(8).startswith(b"SSH-")
    except OSError:  # QEMU's forward answers before the guest does, then closes or times out
        return False


def wait_for_ssh(vm: VmTarget, timeout: float = BOOT_TIMEOUT) -> None:
    """Wait for sshd's banner, then open the shared master connection (the only key exchange)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not vm.running:
            raise BkprovError(f"QEMU for {vm.name} exited while booting. Console tail:\n{console_tail(vm)}")
        if sshd_banner(vm.port):
            if control_path(vm) is None:
                if vm.ssh(["true"], capture_output=True, timeout=60).returncode == 0:
                    return
            elif vm.open_master():
                return
        time.sleep(POLL)
    raise BkprovError(
        f"VM {vm.name} did not answer SSH within {timeout:.0f} s ({vm.accel}). Console tail:\n{console_tail(vm)}"
    )


def console_tail(vm: VmTarget, lines: int = 25) -> str:
    try:
        return "\n".join(vm.console.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no console output)"


def destroy(name: str) -> None:
    vm = get(name)
    if vm is not None:
        path = control_path(vm)
        if path is not None:  # the shared master ends with its socket, not later when QEMU's forward closes
            for user in ("root", SUDO_USER):
                subprocess.run(
                    ["ssh", "-o", f"ControlPath={path}", "-O", "exit", "-p", str(vm.port), f"{user}@127.0.0.1"],
                    capture_output=True,
                    check=False,
                )
    if vm is not None and vm.running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(vm.pid, signal.SIGTERM)
        for _ in range(50):
            if not vm.running:
                break
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            if vm.running:
                os.kill(vm.pid, signal.SIGKILL)
    shutil.rmtree(vms_dir() / name, ignore_errors=True)


def inventory(vm: VmTarget, user: str = "root") -> dict:
    """SSH to the forwarded port; as the sudo user with become, or as root without.

    The SSH options carry the pinned host key and the shared master's ControlPath: Ansible's
    connections ride on the master bkprov opened while the VM booted. No compression (Ansible's
    default -C): what travels is already compressed, and inflating is emulated work in the guest.
    As root, the inventory says so (``bkprov_connect_uid``): the playbooks need not ask (`id -u`, ~0.6 s
    under emulation).
    """
    hostvars: dict[str, object] = {
        "ansible_host": "127.0.0.1",
        "ansible_port": vm.port,
        "ansible_user": user,
        "ansible_ssh_private_key_file": str(vm.key),
        "ansible_ssh_args": f"-o ControlMaster=auto -o ControlPersist={CONTROL_PERSIST}",
        "ansible_ssh_common_args": " ".join(vm.ssh_options()),
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_become": user != "root",
    }
    if user == "root":
        hostvars["bkprov_connect_uid"] = 0
    return {"all": {"hosts": {vm.name: hostvars}}}


__all__ = ["SUDO_USER", "VmTarget", "create", "destroy", "get", "inventory", "list_targets", "probe_kvm"]
