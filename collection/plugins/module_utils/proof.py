# Copyright: bkprov developers
# Apache-2.0
"""Reading the verify build's output: which BuildKit answered, and the RUN step's line.

The verify role's script (templates/verify-build.sh.j2) prints ``bkprov-installed: <buildctl --version>``
first, then the build's plain progress; the build proves the version when its RUN step prints
``buildctl github.com/moby/buildkit <version> …``. Used by the verify_build action and by the
driver when it re-runs the recorded proof build on an up-to-date host.
"""

from __future__ import annotations

import re

INSTALLED_PREFIX = "bkprov-installed: "


def version_word(text: str) -> str:
    return next((w for w in text.split() if re.match(r"^v[0-9]", w)), "")


def read_proof(stdout: str, version: str) -> tuple[str, str]:
    """(installed version, RUN line proving ``version``; empty when the build did not print it)."""
    lines = stdout.splitlines()
    installed = next(
        (version_word(line[len(INSTALLED_PREFIX) :]) for line in lines if line.startswith(INSTALLED_PREFIX)), ""
    )
    pattern = re.compile(r"buildctl github\.com/moby/buildkit " + re.escape(version) + r".*")
    # The RUN step's output, not the installed-version line above it (which carries the same text).
    build_lines = [line for line in lines if not line.startswith(INSTALLED_PREFIX)]
    run_line = next((m.group(0).strip() for m in map(pattern.search, build_lines) if m), "")
    return installed, run_line
