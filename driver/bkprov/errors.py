"""Errors the user can act on: the message says what was wrong and what to do."""


class BkprovError(Exception):
    """A failure with a message for the user; exit code 1 unless ``exit_code`` says otherwise."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
