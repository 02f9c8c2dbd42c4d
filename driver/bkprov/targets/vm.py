"""The VM target: QEMU with the bkprov VM disk, reached over SSH on a 127.0.0.1 port forward.

KVM is used only where it really works: /dev/kvm can exist while a Debian kernel dies in
KVM with "emulation failure", so a short boot probe decides (cached per host kernel and
guest kernel), with software emulation (TCG) as the fallback. The guest's user-mode network
is restricted: it reaches nothing outside; only the SSH forward comes in.
"""

from __future__ import annotations

import contextlib
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
from bkprov.targets.vm_image import FW_CFG_KEY, SUDO_USER, VmImage, ensure_vm_image, run_tool

Log = Callable[[str], None]
QEMU = "qemu-system-x86_64"
BOOT_TIMEOUT = 240.0
SSH_OPTIONS = [
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=5",
]


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

    def destroy(self) -> None:
        destroy(self.name)

    def ssh(self, command: list[str], user: str = "root", **kwargs: object) -> subprocess.CompletedProcess:
        remote = " ".join(shlex.quote(part) for part in command)  # ssh hands one string to the remote shell
        argv = ["ssh", *SSH_OPTIONS, "-i", str(self.key), "-p", str(self.port), f"{user}@127.0.0.1", "--", remote]
        return subprocess.run(argv, check=False, **kwargs)  # type: ignore[call-overload]


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
        run_tool(
            [
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-b",
                str(image.disk),
                "-F",
                "qcow2",
                str(directory / "disk.qcow2"),
            ],
            "qemu-img create",
        )
        key = directory / "id_ed25519"
        run_tool(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"bkprov-{name}", "-f", str(key)], "ssh-keygen")
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


def qemu_argv(
    name: str, directory: Path, image: VmImage, accel: str, memory: str, port: int, cgroup_v1: bool
) -> list[str]:
    """QEMU for one VM: its overlay disk, the SSH forward on 127.0.0.1 only, a network that reaches nothing."""
    cmdline = "root=/dev/vda rw console=ttyS0 net.ifnames=0" + (
        " systemd.unified_cgroup_hierarchy=0" if cgroup_v1 else ""
    )
    argv = [QEMU, "-name", name, "-machine", "q35", "-accel", accel, "-cpu", "host" if accel == "kvm" else "max"]
    argv += ["-smp", "2", "-m", memory, "-kernel", str(image.kernel), "-initrd", str(image.initrd)]
    argv += ["-append", cmdline, "-drive", f"file={directory / 'disk.qcow2'},if=virtio,format=qcow2"]
    argv += [
        "-netdev",
        f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device",
        "virtio-net-pci,netdev=n0",
    ]
    argv += ["-fw_cfg", f"name={FW_CFG_KEY},file={directory / 'id_ed25519.pub'}"]
    argv += ["-serial", f"file:{directory / 'console.log'}", "-display", "none"]
    return [*argv, "-daemonize", "-pidfile", str(directory / "qemu.pid")]


def wait_for_ssh(vm: VmTarget, timeout: float = BOOT_TIMEOUT) -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not vm.running:
            raise BkprovError(f"QEMU for {vm.name} exited while booting. Console tail:\n{console_tail(vm)}")
        if vm.ssh(["true"], capture_output=True, timeout=30).returncode == 0:
            return
        time.sleep(2)
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
    """SSH to the forwarded port; as the sudo user with become, or as root without."""
    return {
        "all": {
            "hosts": {
                vm.name: {
                    "ansible_host": "127.0.0.1",
                    "ansible_port": vm.port,
                    "ansible_user": user,
                    "ansible_ssh_private_key_file": str(vm.key),
                    "ansible_ssh_common_args": " ".join(SSH_OPTIONS[:-4]),
                    "ansible_python_interpreter": "/usr/bin/python3",
                    "ansible_become": user != "root",
                }
            }
        }
    }


__all__ = ["SUDO_USER", "VmTarget", "create", "destroy", "get", "inventory", "list_targets", "probe_kvm"]
