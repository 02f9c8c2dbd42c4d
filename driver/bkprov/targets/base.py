"""What every target is: a named machine bkprov can run plays on.

Implementations: ``container.ContainerTarget`` and ``vm.VmTarget`` (made by bkprov), and in
``hosts`` the machines bkprov did not make (an inventory, an SSH host, any Docker container).
``bkprov.targets.resolve`` picks one. Looking a target up never changes it; ``start()`` is the
one step that may, and only the commands that need a running target call it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from bkprov.errors import EXIT_USAGE, BkprovError

# An Ansible inventory: a dict for ansible-runner, or the path of the user's inventory file.
Inventory = dict[str, Any] | str


class Target(ABC):
    """A machine (or group of hosts) to run bkprov's playbooks on."""

    # Each implementation provides these as fields or properties.
    kind: str  # container | vm | inventory | host | docker
    name: str
    version: str  # the BuildKit version bkprov labelled it with ("" when unknown)
    status: str  # running, exited, stopped … ("" when bkprov cannot tell, e.g. an inventory's hosts)
    detail: str  # one line for `bkprov list`: capabilities, acceleration and SSH port, address

    @abstractmethod
    def inventory(self) -> Inventory:
        """How Ansible reaches the target."""

    @abstractmethod
    def exec(self, command: list[str]) -> int:
        """Run a command on the target with the caller's stdout and stderr; return its exit code."""

    def capture(self, command: list[str], timeout: float) -> tuple[int, str, str] | None:
        """Run a command as root and return (exit code, stdout, stderr); None where bkprov has no direct way
        (an inventory's hosts: their connection is Ansible's)."""
        return None

    def start(self) -> None:
        """Make the target ready for a play (start a stopped container); a no-op where bkprov cannot."""
        return None  # hosts bkprov did not make are used as they are

    def destroy(self) -> None:
        raise BkprovError(f"{self.name} was not made by bkprov; bkprov removes only its own targets", EXIT_USAGE)
