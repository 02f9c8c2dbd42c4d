"""`bkprov image`: build the container base image or the VM disk (once; --rebuild to refresh)."""

from __future__ import annotations

import argparse

from bkprov.commands.options import Subparsers
from bkprov.console import log


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("image", help="build the Debian systemd base image (once; --rebuild to refresh)")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--vm", action="store_true", help="the VM disk instead of the container image")
    parser.set_defaults(run=run)


def run(options: argparse.Namespace) -> int:
    if options.vm:
        from bkprov.targets.vm_image import ensure_vm_image

        log(f"VM disk: {ensure_vm_image(log, rebuild=options.rebuild).disk}")
        return 0
    from bkprov.targets import container, container_image

    log(f"base image: {container_image.ensure_image(container.client(), log, rebuild=options.rebuild)}")
    return 0
