"""Errors the user can act on, and bkprov's exit codes.

Exit codes (also in `bkprov --help`):
  0    success (doctor: no problem found)
  1    the command ran and failed: a play failed, a build failed, doctor found a problem
  2    bad input or the target could not be reached or checked; nothing was changed
  130  interrupted (Ctrl-C); re-running the same command converges
"""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class BkprovError(Exception):
    """A failure with a message for the user: what was wrong and what to do; exit 1 unless ``exit_code`` says."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code
