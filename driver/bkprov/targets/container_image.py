"""The base OS image: Debian bookworm with systemd, built locally from Debian packages.

No container registry is needed: debootstrap makes a root filesystem, `docker import`
turns it into an image. The image is labelled with a hash of its recipe, so a changed
recipe is rebuilt and an unchanged one is reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
from ansible_collections.bkprov.buildkit.plugins.module_utils.artifacts import file_lock

from bkprov.errors import BkprovError
from bkprov.paths import state_dir

SUITE = "bookworm"
IMAGE = "bkprov/debian-systemd:bookworm"
# systemd as PID 1, python3 for Ansible, a static busybox for the verify role's built-in COPY
# helper image (BuildKit < v0.5.0), git (buildkitd v0.3.x refuses to start without it, later
# versions need it for git contexts: the catalog's host_requirements); nothing else (the
# target has no network). The list is part of RECIPE, so an image cached from an older list
# is rebuilt on next use rather than silently kept.
PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "procps",
    "iproute2",
    "ca-certificates",
    "busybox-static",
    "git",
]
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Units that spin or fail in a container (getty, udev, timers that download things).
MASKED_UNITS = [
    "getty.target",
    "console-getty.service",
    "systemd-udevd.service",
    "systemd-udev-trigger.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "systemd-remount-fs.service",
    "sys-kernel-config.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
]
# STOPSIGNAL is not an import change in Docker 20.10; the target sets stop_signal instead.
CHANGES = ['CMD ["/lib/systemd/systemd"]', "ENV container=docker"]
RECIPE = hashlib.sha256(repr((SUITE, PACKAGES, MASKED_UNITS, CHANGES, 1)).encode()).hexdigest()[:16]
LABEL = "dev.bkprov.image-recipe"

Log = Callable[[str], None]


def debootstrap(rootfs: Path, mirror: str, log: Log, extra_packages: tuple[str, ...] = ()) -> None:
    """Make a minimal Debian root filesystem with systemd (and ``extra_packages``) in ``rootfs``."""
    if shutil.which("debootstrap") is None:
        raise BkprovError("debootstrap is not installed; on Debian/Ubuntu: apt-get install debootstrap")
    if os.geteuid() != 0:
        raise BkprovError("building the base image needs root (debootstrap); run once as root or pass --image")
    log(f"debootstrap {SUITE} from {mirror} (a few minutes, once)")
    packages = ",".join([*PACKAGES, *extra_packages])
    cmd = ["debootstrap", "--variant=minbase", f"--include={packages}", SUITE, str(rootfs), mirror]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise BkprovError(
            f"debootstrap failed (exit {proc.returncode}); "
            f"set BKPROV_DEBIAN_MIRROR to a reachable Debian mirror.\n{tail}"
        )
    systemd_dir = rootfs / "etc/systemd/system"
    for unit in MASKED_UNITS:
        link = systemd_dir / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    (rootfs / "etc/machine-id").write_text("")  # systemd makes a fresh one per boot/container
    (rootfs / "etc/hostname").write_text("bkprov\n")
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def build_lock(name: str) -> Iterator[None]:
    """One image build at a time per machine (bkprov matrix, two terminals); later ones reuse it."""
    with file_lock(str(state_dir() / f".{name}.lock")):
        yield


def debian_mirror() -> str:
    return os.environ.get("BKPROV_DEBIAN_MIRROR", DEFAULT_MIRROR)


def ensure_image(client: docker.DockerClient, log: Log, rebuild: bool = False) -> str:
    """Return the base image's name, building it first if missing, stale or ``rebuild``."""
    with build_lock("container-image"):
        return _ensure_image(client, log, rebuild)


def _ensure_image(client: docker.DockerClient, log: Log, rebuild: bool) -> str:
    try:
        image = client.images.get(IMAGE)
        if not rebuild and image.labels.get(LABEL) == RECIPE:
            return IMAGE
    except docker.errors.ImageNotFound:
        pass
    with tempfile.TemporaryDirectory(prefix="bkprov-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        debootstrap(rootfs, debian_mirror(), log)
        archive = Path(tmp) / "rootfs.tar"
        log("importing the root filesystem into Docker")
        with tarfile.open(archive, "w") as tar:
            for entry in sorted(os.listdir(rootfs)):
                tar.add(rootfs / entry, arcname=entry)
        changes = [*CHANGES, f"LABEL {LABEL}={RECIPE}"]
        client.api.import_image_from_file(
            str(archive), repository=IMAGE.split(":")[0], tag=IMAGE.split(":")[1], changes=changes
        )
    log(f"built {IMAGE}")
    return IMAGE
