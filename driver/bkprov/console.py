"""Where bkprov writes: results on stdout, progress and messages on stderr.

Messages are never wrapped (paths and hashes stay whole in pipes and logs) and user text is
escaped for rich, so a path in brackets prints as itself.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def log(message: str) -> None:
    err.print(f"[dim]bkprov:[/] {escape(message)}", highlight=False)


def problem(message: str) -> None:
    """One error line for the user (what was wrong and what to do)."""
    err.print(f"[red]bkprov:[/] {escape(message)}", highlight=False)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))
