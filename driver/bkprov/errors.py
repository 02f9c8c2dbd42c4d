"""Errors the user can act on, bkprov's exit codes, and the one place other exceptions become messages.

Exit codes (also in `bkprov --help`):
  0    success (doctor: no problem found)
  1    failed: a play, the verify build, a download or making a target failed; doctor found a
       problem; or an unexpected error
  2    refused or could not run: bad input (refused before anything changes), or Docker, the
       cache, a tool or a target could not be reached or used (doctor: a host not checked)
  130  interrupted (Ctrl-C); re-running the same command converges
"""

from __future__ import annotations

import errno
import subprocess

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DEBUG_HINT = "run with -v or BKPROV_DEBUG=1 for the traceback"


class BkprovError(Exception):
    """A failure with a message for the user: what was wrong and what to do; exit 1 unless ``exit_code`` says."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _os_error(exc: OSError) -> BkprovError:
    where = f" {exc.filename}" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return BkprovError(
            f"cannot write{where}: {exc.strerror}; free space there or point BKPROV_CACHE at a disk with room",
            EXIT_USAGE,
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR):
        return BkprovError(
            f"cannot use{where}: {exc.strerror}; check the path and its permissions (bkprov's cache: BKPROV_CACHE)",
            EXIT_USAGE,
        )
    if isinstance(exc, FileNotFoundError) and exc.filename and "/" not in str(exc.filename):
        return BkprovError(f"{exc.filename} is not installed (not found in PATH); install it and try again", EXIT_USAGE)
    return BkprovError(f"{exc.strerror or exc}{where}; {DEBUG_HINT}", EXIT_FAILED)


def _docker_error(exc: Exception) -> BkprovError:
    explanation = getattr(exc, "explanation", None) or str(exc)
    return BkprovError(f"Docker refused: {explanation}. `docker info` shows the daemon's state; {DEBUG_HINT}")


def describe(exc: BaseException) -> BkprovError:
    """The one line a user reads for an exception no command turned into a BkprovError."""
    if isinstance(exc, BkprovError):
        return exc
    if type(exc).__module__.startswith(("docker.", "requests.", "urllib3.")):
        return _docker_error(exc)  # type: ignore[arg-type]
    if isinstance(exc, subprocess.CalledProcessError):
        output = (exc.stderr or exc.output or b"").strip()
        tail = (output.decode(errors="replace") if isinstance(output, bytes) else output).splitlines()[-1:]
        return BkprovError(f"{exc.cmd[0]} failed (exit {exc.returncode}){': ' + tail[0] if tail else ''}")
    if isinstance(exc, subprocess.TimeoutExpired):
        return BkprovError(f"{exc.cmd[0]} did not finish within {exc.timeout:.0f} s")
    if isinstance(exc, OSError):
        return _os_error(exc)
    return BkprovError(f"unexpected error: {type(exc).__name__}: {exc}; {DEBUG_HINT}")
