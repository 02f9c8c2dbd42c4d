"""The VM's boot pieces made on the controller: initrd, kernel, QEMU command, SSH options.

The real boot of these pieces is in tests/integration/test_vm.py; here each piece is read back
as the kernel, QEMU or ssh would read it.
"""

from __future__ import annotations

import lzma
import os
import socket
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from bkprov.errors import BkprovError
from bkprov.targets import vm, vm_image

KERNEL = "6.1.0-test-amd64"
MODULES_DEP = """\
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko \
kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko \
kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/crypto/crc32c_generic.ko:
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/drivers/firmware/qemu_fw_cfg.ko:
kernel/fs/overlayfs/overlay.ko:
"""


def fake_rootfs(root: Path, modules_dep: str = MODULES_DEP) -> Path:
    modules = root / "lib/modules" / KERNEL
    modules.mkdir(parents=True)
    (modules / "modules.dep").write_text(modules_dep)
    for line in modules_dep.replace("\\\n", " ").splitlines():
        path = modules / line.split(":")[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"module {path.name}".encode())
    (root / "bin").mkdir()
    (root / "bin/busybox").write_bytes(b"\x7fELF busybox")
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\nbkprov:x:1000:1001::/home/bkprov:/bin/bash\n")
    return root


def read_newc(data: bytes) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    """name -> (mode, content, (rdev major, minor)), read as the kernel reads a 'newc' cpio archive."""
    entries: dict[str, tuple[int, bytes, tuple[int, int]]] = {}
    offset = 0
    while True:
        assert data[offset : offset + 6] == b"070701", f"bad magic at {offset}"
        fields = [int(data[offset + 6 + 8 * i : offset + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rdev, namesize = fields[1], fields[6], (fields[9], fields[10]), fields[11]
        name_start = offset + 110
        name = data[name_start : name_start + namesize - 1].decode()
        content_start = name_start + namesize + (-(110 + namesize) % 4)
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, data[content_start : content_start + size], rdev)
        offset = content_start + size + (-size % 4)


def test_initrd_holds_busybox_the_modules_in_load_order_and_an_init_for_this_disk(tmp_path):
    rootfs = fake_rootfs(tmp_path / "rootfs")
    out = tmp_path / "initrd.cpio"
    vm_image.make_initrd(rootfs, KERNEL, out)
    entries = read_newc(out.read_bytes())

    mode, content, _ = entries["init"]
    assert stat.S_ISREG(mode) and mode & 0o111 and content.startswith(b"#!/bin/busybox sh\n")
    assert entries["bin/busybox"][1] == b"\x7fELF busybox"
    mode, _, rdev = entries["dev/console"]
    assert stat.S_ISCHR(mode) and rdev == (5, 1)
    for directory in ("dev", "proc", "sys", "newroot"):
        assert stat.S_ISDIR(entries[directory][0])

    init = content.decode()
    loaded = init.split("for module in ", 1)[1].split("; do", 1)[0].split()
    assert entries[f"lib/modules/{loaded[0]}.ko"][1] == f"module {loaded[0]}.ko".encode()
    assert all(f"lib/modules/{name}.ko" in entries for name in loaded)
    assert "overlay" not in loaded  # loaded on demand by the kernel, not at boot
    # every module after what it needs
    for before, after in [("virtio", "virtio_pci"), ("virtio_ring", "virtio_blk"), ("failover", "net_failover"),
                          ("net_failover", "virtio_net"), ("jbd2", "ext4"), ("crc16", "ext4"), ("mbcache", "ext4"),
                          ("crc32c_generic", "ext4"), ("virtio_pci", "virtio_blk")]:  # fmt: skip
        assert loaded.index(before) < loaded.index(after), (before, after)
    assert len(loaded) == len(set(loaded))
    assert "virtio-rng" in loaded
    # the fixed address of QEMU's user network, the sudo user's UID:GID from the tree, fw_cfg's names
    assert "ip addr add 10.0.2.15/24 dev eth0" in init
    assert "/newroot/home/bkprov:1000:1001" in init
    assert "/sys/firmware/qemu_fw_cfg/by_name/opt/bkprov" in init
    assert init.rstrip().endswith("exec switch_root /newroot /sbin/init")


def test_initrd_refuses_a_kernel_without_a_module_the_boot_needs(tmp_path):
    dep = "\n".join(line for line in MODULES_DEP.replace("\\\n", " ").splitlines() if "ext4.ko:" not in line)
    rootfs = fake_rootfs(tmp_path / "rootfs", dep + "\n")
    with pytest.raises(BkprovError, match="no module ext4"):
        vm_image.make_initrd(rootfs, KERNEL, tmp_path / "initrd.cpio")
    assert not (tmp_path / "initrd.cpio").exists()


def test_initrd_refuses_compressed_modules(tmp_path):
    rootfs = fake_rootfs(tmp_path / "rootfs", MODULES_DEP.replace("ext4.ko", "ext4.ko.xz"))
    with pytest.raises(BkprovError, match=r"compressed \(ext4.ko.xz\)"):
        vm_image.make_initrd(rootfs, KERNEL, tmp_path / "initrd.cpio")


def test_the_kernel_elf_comes_out_of_the_bzimage_xz_stream(tmp_path):
    elf = b"\x7fELF" + b"\0" * 60 + b"Xen\x00" + b"kernel text" * 1000
    bzimage = tmp_path / "vmlinuz"
    bzimage.write_bytes(b"MZ setup code" + b"\0" * 500 + lzma.compress(elf, format=lzma.FORMAT_XZ) + b"trailer")
    vm_image.uncompressed_kernel(bzimage, tmp_path / "vmlinux")
    assert (tmp_path / "vmlinux").read_bytes() == elf


@pytest.mark.parametrize(
    ("payload", "message"),
    [(None, "holds no xz stream"), (b"\x7fELF without the note", "does not hold an ELF kernel with a PVH entry point")],
)
def test_a_kernel_without_a_pvh_elf_is_refused(tmp_path, payload, message):
    bzimage = tmp_path / "vmlinuz"
    bzimage.write_bytes(b"MZ" + (lzma.compress(payload, format=lzma.FORMAT_XZ) if payload else b"gzip only"))
    with pytest.raises(BkprovError, match=message):
        vm_image.uncompressed_kernel(bzimage, tmp_path / "vmlinux")


@pytest.fixture
def cache(monkeypatch):
    # short, like ~/.cache/bkprov: the shared master's socket path must fit in 107 bytes
    with tempfile.TemporaryDirectory(prefix="bk") as short:
        monkeypatch.setenv("BKPROV_CACHE", short)
        yield Path(short)


def machine(name: str = "vm1") -> vm.VmTarget:
    directory = vm.vms_dir() / name
    directory.mkdir(parents=True)
    vm.make_keys(name, directory)
    return vm.VmTarget(name, "v0.10.6", 40222, "tcg", 0)


def test_each_vm_has_its_own_host_key_pinned_under_an_alias(cache):
    first, second = machine("vm1"), machine("vm2")
    for target in (first, second):
        alias, kind, key = (target.directory / "known_hosts").read_text().split()
        public = (target.directory / "ssh_host_ed25519_key.pub").read_text().split()
        assert (alias, kind, key) == (f"bkprov-vm-{target.name}", public[0], public[1])
        fingerprint = subprocess.run(
            ["ssh-keygen", "-F", alias, "-f", str(target.directory / "known_hosts")], capture_output=True, text=True
        )
        assert fingerprint.returncode == 0 and key in fingerprint.stdout
    assert (first.directory / "known_hosts").read_text() != (second.directory / "known_hosts").read_text()
    options = " ".join(first.ssh_options())
    assert "StrictHostKeyChecking=yes" in options and f"HostKeyAlias=bkprov-vm-{first.name}" in options
    assert f"UserKnownHostsFile={first.directory / 'known_hosts'}" in options


def test_qemu_gets_the_keys_through_fw_cfg_and_no_default_devices(cache):
    target = machine()
    image = vm_image.VmImage(Path("/img/base.qcow2"), Path("/img/vmlinux"), Path("/img/initrd.cpio"))
    argv = vm.qemu_argv(target.name, target.directory, image, "tcg", "2048", 40222, cgroup_v1=True)
    assert argv[0] == vm.QEMU and "-nodefaults" in argv
    assert argv[argv.index("-kernel") + 1] == "/img/vmlinux" and argv[argv.index("-initrd") + 1] == "/img/initrd.cpio"
    assert argv[argv.index("-append") + 1].endswith(" systemd.unified_cgroup_hierarchy=0")
    assert argv[argv.index("-cpu") + 1] == vm.TCG_CPU
    fw_cfg = dict(argv[i + 1].removeprefix("name=").split(",file=") for i, a in enumerate(argv) if a == "-fw_cfg")
    assert sorted(fw_cfg) == sorted(f"opt/bkprov/{name}" for name in vm_image.FW_CFG_FILES)
    for name, path in fw_cfg.items():
        assert Path(path).is_file(), name
    assert Path(fw_cfg["opt/bkprov/authorized_keys"]).read_text() == (target.directory / "id_ed25519.pub").read_text()
    assert "PRIVATE KEY" in Path(fw_cfg["opt/bkprov/ssh_host_ed25519_key"]).read_text()
    assert "hostfwd=tcp:127.0.0.1:40222-:22" in argv[argv.index("-netdev") + 1]
    kvm = vm.qemu_argv(target.name, target.directory, image, "kvm", "2048", 40222, cgroup_v1=False)
    assert kvm[kvm.index("-cpu") + 1] == "host" and "systemd.unified_cgroup_hierarchy" not in " ".join(kvm)


def test_ansible_shares_bkprovs_ssh_master_and_pinned_key(cache):
    target = machine()
    hostvars = vm.inventory(target)["all"]["hosts"]["vm1"]
    common = hostvars["ansible_ssh_common_args"].split()
    control = next(arg.split("=", 1)[1] for arg in common if arg.startswith("ControlPath="))
    assert control == vm.control_path(target) and control.startswith(str(cache)) and control.endswith("-%r")
    assert "-C" not in hostvars["ansible_ssh_args"].split() and "ControlMaster=auto" in hostvars["ansible_ssh_args"]
    assert "StrictHostKeyChecking=yes" in common
    # the same master for bkprov's own commands
    assert f"ControlPath={control}" in target.ssh_argv(["true"])


def test_no_shared_master_where_the_socket_path_would_be_too_long(tmp_path, monkeypatch):
    monkeypatch.setenv("BKPROV_CACHE", str(tmp_path / ("long" * 20)))
    target = machine()
    assert vm.control_path(target) is None
    assert not any(arg.startswith("ControlPath=") for arg in target.ssh_options())


def serve_once(reply: bytes | None) -> int:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer() -> None:
        conn, _ = server.accept()
        if reply:
            conn.sendall(reply)
        conn.close()
        server.close()

    threading.Thread(target=answer, daemon=True).start()
    return server.getsockname()[1]


def test_readiness_is_sshds_banner_not_an_open_port():
    assert vm.sshd_banner(serve_once(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n"))
    assert not vm.sshd_banner(serve_once(None))  # QEMU's forward accepts, then the guest refuses
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    assert not vm.sshd_banner(port)


def test_each_recipe_keeps_its_disk_and_only_the_most_recently_used_stay(cache):
    images = vm_image.images_dir()
    for age, recipe in enumerate(["recent", "older", "oldest"]):  # other bkprov versions' disks
        (images / recipe).mkdir(parents=True)
        (images / recipe / "image.json").write_text("{}")
        os.utime(images / recipe / "image.json", (1e9 - age, 1e9 - age))
    (images / "unfinished").mkdir()  # a build that stopped before its image.json
    legacy = images / "base.qcow2"  # a bkprov from before per-recipe directories: left to it
    legacy.write_bytes(b"qcow2")
    current = vm_image.image_dir()
    current.mkdir()
    (current / "image.json").write_text("{}")
    assert current.name == vm_image.RECIPE

    vm_image.prune_images(keep=3)
    assert sorted(p.name for p in images.iterdir()) == sorted(["base.qcow2", "older", "recent", vm_image.RECIPE])
    vm_image.prune_images(keep=1)
    assert sorted(p.name for p in images.iterdir()) == sorted(["base.qcow2", vm_image.RECIPE])
