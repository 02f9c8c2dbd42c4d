"""The VM disk: the container image's Debian base (its PACKAGES, git included) plus a kernel,
openssh-server and sudo. RECIPE includes the container image's, so a disk built from an older
package list (before git) is rebuilt on next use.

Booted by QEMU with the kernel and initrd given directly (no bootloader): the disk is a bare
ext4 filesystem made from the debootstrap tree with `mkfs.ext4 -d` (no loop mounts), kept as
a qcow2 base that every VM gets a copy-on-write overlay of. SSH keys are not baked in: each VM
passes its own public key through QEMU's fw_cfg, installed at boot by a small unit.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bkprov.errors import BkprovError
from bkprov.paths import state_dir
from bkprov.targets import container_image

VM_PACKAGES = ("linux-image-amd64", "openssh-server", "sudo", "kmod")
SUDO_USER = "bkprov"  # a non-root user with sudo, for "existing host" use of a VM
DISK_SIZE = "4G"
FW_CFG_KEY = "opt/bkprov/authorized_keys"
KEY_UNIT = f"""[Unit]
Description=Install the SSH key bkprov passed through QEMU fw_cfg, and fresh host keys
Before=ssh.service
ConditionVirtualization=vm

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'modprobe qemu_fw_cfg; ssh-keygen -A; \\
  k=/sys/firmware/qemu_fw_cfg/by_name/{FW_CFG_KEY}/raw; [ -r "$k" ] || exit 0; \\
  install -d -m 700 /root/.ssh && install -m 600 "$k" /root/.ssh/authorized_keys; \\
  install -d -m 700 -o {SUDO_USER} -g {SUDO_USER} /home/{SUDO_USER}/.ssh; \\
  install -m 600 -o {SUDO_USER} -g {SUDO_USER} "$k" /home/{SUDO_USER}/.ssh/authorized_keys'

[Install]
WantedBy=multi-user.target
"""
NETWORK = "[Match]\nName=eth0 en*\n\n[Network]\nDHCP=yes\n"
RECIPE = hashlib.sha256(
    repr((container_image.RECIPE, VM_PACKAGES, KEY_UNIT, NETWORK, DISK_SIZE, 1)).encode()
).hexdigest()[:16]


@dataclass
class VmImage:
    disk: Path
    kernel: Path
    initrd: Path


def image_dir() -> Path:
    return state_dir() / "vm-image"


def run_tool(cmd: list[str], what: str) -> None:
    """Run a tool; its failure becomes a BkprovError naming it, with the end of its output."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-10:])
        raise BkprovError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd[:3])} …\n{tail}")


def customise(rootfs: Path) -> None:
    """Networking, fstab, the key unit and the sudo user, inside the debootstrap tree."""
    etc = rootfs / "etc"
    (etc / "fstab").write_text("/dev/vda / ext4 rw,relatime 0 1\n")
    (etc / "hosts").write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n127.0.1.1 bkprov\n")
    (etc / "systemd/network/10-dhcp.network").write_text(NETWORK)
    (etc / "systemd/system/bkprov-authorized-keys.service").write_text(KEY_UNIT)
    wants = {
        "multi-user.target.wants": ["systemd-networkd.service", "bkprov-authorized-keys.service"],
        "sockets.target.wants": ["systemd-networkd.socket"],
    }
    for target, units in wants.items():
        (etc / "systemd/system" / target).mkdir(parents=True, exist_ok=True)
        for unit in units:
            link = etc / "systemd/system" / target / unit
            link.unlink(missing_ok=True)
            source = "/etc/systemd/system" if unit.startswith("bkprov-") else "/lib/systemd/system"
            link.symlink_to(f"{source}/{unit}")
    for key in (etc / "ssh").glob("ssh_host_*"):
        key.unlink()  # every VM makes its own at first boot
    run_tool(["chroot", str(rootfs), "useradd", "--create-home", "--shell", "/bin/bash", SUDO_USER], "useradd")
    (etc / "sudoers.d" / SUDO_USER).write_text(f"{SUDO_USER} ALL=(ALL) NOPASSWD:ALL\n")
    (etc / "sudoers.d" / SUDO_USER).chmod(0o440)


def ensure_vm_image(log: container_image.Log, rebuild: bool = False) -> VmImage:
    """Return the VM base disk, kernel and initrd, building them first if missing or stale."""
    with container_image.build_lock("vm-image"):
        return _ensure_vm_image(log, rebuild)


def _ensure_vm_image(log: container_image.Log, rebuild: bool) -> VmImage:
    directory = image_dir()
    meta = directory / "image.json"
    image = VmImage(directory / "base.qcow2", directory / "vmlinuz", directory / "initrd.img")
    if not rebuild and meta.is_file() and json.loads(meta.read_text()).get("recipe") == RECIPE:
        return image
    for tool in ("mkfs.ext4", "qemu-img"):
        if shutil.which(tool) is None:
            raise BkprovError(f"{tool} is not installed; on Debian: apt-get install e2fsprogs qemu-utils")
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bkprov-vm-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        container_image.debootstrap(rootfs, container_image.debian_mirror(), log, VM_PACKAGES)
        customise(rootfs)
        kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
        initrds = sorted((rootfs / "boot").glob("initrd.img-*"))
        if not kernels or not initrds:
            raise BkprovError("the VM root filesystem has no kernel or initrd in /boot (linux-image-amd64 failed?)")
        # New files under temporary names, renamed at the end: running VMs keep the old inodes.
        staged = {
            image.kernel: directory / ".vmlinuz.new",
            image.initrd: directory / ".initrd.img.new",
            image.disk: directory / ".base.qcow2.new",
        }
        shutil.copyfile(kernels[-1], staged[image.kernel])
        shutil.copyfile(initrds[-1], staged[image.initrd])
        raw = Path(tmp) / "disk.raw"
        log(f"making the {DISK_SIZE} ext4 disk")
        run_tool(["mkfs.ext4", "-q", "-F", "-L", "bkprov-root", "-d", str(rootfs), str(raw), DISK_SIZE], "mkfs.ext4")
        run_tool(["qemu-img", "convert", "-O", "qcow2", str(raw), str(staged[image.disk])], "qemu-img convert")
        for final, new in staged.items():
            new.replace(final)
    meta.write_text(json.dumps({"recipe": RECIPE, "kernel": kernels[-1].name}))
    log(f"built the VM disk {image.disk}")
    return image
