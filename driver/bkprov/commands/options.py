"""Option groups several commands share, and their conversion into typed values.

Commands read their argparse Namespace once, in ``run``, through these helpers; what
travels further is a ``Selection``, a ``Spec`` or a plain value, never the Namespace.
"""

from __future__ import annotations

import argparse

from bkprov.targets import KINDS, Selection, Spec

Subparsers = argparse._SubParsersAction


def add_json(parser: argparse.ArgumentParser, help: str = "print one machine-readable result") -> None:
    parser.add_argument("--json", action="store_true", help=help)


def add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="stream Ansible's output (-vv and more: Ansible verbosity)"
    )


def add_selection(parser: argparse.ArgumentParser, positional_name: bool = True) -> None:
    """Which target: a bkprov target's NAME, or hosts bkprov did not make (--inventory, --host, --container)."""
    if positional_name:
        parser.add_argument("name", nargs="?", help="a target bkprov made (`bkprov list`)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--inventory", metavar="PATH", help="the hosts of this Ansible inventory")
    group.add_argument("--host", metavar="USER@HOST[:PORT]", help="one host over SSH (sudo unless root)")
    group.add_argument("--container", metavar="NAME", help="any running Docker container (as root, no sudo)")


def selection(options: argparse.Namespace, by_name: bool = True) -> Selection:
    """The target the options name; ``by_name=False`` where --name names a target to make, not one to use."""
    return Selection(
        name=options.name if by_name else None,
        inventory=options.inventory,
        host=options.host,
        container=options.container,
    )


def add_new_target(parser: argparse.ArgumentParser, name_help: str | None = None) -> None:
    """How to make a target: kind, base image, network, VM acceleration."""
    parser.add_argument("--target", choices=KINDS, default="container", help="what to make (default: container)")
    if name_help:
        parser.add_argument("--name", help=name_help)
    parser.add_argument("--image", help="base image with systemd for the container target (default: built locally)")
    parser.add_argument("--network", default="none", help="container network mode (default: none)")
    parser.add_argument(
        "--accel", choices=["auto", "kvm", "tcg"], default="auto", help="VM acceleration (default: probe KVM)"
    )


def spec(options: argparse.Namespace, name: str, version: str) -> Spec:
    return Spec(options.target, name, version, options.image, options.network, options.accel)


def add_registry(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry", metavar="HOST:PORT", help="plain-HTTP registry with the COPY helper image (BuildKit < v0.5.0)"
    )
