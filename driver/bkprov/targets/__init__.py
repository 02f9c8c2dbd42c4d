"""Targets: where bkprov runs its playbooks, and the one place that picks an implementation.

- ``resolve(selection)``: the target a command's options name (never changes it);
- ``find(name)``: a target bkprov made (container or VM), by name;
- ``all_targets()``: every target bkprov made;
- ``make(spec, log)``: make a container or VM target, or take the existing one of that name.

Implementations: container.py and vm.py (made by bkprov; their images in container_image.py
and vm_image.py), hosts.py (an inventory, an SSH host, any Docker container).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from bkprov.errors import EXIT_USAGE, BkprovError
from bkprov.targets.base import Inventory, Target

Log = Callable[[str], None]
KINDS = ("container", "vm")  # what bkprov makes
# Docker's rule for container names, also safe as a VM directory and a hostname (63 characters at most).
NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")

__all__ = ["KINDS", "NAME", "Inventory", "Selection", "Spec", "Target", "all_targets", "find", "make", "resolve"]


@dataclass(frozen=True)
class Selection:
    """Which target a command means; at most one of these is set."""

    name: str | None = None  # a target bkprov made
    inventory: str | None = None  # the hosts of an Ansible inventory
    host: str | None = None  # USER@HOST[:PORT] over SSH
    container: str | None = None  # any Docker container

    @property
    def given(self) -> bool:
        return any((self.name, self.inventory, self.host, self.container))


@dataclass(frozen=True)
class Spec:
    """A target for bkprov to make (or reuse when one of that name exists)."""

    kind: str  # container | vm
    name: str
    version: str  # BuildKit version it is labelled with ("" for none)
    image: str | None = None  # container: base image (default: bkprov's, built locally)
    network: str = "none"  # container network mode
    accel: str = "auto"  # vm: kvm | tcg | auto (probe)


def resolve(selection: Selection) -> Target:
    """The target ``selection`` names; a clear error (exit 2) when there is none. Never changes it."""
    from bkprov.targets import hosts

    if selection.inventory:
        return hosts.InventoryHosts.from_path(selection.inventory)
    if selection.host:
        return hosts.SshHost.parse(selection.host)
    if selection.container:
        return hosts.DockerHost.lookup(selection.container)
    if selection.name:
        return find(selection.name)
    raise BkprovError("name a target, or pass --inventory PATH, --host USER@HOST or --container NAME", EXIT_USAGE)


def find(name: str) -> Target:
    """The bkprov target called ``name`` (VM or container), as it is."""
    from bkprov.targets import container, vm

    if not NAME.fullmatch(name):  # never a path: "../x" must not reach the VM directory
        raise BkprovError(f"no bkprov target named {name}; `bkprov list` shows them", exit_code=EXIT_USAGE)
    machine = vm.get(name)
    if machine is not None:
        return machine
    found = container.get(container.client(), name)
    if found is None or not container.ours(found):
        raise BkprovError(f"no bkprov target named {name}; `bkprov list` shows them", exit_code=EXIT_USAGE)
    return container.describe(found)


def _docker_available() -> bool:
    from bkprov.targets import container

    try:
        container.client()
        return True
    except BkprovError:
        return False


def all_targets(require_docker: bool = False) -> list[Target]:
    from bkprov.targets import container, vm

    found: list[Target] = list(vm.list_targets())
    if require_docker or _docker_available():
        found += container.list_targets(container.client())
    return sorted(found, key=lambda t: t.name)


def check(spec: Spec) -> None:
    """Refuse (exit 2) a target that cannot be made as asked, before anything is fetched or made."""
    from bkprov.targets import container, vm

    if not NAME.fullmatch(spec.name):
        raise BkprovError(f"--name {spec.name!r}: use letters, digits, '_', '.' and '-' (e.g. bkprov-dev)", EXIT_USAGE)
    if spec.kind == "vm":
        if vm.get(spec.name) is None:
            vm.check_tools()
        return
    container.check_spec(container.client(), spec.name, spec.image, spec.network)


def exists(spec: Spec) -> bool:
    """Whether bkprov already made the target ``spec`` names."""
    from bkprov.targets import container, vm

    if spec.kind == "vm":
        return vm.get(spec.name) is not None
    return container.existing_target(container.client(), spec.name) is not None


def make(spec: Spec, log: Log, wait: bool = True) -> Target:
    """Make the target ``spec`` describes, or take the existing bkprov target of that name (not started).

    ``wait=False``: a new container is returned while systemd boots (``start()`` waits for it).
    """
    check(spec)
    if spec.kind == "vm":
        return _make_vm(spec, log)
    return _make_container(spec, log, wait)


def _make_vm(spec: Spec, log: Log) -> Target:
    from bkprov import catalog, recorded
    from bkprov.targets import vm

    existing = vm.get(spec.name)
    if existing is not None:
        log(f"converging existing VM {spec.name}")
        return existing
    # A BuildKit whose runc predates cgroup v2 gets a cgroup v1 guest (reference §7.4).
    cgroup_v1 = bool(spec.version) and not catalog.get(spec.version).cgroup_v2
    recorded.forget("vm", spec.name)
    return vm.create(spec.name, spec.version, log, accel=spec.accel, cgroup_v1=cgroup_v1)


def _make_container(spec: Spec, log: Log, wait: bool) -> Target:
    from bkprov import recorded
    from bkprov.targets import container, container_image

    cli = container.client()
    existing = container.existing_target(cli, spec.name)
    if existing is not None:
        log(f"converging existing target {spec.name}")
        return container.describe(existing)
    image = spec.image or container_image.ensure_image(cli, log)
    log(f"creating container {spec.name} from {image}")
    recorded.forget("container", spec.name)
    made = container.create(cli, spec.name, image, spec.version, log, network=spec.network, wait=wait)
    return container.describe(made)
