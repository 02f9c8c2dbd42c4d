"""`molecule test` per scenario, as a developer runs it; skipped when real artifacts are absent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.helpers import ROOT, require_real

pytestmark = [pytest.mark.docker, pytest.mark.real]

SCENARIOS = {"default": ["v0.10.6"], "legacy": ["v0.4.0"], "upgrade": ["v0.10.6", "v0.12.5"], "vm": ["v0.10.6"]}


@pytest.mark.parametrize("scenario", [pytest.param(s, marks=pytest.mark.vm) if s == "vm" else s for s in SCENARIOS])
def test_molecule_scenario(scenario, base_image, request):
    for version in SCENARIOS[scenario]:
        require_real(version, with_runc=scenario != "upgrade")
    if scenario == "legacy":
        request.getfixturevalue("registry_tools")
    bindir = str(Path(sys.executable).parent)  # molecule calls ansible-config from PATH
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "PY_COLORS": "0", "ANSIBLE_NOCOLOR": "1"}
    result = subprocess.run(
        [f"{bindir}/molecule", "test", "-s", scenario],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "SKIPPED" not in output
    for version in SCENARIOS[scenario]:
        assert f"RUN printed: buildctl github.com/moby/buildkit {version}" in output
