"""The VM disk: the container image's Debian base (its PACKAGES, git included) plus a kernel,
openssh-server and sudo. RECIPE includes the container image's and everything below that shapes
the disk, so a disk built from an older recipe is rebuilt on next use.

Made for a fast boot under software emulation (TCG), where every instruction the guest runs is
emulated and the boot used to take a minute:

- the kernel is booted directly (no bootloader) as an uncompressed ELF through its PVH entry
  point, which skips the bzImage's in-guest decompression (xz of 60 MB: seconds under TCG);
- the initrd is bkprov's own: static busybox, the handful of modules the disk, network and
  fw_cfg need (Debian builds them as modules) and a short /init. Debian's initramfs-tools image
  is 36 MB that the kernel unpacks and then runs udev over every device;
- /init also does what used to be units in the booted system: it brings eth0 up with the
  address QEMU's user-mode network always gives (10.0.2.15), and installs the SSH keys each VM
  passes through QEMU's fw_cfg (its authorized key and its own host key, made on the controller:
  no host key generation in the guest, and the controller can pin it);
- systemd runs no generators and no unit the guest does not need (VM_MASKED_UNITS), the journal
  stays in memory, and sshd starts as soon as the root filesystem is there, without its config test.

The disk is a bare ext4 filesystem made from the debootstrap tree with `mkfs.ext4 -d` (no loop
mounts), kept as a qcow2 base that every VM gets a copy-on-write overlay of. Each recipe has its
own directory (vm-image/RECIPE), the KEEP_IMAGES most recently used are kept: two bkprov versions
sharing one cache (a checkout and an installed wheel) each keep their disk instead of rebuilding
the other's, minutes each time.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import shutil
import stat
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
KEEP_IMAGES = 3  # recipes whose disk stays in the cache (most recently used first)
# What each VM passes through QEMU's fw_cfg (names under opt/, at most 55 characters).
FW_CFG_DIR = "opt/bkprov"
FW_CFG_FILES = ("authorized_keys", "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub")
# QEMU's user-mode network gives the guest this address; its host side (the SSH forward) is 10.0.2.2.
GUEST_ADDRESS = "10.0.2.15/24"
GATEWAY = "10.0.2.2"
# Modules /init loads, in this order, after the ones each needs (modules.dep): the virtio disk,
# network and entropy source, ext4 (with crc32c, which ext4 asks the crypto API for at mount
# time) and fw_cfg. Everything else a build needs (overlay, netfilter) the kernel loads on demand.
INITRD_MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "virtio_rng", "crc32c_generic", "ext4", "qemu_fw_cfg")
# systemd's generators read fstab, crypttab, GPT partitions, SysV scripts, the kernel command line:
# nothing this disk uses, and each is a process to start under emulation.
MASK_GENERATORS = True
# On top of the container image's MASKED_UNITS: what a throwaway VM with a fixed network does not need.
VM_MASKED_UNITS = [
    "systemd-networkd.service",  # /init sets the fixed address
    "systemd-modules-load.service",  # /init loaded what is needed
    "modprobe@.service",
    "kmod-static-nodes.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount",
    "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount",
    "e2scrub_reap.service",
    "dpkg-db-backup.timer",
    "systemd-pstore.service",
    "systemd-random-seed.service",  # virtio-rng and the CPU's RDRAND seed the kernel
    "systemd-journal-flush.service",  # the journal stays in /run
    "systemd-firstboot.service",
    "systemd-machine-id-commit.service",
    "systemd-repart.service",
    "systemd-pcrphase.service",
    "systemd-pcrphase-sysinit.service",
    "systemd-update-utmp.service",
    "systemd-update-utmp-runlevel.service",
    "systemd-logind.service",  # no PAM module asks it for sessions (no libpam-systemd); it only started D-Bus
    # First boot after a package change (ConditionNeedsUpdate): the image never changes in place.
    "systemd-sysusers.service",
    "ldconfig.service",
    "systemd-hwdb-update.service",
    "systemd-journal-catalog-update.service",
    "systemd-update-done.service",
    "systemd-ask-password-console.path",
    "systemd-ask-password-wall.path",
]
JOURNALD_CONF = "[Journal]\nStorage=volatile\n"
# sshd: only the host key bkprov made; no `sshd -t` before each start (one more process under emulation);
# started as soon as the root filesystem is there, not after the rest of the boot (sysinit, basic.target):
# /init has set up the network and the keys, and bkprov's first commands need nothing the boot still does.
SSHD_CONF = "HostKey /etc/ssh/ssh_host_ed25519_key\n"
SSH_DROPIN = """[Unit]
DefaultDependencies=no
After=local-fs.target
Conflicts=shutdown.target
Before=shutdown.target

[Service]
ExecStartPre=
"""
INIT = """#!/bin/busybox sh
# bkprov's initramfs: drivers, the disk, the fixed network, the SSH keys from fw_cfg, then systemd.
/bin/busybox --install -s /bin
export PATH=/bin
echo "bkprov initramfs: loading drivers"
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for module in {modules}; do
    insmod "/lib/modules/$module.ko" || echo "bkprov initramfs: insmod $module failed"
done
tries=0
while [ ! -b /dev/vda ] && [ $tries -lt 100 ]; do sleep 0.1; tries=$((tries + 1)); done
if ! mount -t ext4 -o rw,relatime /dev/vda /newroot; then
    echo "bkprov initramfs: cannot mount /dev/vda as the root filesystem"
    exec sh
fi
ip link set lo up
ip addr add {address} dev eth0 && ip link set eth0 up && ip route add default via {gateway} \\
    || echo "bkprov initramfs: no network on eth0"
fw=/sys/firmware/qemu_fw_cfg/by_name/{fw_cfg_dir}
if [ -r "$fw/authorized_keys/raw" ]; then
    for entry in /newroot/root:0:0 /newroot/home/{user}:{owner}; do
        dir=${{entry%%:*}}/.ssh
        mkdir -p "$dir" && cat "$fw/authorized_keys/raw" > "$dir/authorized_keys"
        chmod 700 "$dir" && chmod 600 "$dir/authorized_keys" && chown -R "${{entry#*:}}" "$dir"
    done
fi
if [ -r "$fw/ssh_host_ed25519_key/raw" ]; then
    rm -f /newroot/etc/ssh/ssh_host_*
    (umask 077 && cat "$fw/ssh_host_ed25519_key/raw" > /newroot/etc/ssh/ssh_host_ed25519_key)
    cat "$fw/ssh_host_ed25519_key.pub/raw" > /newroot/etc/ssh/ssh_host_ed25519_key.pub
fi
umount /proc /sys
mount --move /dev /newroot/dev
echo "bkprov initramfs: starting systemd"
exec switch_root /newroot /sbin/init
"""
RECIPE = hashlib.sha256(
    repr(
        (
            container_image.RECIPE,
            VM_PACKAGES,
            DISK_SIZE,
            FW_CFG_DIR,
            GUEST_ADDRESS,
            INITRD_MODULES,
            MASK_GENERATORS,
            VM_MASKED_UNITS,
            JOURNALD_CONF,
            SSHD_CONF,
            SSH_DROPIN,
            INIT,
            2,
        )
    ).encode()
).hexdigest()[:16]


@dataclass
class VmImage:
    disk: Path
    kernel: Path
    initrd: Path


def images_dir() -> Path:
    return state_dir() / "vm-image"


def image_dir() -> Path:
    """This recipe's kernel, initrd and disk."""
    return images_dir() / RECIPE


def run_tool(cmd: list[str], what: str) -> None:
    """Run a tool; its failure becomes a BkprovError naming it, with the end of its output."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-10:])
        raise BkprovError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd[:3])} …\n{tail}")


def _mask(directory: Path, names: list[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        link = directory / name
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")


def customise(rootfs: Path) -> None:
    """fstab, masked units and generators, journald and sshd settings, the sudo user, inside the tree."""
    etc = rootfs / "etc"
    (etc / "fstab").write_text("/dev/vda / ext4 rw,relatime 0 1\n")
    (etc / "hosts").write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n127.0.1.1 bkprov\n")
    _mask(etc / "systemd/system", VM_MASKED_UNITS)
    if MASK_GENERATORS:
        generators = sorted(p.name for p in (rootfs / "lib/systemd/system-generators").iterdir())
        _mask(etc / "systemd/system-generators", generators)
    (etc / "systemd/journald.conf.d").mkdir(parents=True, exist_ok=True)
    (etc / "systemd/journald.conf.d/bkprov.conf").write_text(JOURNALD_CONF)
    (etc / "ssh/sshd_config.d/bkprov.conf").write_text(SSHD_CONF)
    (etc / "systemd/system/ssh.service.d").mkdir(parents=True, exist_ok=True)
    (etc / "systemd/system/ssh.service.d/bkprov.conf").write_text(SSH_DROPIN)
    for key in (etc / "ssh").glob("ssh_host_*"):
        key.unlink()  # every VM gets its own, made by the controller
    run_tool(["chroot", str(rootfs), "useradd", "--create-home", "--shell", "/bin/bash", SUDO_USER], "useradd")
    (etc / "sudoers.d" / SUDO_USER).write_text(f"{SUDO_USER} ALL=(ALL) NOPASSWD:ALL\n")
    (etc / "sudoers.d" / SUDO_USER).chmod(0o440)


def owner(rootfs: Path, user: str) -> str:
    """UID:GID of ``user`` in the tree."""
    for line in (rootfs / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return f"{fields[2]}:{fields[3]}"
    raise BkprovError(f"the VM root filesystem has no user {user}")


def module_order(modules_dir: Path, wanted: tuple[str, ...]) -> list[Path]:
    """The module files for ``wanted``, each after the modules it depends on (from modules.dep)."""
    deps: dict[str, list[str]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        module, _, needs = line.partition(":")
        deps[module] = needs.split()
    by_name = {Path(path).name.split(".ko")[0].replace("-", "_"): path for path in deps}
    order: list[str] = []

    def add(path: str) -> None:
        for dep in reversed(deps[path]):  # modules.dep lists the deepest dependency last
            add(dep)
        if path not in order:
            order.append(path)

    for name in wanted:
        if name not in by_name:
            raise BkprovError(f"the VM kernel has no module {name} (modules.dep in {modules_dir})")
        add(by_name[name])
    files = [modules_dir / path for path in order]
    compressed = [f.name for f in files if f.suffix != ".ko"]
    if compressed:
        raise BkprovError(f"the VM kernel's modules are compressed ({compressed[0]}); the initrd needs plain .ko")
    return files


def _cpio_entry(name: str, mode: int, data: bytes = b"", ino: int = 0, rdev: tuple[int, int] = (0, 0)) -> bytes:
    """One entry of a cpio archive in the 'newc' format the kernel unpacks."""
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
    header = b"070701" + b"".join(b"%08X" % field for field in fields)
    pad_name = b"\0" * (-(len(header) + len(encoded)) % 4)
    return header + encoded + pad_name + data + b"\0" * (-len(data) % 4)


def make_initrd(rootfs: Path, kernel_version: str, out: Path) -> None:
    """bkprov's initramfs (uncompressed cpio: nothing for the guest to decompress): busybox, modules, /init."""
    modules = module_order(rootfs / "lib/modules" / kernel_version, INITRD_MODULES)
    names = [m.name.split(".ko")[0] for m in modules]
    init = INIT.format(
        modules=" ".join(names),
        address=GUEST_ADDRESS,
        gateway=GATEWAY,
        fw_cfg_dir=FW_CFG_DIR,
        user=SUDO_USER,
        owner=owner(rootfs, SUDO_USER),
    )
    entries = [
        _cpio_entry(d, stat.S_IFDIR | 0o755) for d in ("bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules")
    ]
    entries.append(_cpio_entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
    entries.append(_cpio_entry("bin/busybox", stat.S_IFREG | 0o755, (rootfs / "bin/busybox").read_bytes()))
    entries.append(_cpio_entry("init", stat.S_IFREG | 0o755, init.encode()))
    entries += [_cpio_entry(f"lib/modules/{m.name}", stat.S_IFREG | 0o644, m.read_bytes()) for m in modules]
    entries = [entry[:6] + b"%08X" % (i + 1) + entry[14:] for i, entry in enumerate(entries)]  # inode numbers
    entries.append(_cpio_entry("TRAILER!!!", 0))
    out.write_bytes(b"".join(entries))


def uncompressed_kernel(bzimage: Path, out: Path) -> None:
    """The kernel as the ELF inside the bzImage: QEMU boots it through its PVH entry, nothing to decompress.

    Debian compresses its x86 kernels with xz; the ELF starts at the xz stream in the bzImage.
    """
    data = bzimage.read_bytes()
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise BkprovError(f"{bzimage.name} holds no xz stream; cannot take its ELF kernel out")
    elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
    if not elf.startswith(b"\x7fELF") or b"Xen\x00" not in elf:  # the PVH entry is a Xen ELF note
        raise BkprovError(f"{bzimage.name} does not hold an ELF kernel with a PVH entry point")
    out.write_bytes(elf)


def ensure_vm_image(log: container_image.Log, rebuild: bool = False) -> VmImage:
    """Return the VM base disk, kernel and initrd, building them first if missing or stale."""
    with container_image.build_lock("vm-image"):
        return _ensure_vm_image(log, rebuild)


def _ensure_vm_image(log: container_image.Log, rebuild: bool) -> VmImage:
    directory = image_dir()
    meta = directory / "image.json"
    image = VmImage(directory / "base.qcow2", directory / "vmlinux", directory / "initrd.cpio")
    if not rebuild and meta.is_file():
        os.utime(meta)  # the most recently used recipe (prune_images keeps those)
        return image
    for tool in ("mkfs.ext4", "qemu-img"):
        if shutil.which(tool) is None:
            raise BkprovError(f"{tool} is not installed; on Debian: apt-get install e2fsprogs qemu-utils")
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bkprov-vm-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        container_image.debootstrap(rootfs, container_image.debian_mirror(), log, VM_PACKAGES)
        kernel_name = build_from_rootfs(rootfs, image, Path(tmp), log)
    meta.write_text(json.dumps({"recipe": RECIPE, "kernel": kernel_name}))
    prune_images()
    log(f"built the VM disk {image.disk}")
    return image


def prune_images(keep: int = KEEP_IMAGES) -> None:
    """Remove the disks of all but the ``keep`` most recently used recipes (never this one's).

    Called under the build lock: a directory without image.json is a build that did not finish.
    Running VMs keep the files they opened; a stopped VM is made again, not restarted.
    """
    current = image_dir()
    built = sorted(
        (d for d in images_dir().iterdir() if (d / "image.json").is_file() and d != current),
        key=lambda d: (d / "image.json").stat().st_mtime,
        reverse=True,
    )
    unfinished = [d for d in images_dir().iterdir() if d.is_dir() and d != current and d not in built]
    for stale in [*built[keep - 1 :], *unfinished]:
        shutil.rmtree(stale, ignore_errors=True)


def build_from_rootfs(rootfs: Path, image: VmImage, scratch: Path, log: container_image.Log) -> str:
    """Customise the debootstrap tree and make the kernel, initrd and disk from it; the kernel's name."""
    customise(rootfs)
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise BkprovError("the VM root filesystem has no kernel in /boot (linux-image-amd64 failed?)")
    version = kernels[-1].name.removeprefix("vmlinuz-")
    # New files under temporary names, renamed at the end: running VMs keep the old inodes.
    staged = {path: path.with_name(f".{path.name}.new") for path in (image.kernel, image.initrd, image.disk)}
    uncompressed_kernel(kernels[-1], staged[image.kernel])
    make_initrd(rootfs, version, staged[image.initrd])
    for initrd in (rootfs / "boot").glob("initrd.img-*"):
        initrd.unlink()  # Debian's own, unused: 36 MB less on every disk
    raw = scratch / "disk.raw"
    log(f"making the {DISK_SIZE} ext4 disk")
    run_tool(["mkfs.ext4", "-q", "-F", "-L", "bkprov-root", "-d", str(rootfs), str(raw), DISK_SIZE], "mkfs.ext4")
    run_tool(["qemu-img", "convert", "-O", "qcow2", str(raw), str(staged[image.disk])], "qemu-img convert")
    for final, new in staged.items():
        os.replace(new, final)
    return kernels[-1].name
