"""bkprov's entry point: the parser, assembled from bkprov.commands, and one guard around every command.

A command starts in bkprov/commands/<name>.py (``register`` adds its options, ``run`` does it).
Heavy imports (docker, ansible_runner) happen inside commands, so bad input is answered at once.
"""

from __future__ import annotations

import argparse
import sys

from bkprov import __version__
from bkprov.errors import EXIT_INTERRUPTED, BkprovError

EPILOG = """\
exit codes:
  0    success (doctor: no problem found)
  1    the command ran and failed: a play or the verify build failed, doctor found a problem
  2    bad input, or the target could not be reached or checked; nothing was changed
  130  interrupted (Ctrl-C); re-running the same command converges
"""


def build_parser() -> argparse.ArgumentParser:
    from bkprov.commands import COMMANDS

    parser = argparse.ArgumentParser(
        prog="bkprov",
        description="Install any archived BuildKit release and prove it with a real build.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"bkprov {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from bkprov.console import err, problem

    try:
        options = build_parser().parse_args(argv)
        return int(options.run(options))
    except BkprovError as exc:
        problem(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("[yellow]bkprov: interrupted[/]; re-run the same command to converge the target")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
