"""Targets bkprov makes and removes: systemd containers (Docker) and VMs (QEMU).

``find(name)`` gives one interface over both for the commands that take a target name.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from bkprov.errors import BkprovError


@dataclass
class Target:
    kind: str  # container | vm
    name: str
    version: str
    status: str
    detail: str  # capabilities (container) or accel and SSH port (vm)

    def inventory(self) -> dict[str, Any]:
        if self.kind == "vm":
            from bkprov.targets import vm

            found = vm.get(self.name)
            assert found is not None
            return vm.inventory(found)
        from bkprov.targets import container

        return container.inventory(self.name)

    def exec(self, command: list[str]) -> int:
        if self.kind == "vm":
            from bkprov.targets import vm

            found = vm.get(self.name)
            assert found is not None
            return found.ssh(command).returncode
        from bkprov.targets import container

        cli = container.client()
        exec_id = cli.api.exec_create(self.name, command, stdout=True, stderr=True)["Id"]
        for stdout, stderr in cli.api.exec_start(exec_id, stream=True, demux=True):
            for data, stream in ((stdout, sys.stdout), (stderr, sys.stderr)):
                if data:
                    stream.buffer.write(data)
                    stream.flush()
        return int(cli.api.exec_inspect(exec_id)["ExitCode"] or 0)

    def destroy(self) -> None:
        if self.kind == "vm":
            from bkprov.targets import vm

            vm.destroy(self.name)
        else:
            from bkprov.targets import container

            container.destroy(container.client(), self.name)


def _docker_available() -> bool:
    try:
        from bkprov.targets import container

        container.client()
        return True
    except BkprovError:
        return False


def all_targets(require_docker: bool = False) -> list[Target]:
    from bkprov.targets import vm

    found = [Target("vm", v.name, v.version, v.status, f"{v.accel}, ssh 127.0.0.1:{v.port}") for v in vm.list_targets()]
    if require_docker or _docker_available():
        from bkprov.targets import container

        found += [
            Target("container", c.name, c.version, c.status, c.capabilities)
            for c in container.list_targets(container.client())
        ]
    return sorted(found, key=lambda t: t.name)


def find(name: str) -> Target:
    """The bkprov target called ``name``; a clear error if there is none."""
    from bkprov.targets import vm

    machine = vm.get(name)
    if machine is not None:
        return Target("vm", name, machine.version, machine.status, f"{machine.accel}, ssh 127.0.0.1:{machine.port}")
    from bkprov.targets import container

    cli = container.client()
    found = container.get(cli, name)
    if found is None or not container.ours(found):
        raise BkprovError(f"no bkprov target named {name}; `bkprov list` shows them", exit_code=2)
    container.ensure_running(found, wait=False)
    info = container.describe(found)
    return Target("container", name, info.version, info.status, info.capabilities)


def ssh_host_inventory(spec: str) -> dict[str, Any]:
    """Inventory for --host user@host[:port]: SSH as that user, become root unless it is root."""
    user, _, rest = spec.rpartition("@")
    host, _, port = rest.partition(":")
    if not host or (port and not port.isdigit()):
        raise BkprovError(f"--host {spec!r}: expected user@host[:port] (e.g. admin@build01:2222)", exit_code=2)
    hostvars: dict[str, Any] = {"ansible_host": host, "ansible_python_interpreter": "/usr/bin/python3"}
    if user:
        hostvars["ansible_user"] = user
    if port:
        hostvars["ansible_port"] = int(port)
    hostvars["ansible_become"] = user != "root"
    return {"all": {"hosts": {host: hostvars}}}
