"""bkprov's entry point: the parser, assembled from bkprov.commands, and one guard around every command.

A command starts in bkprov/commands/<name>.py (``register`` adds its options, ``run`` does it).
Heavy imports (docker, ansible_runner) happen inside commands, so bad input is answered at once.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback

from bkprov import __version__
from bkprov.console import err, problem
from bkprov.errors import EXIT_FAILED, EXIT_INTERRUPTED, BkprovError, describe

EPILOG = """\
exit codes:
  0    success (doctor: no problem found)
  1    failed: a play, the verify build, a download or making a target failed;
       doctor found a problem; or an unexpected error
  2    refused or could not run: bad input (refused before anything changes), or
       Docker, the cache, a tool or a target could not be reached or used
       (doctor: a host could not be checked)
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


def debugging(argv: list[str]) -> bool:
    """BKPROV_DEBUG=1, or -v before any `--` (exec's command is not ours)."""
    ours = argv[: argv.index("--")] if "--" in argv else argv
    return bool(os.environ.get("BKPROV_DEBUG")) or any(re.fullmatch(r"-v+|--verbose", arg) for arg in ours)


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every failure ends as one line with what to do, and a documented exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        options = build_parser().parse_args(argv)
        return int(options.run(options))
    except BkprovError as exc:
        problem(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("[yellow]bkprov: interrupted[/]; re-run the same command to converge the target")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`bkprov versions | head`): nothing left to say to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:  # the guard: no traceback reaches a user unless asked for
        error = describe(exc)
        if debugging(argv):
            traceback.print_exc()
        problem(str(error))
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
