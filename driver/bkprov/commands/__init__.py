"""One module per bkprov command. Each has ``register(subparsers)``, which adds its parser and
sets ``run`` as its default, and ``run(options) -> exit code``. ``COMMANDS`` is --help's order."""

from __future__ import annotations

from types import ModuleType

from bkprov.commands import (
    artifacts,
    create,
    destroy,
    doctor,
    exec,
    image,
    matrix,
    provision,
    uninstall,
    verify,
    versions,
)
from bkprov.commands import list as list_

COMMANDS: list[ModuleType] = [
    versions,
    provision,
    verify,
    uninstall,
    matrix,
    create,
    image,
    doctor,
    list_,
    destroy,
    exec,
    artifacts,
]
