"""The bkprov command line, run as a real process (no Docker needed: these commands never reach it)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REFERENCE_COUNT = 27


@pytest.fixture
def run(tmp_path):
    """run(*argv) -> CompletedProcess of `python -m bkprov.cli argv` with its own empty cache."""
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BKPROV_")}
    # A wide console: rich would otherwise wrap messages (and paths) at 80 columns when piped.
    env.update(BKPROV_CACHE=str(cache), COLUMNS="1000", NO_COLOR="1")

    def invoke(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "bkprov.cli", *argv],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=timeout,
        )

    invoke.cache = cache
    return invoke


def test_versions_json(run):
    result = run("versions", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == REFERENCE_COUNT
    for row in rows:
        assert {"version", "runc", "socket_activation", "copy", "sha256"} <= set(row)
        assert row["version"].startswith("v")
        assert isinstance(row["runc"], str) and row["runc"].startswith("v1.")
        assert isinstance(row["socket_activation"], bool)
        assert row["copy"] in ("helper-image", "fileop")
        assert row["sha256"] is None or (isinstance(row["sha256"], str) and len(row["sha256"]) == 64)
    by_version = {row["version"]: row for row in rows}
    assert by_version["v0.4.0"]["copy"] == "helper-image"
    assert by_version["v0.10.6"]["sha256"] == "9a21a41298c4a2a7a2b57cb90d37463d3a9057aedfe97a04b0e4fd6f622549d8"
    assert by_version["v0.9.0"]["socket_activation"] is True
    assert by_version["v0.8.0"]["socket_activation"] is False
    assert not run.cache.exists()


def test_versions_table(run):
    result = run("versions")
    assert result.returncode == 0, result.stderr
    assert "v0.3.0" in result.stdout
    assert "v0.25.0" in result.stdout
    assert "helper-image" in result.stdout


def test_version_flag(run):
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("bkprov ")


def test_provision_unknown_version_fails_fast_and_creates_nothing(run):
    started = time.monotonic()
    result = run("provision", "v0.99.0")
    elapsed = time.monotonic() - started
    assert result.returncode == 2
    assert elapsed < 2, f"took {elapsed:.1f}s"
    assert "v0.99.0" in result.stderr
    assert "Nearest known: v0.25.0" in result.stderr
    assert result.stdout == ""
    assert not run.cache.exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--host", "admin@build01:ssh"], "expected user@host[:port]"),
        (["--inventory", "/nonexistent/hosts.yml"], "no such file or directory"),
    ],
)
def test_provision_refuses_bad_target_options_before_fetching(run, flags, message):
    result = run("provision", "v0.10.6", *flags)
    assert result.returncode == 2
    assert message in result.stderr
    assert not run.cache.exists()


def test_artifacts_import_then_list(run, tmp_path):
    build = tmp_path / "buildkit-custom.tar.gz"
    build.write_bytes(b"my own v0.10.6 build\n")
    digest = hashlib.sha256(build.read_bytes()).hexdigest()

    result = run("artifacts", "import", "buildkit", "v0.10.6", str(build))
    assert result.returncode == 0, result.stderr
    assert digest in result.stderr
    relpath = "moby/buildkit/releases/download/v0.10.6/buildkit-v0.10.6.linux-amd64.tar.gz"
    assert (run.cache / relpath).read_bytes() == build.read_bytes()

    listing = run("artifacts", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    data = json.loads(listing.stdout)
    assert Path(data["cache"]) == run.cache
    rows = {row["file"]: row for row in data["artifacts"]}
    assert rows[relpath]["cached"] is True
    assert rows[relpath]["origin"] == "import"
    assert rows[relpath]["sha256"] == digest
    assert rows[relpath]["kind"] == "buildkit"
    assert rows[relpath]["version"] == "v0.10.6"
    assert [row["file"] for row in data["artifacts"] if row["cached"]] == [relpath]
    # Uncached catalog entries keep the catalog's hash.
    other = "moby/buildkit/releases/download/v0.25.0/buildkit-v0.25.0.linux-amd64.tar.gz"
    assert rows[other]["cached"] is False
    assert rows[other]["origin"] == "catalog"


def test_artifacts_import_runc(run, tmp_path):
    build = tmp_path / "runc"
    build.write_bytes(b"#!/bin/sh\n")
    result = run("artifacts", "import", "runc", "v1.0.2", str(build))
    assert result.returncode == 0, result.stderr
    rows = {row["file"]: row for row in json.loads(run("artifacts", "list", "--json").stdout)["artifacts"]}
    entry = rows["opencontainers/runc/releases/download/v1.0.2/runc.amd64"]
    assert (entry["kind"], entry["cached"], entry["origin"]) == ("runc", True, "import")


def test_artifacts_list_on_an_empty_cache(run):
    result = run("artifacts", "list", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert not any(row["cached"] for row in data["artifacts"])
    assert {row["version"] for row in data["artifacts"] if row["kind"] == "buildkit"} == set(
        row["version"] for row in json.loads(run("versions", "--json").stdout)
    )


def test_artifacts_import_unknown_version(run, tmp_path):
    build = tmp_path / "b.tar.gz"
    build.write_bytes(b"x")
    result = run("artifacts", "import", "buildkit", "v0.99.0", str(build))
    assert result.returncode == 2
    assert "Nearest known: v0.25.0" in result.stderr
    assert not run.cache.exists()


def test_artifacts_import_missing_file(run, tmp_path):
    missing = tmp_path / "no-such-build.tar.gz"
    result = run("artifacts", "import", "buildkit", "v0.10.6", str(missing))
    assert result.returncode != 0
    assert str(missing) in result.stderr
    assert "no such file" in result.stderr


def test_artifacts_import_unknown_kind(run, tmp_path):
    build = tmp_path / "b"
    build.write_bytes(b"x")
    result = run("artifacts", "import", "containerd", "v1.7.0", str(build))
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


@pytest.mark.parametrize("argv", [["exec", "bkprov-v0.10.6"], ["exec", "bkprov-v0.10.6", "--"]])
def test_exec_without_a_command(run, argv):
    result = run(*argv)
    assert result.returncode == 2
    assert "give a command" in result.stderr


def test_no_command(run):
    result = run()
    assert result.returncode == 2
    assert "usage: bkprov" in result.stderr
