"""Option groups several commands share, and their conversion into typed values.

Commands read their argparse Namespace once, in ``run``, through these helpers; what
travels further is a ``Selection``, a ``Spec`` or a plain value, never the Namespace.
"""

from __future__ import annotations

import argparse
import re

from bkprov.plays import DEFAULT_FORKS, Fleet
from bkprov.targets import KINDS, NAME, Selection, Spec

Subparsers = argparse._SubParsersAction


# ---------------------------------------------------------------- argument types (argparse exits 2 on them)

TCP = re.compile(r"tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):(\d{1,5})")
HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):(\d{1,5})")


def target_name(value: str) -> str:
    """A name Docker accepts for a container, and safe for a VM's directory and hostname."""
    if not NAME.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a valid name: letters, digits, '_', '.' and '-', starting with a letter or digit, "
            "at most 63 characters (e.g. bkprov-dev)"
        )
    return value


def tcp_address(value: str) -> str:
    match = TCP.fullmatch(value)
    if not match or not 1 <= int(match.group(2)) <= 65535:
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected tcp://HOST:PORT with a port from 1 to 65535 (e.g. tcp://0.0.0.0:1234)"
        )
    return value


def host_port(value: str) -> str:
    match = HOST_PORT.fullmatch(value)
    if not match or not 1 <= int(match.group(2)) <= 65535:
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected HOST:PORT with a port from 1 to 65535 (e.g. 127.0.0.1:5000)"
        )
    return value


def positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a whole number of at least 1")
    return int(value)


# ---------------------------------------------------------------- option groups


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
        parser.add_argument("--name", type=target_name, help=name_help)
    parser.add_argument("--image", help="base image with systemd for the container target (default: built locally)")
    parser.add_argument("--network", default="none", help="container network mode (default: none)")
    parser.add_argument(
        "--accel", choices=["auto", "kvm", "tcg"], default="auto", help="VM acceleration (default: probe KVM)"
    )


def spec(options: argparse.Namespace, name: str, version: str) -> Spec:
    return Spec(options.target, name, version, options.image, options.network, options.accel)


def add_registry(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry",
        metavar="HOST:PORT",
        type=host_port,
        help="plain-HTTP registry with the COPY helper image (BuildKit < v0.5.0)",
    )


# ---------------------------------------------------------------- fleets: which hosts, how many at once, rollouts


def batch_size(value: str) -> str:
    """--serial: a number of hosts (at least 1) or a percentage of them (1% to 100%)."""
    number = value.removesuffix("%")
    if not number.isdigit() or int(number) < 1 or (value.endswith("%") and int(number) > 100):
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected how many hosts change at a time, a whole number of at least 1 or a percentage "
            "from 1% to 100% (e.g. --serial 1, --serial 25%)"
        )
    return value


def percent(value: str) -> int:
    if not value.isdigit() or int(value) > 100:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a percentage from 0 to 100 (e.g. --max-fail 0)")
    return int(value)


def host_pattern(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError(
            "empty: expected an Ansible host pattern, e.g. --limit builders or --limit 'host1,host2'"
        )
    return value.strip()


def add_fleet(parser: argparse.ArgumentParser, rollout: bool = False) -> None:
    """--limit and --forks for any play on an inventory's hosts; --serial and --max-fail for provision."""
    group = parser.add_argument_group("many hosts (--inventory)")
    group.add_argument("--limit", metavar="PATTERN", type=host_pattern, help="only the hosts matching this pattern")
    group.add_argument(
        "--forks",
        metavar="N",
        type=positive,
        default=DEFAULT_FORKS,
        help=f"hosts worked on at once (default {DEFAULT_FORKS}: one per host, up to {DEFAULT_FORKS})",
    )
    if rollout:
        group.add_argument(
            "--serial",
            metavar="N|N%",
            type=batch_size,
            help="rolling upgrade: change N hosts at a time, each batch verified by a build before the next; "
            "a failed batch stops the rollout",
        )
        group.add_argument(
            "--max-fail",
            metavar="PERCENT",
            type=percent,
            help="stop when more than PERCENT of a batch failed (default with --serial: 0; without: never)",
        )


def fleet(options: argparse.Namespace) -> Fleet:
    return Fleet(
        limit=options.limit,
        forks=options.forks,
        serial=getattr(options, "serial", None),
        max_fail=getattr(options, "max_fail", None),
    )
