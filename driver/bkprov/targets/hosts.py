"""Machines bkprov did not make: the hosts of an inventory, one SSH host, any Docker container.

bkprov runs its playbooks on them but never starts, stops or removes them.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from bkprov.errors import EXIT_USAGE, BkprovError
from bkprov.targets.base import Inventory, Target


@dataclass
class InventoryHosts(Target):
    """The hosts of the user's Ansible inventory (--inventory PATH)."""

    kind: ClassVar[str] = "inventory"
    path: Path
    version: str = ""
    status: str = ""

    @classmethod
    def from_path(cls, path: str) -> InventoryHosts:
        if not Path(path).exists():
            raise BkprovError(f"--inventory {path}: no such file or directory", exit_code=EXIT_USAGE)
        return cls(Path(path).resolve())

    @property
    def name(self) -> str:  # type: ignore[override]
        return str(self.path)

    @property
    def detail(self) -> str:
        return f"inventory {self.path}"

    def inventory(self) -> Inventory:
        return str(self.path)

    def exec(self, command: list[str]) -> int:
        raise BkprovError(
            "exec needs one machine; for an inventory's hosts use `ansible all -i INVENTORY -a CMD`", EXIT_USAGE
        )


@dataclass
class SshHost(Target):
    """One host over SSH (--host USER@HOST[:PORT]): as that user, with sudo unless it is root."""

    kind: ClassVar[str] = "host"
    address: str
    user: str = ""
    port: int | None = None
    version: str = ""
    status: str = ""

    @classmethod
    def parse(cls, spec: str) -> SshHost:
        user, _, rest = spec.rpartition("@")
        host, _, port = rest.partition(":")
        if not host or (port and not (port.isdigit() and 0 < int(port) < 65536)):
            raise BkprovError(f"--host {spec!r}: expected user@host[:port] (e.g. admin@build01:2222)", EXIT_USAGE)
        return cls(host, user, int(port) if port else None)

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.user}@{self.address}" if self.user else self.address

    @property
    def detail(self) -> str:
        return f"ssh {self.name}" + (f":{self.port}" if self.port else "")

    def inventory(self) -> Inventory:
        hostvars: dict[str, Any] = {"ansible_host": self.address, "ansible_python_interpreter": "/usr/bin/python3"}
        if self.user:
            hostvars["ansible_user"] = self.user
        if self.port:
            hostvars["ansible_port"] = self.port
        hostvars["ansible_become"] = self.user != "root"
        return {"all": {"hosts": {self.address: hostvars}}}

    def exec(self, command: list[str]) -> int:
        argv = ["ssh", *(["-p", str(self.port)] if self.port else []), self.name, "--", shlex.join(command)]
        try:
            return subprocess.run(argv, check=False).returncode
        except OSError as exc:
            raise BkprovError(f"cannot run ssh ({exc.strerror}); install openssh-client", EXIT_USAGE) from exc


@dataclass
class DockerHost(Target):
    """Any running Docker container (--container NAME), reached with the docker connection as root."""

    kind: ClassVar[str] = "docker"
    name: str
    status: str
    image: str
    version: str = ""

    @classmethod
    def lookup(cls, name: str) -> DockerHost:
        from bkprov.targets import container

        found = container.get(container.client(), name)
        if found is None:
            raise BkprovError(f"--container {name}: no such container; `docker ps -a` lists them", EXIT_USAGE)
        tags = found.image.tags if found.image is not None else []
        return cls(found.name, found.status, tags[0] if tags else found.attrs.get("Image", "")[:19])

    @property
    def detail(self) -> str:
        return f"docker container from {self.image}"

    def inventory(self) -> Inventory:
        from bkprov.targets import container

        # Any image: let Ansible find its Python rather than assume Debian's path, and ask who `docker exec`
        # runs as (the image's USER).
        return container.inventory(self.name, interpreter="auto_silent", root=False)

    def exec(self, command: list[str]) -> int:
        from bkprov.targets import container

        self.require_running()
        return container.exec_streaming(container.client(), self.name, command)

    def capture(self, command: list[str], timeout: float) -> tuple[int, str, str] | None:
        from bkprov.targets import container

        return container.exec_capture(container.client(), self.name, command) if self.status == "running" else None

    def require_running(self) -> None:
        if self.status != "running":
            raise BkprovError(
                f"container {self.name} is {self.status}; bkprov does not start containers it did not make "
                f"(`docker start {self.name}`)",
                EXIT_USAGE,
            )

    def start(self) -> None:
        self.require_running()
