"""The bkprov command line, run as a real process (no Docker needed: these commands never reach it)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from ansible_collections.bkprov.buildkit.plugins.module_utils import catalog as shared

from bkprov.paths import catalog_file

CATALOG = shared.load(catalog_file(), overlay=False)
RELEASES = shared.releases(CATALOG)  # without release candidates
EVERY_VERSION = shared.releases(CATALOG, pre=True)
BUILDKIT_RELPATH = "moby/buildkit/releases/download/v0.10.6/buildkit-v0.10.6.linux-amd64.tar.gz"
RUNC_RELPATH = "opencontainers/runc/releases/download/v1.0.2/runc.amd64"


def script(says: str) -> bytes:
    """A stand-in binary: a shell script that prints what a --version would."""
    return f"#!/bin/sh\necho '{says}'\n".encode()


def buildkit_tarball(
    path: Path, says: str = "buildctl github.com/moby/buildkit v0.10.6 0c9b5aeb", members=None
) -> Path:
    """A release-shaped tarball: bin/buildkitd and bin/buildctl (a script printing ``says``)."""
    members = members if members is not None else {"bin/buildkitd": script("buildkitd"), "bin/buildctl": script(says)}
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
    return path


def tree(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its bytes (what "the cache is unchanged" compares)."""
    if not directory.exists():
        return {}
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


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
    assert [row["version"] for row in rows] == RELEASES  # release candidates hidden
    for row in rows:
        assert {"version", "runc", "socket_activation", "copy", "sha256", "prerelease"} <= set(row)
        assert row["version"].startswith("v") and "-rc" not in row["version"] and row["prerelease"] is False
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


def test_versions_pre_shows_release_candidates(run):
    result = run("versions", "--pre", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["version"]: row for row in json.loads(result.stdout)}
    assert list(rows) == EVERY_VERSION
    assert rows["v0.11.0-rc1"]["prerelease"] is True
    assert "v0.11.0-rc1" not in run("versions").stdout


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


def test_provision_unknown_version_is_refused_before_anything_happens(run):
    result = run("provision", "v0.99.0")
    assert result.returncode == 2
    assert "v0.99.0" in result.stderr
    assert f"Nearest known: {RELEASES[-1]}" in result.stderr
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
    build = buildkit_tarball(tmp_path / "buildkit-custom.tar.gz")
    digest = hashlib.sha256(build.read_bytes()).hexdigest()

    result = run("artifacts", "import", "buildkit", "v0.10.6", str(build))
    assert result.returncode == 0, result.stderr
    assert digest in result.stderr
    assert "--version: buildctl github.com/moby/buildkit v0.10.6" in result.stderr  # it was run and checked
    assert (run.cache / BUILDKIT_RELPATH).read_bytes() == build.read_bytes()

    listing = run("artifacts", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    data = json.loads(listing.stdout)
    assert Path(data["cache"]) == run.cache
    rows = {row["file"]: row for row in data["artifacts"]}
    assert rows[BUILDKIT_RELPATH]["cached"] is True
    assert rows[BUILDKIT_RELPATH]["origin"] == "import"
    assert rows[BUILDKIT_RELPATH]["sha256"] == digest
    assert rows[BUILDKIT_RELPATH]["kind"] == "buildkit"
    assert rows[BUILDKIT_RELPATH]["version"] == "v0.10.6"
    assert [row["file"] for row in data["artifacts"] if row["cached"]] == [BUILDKIT_RELPATH]
    # Uncached catalog entries keep the catalog's hash.
    other = "moby/buildkit/releases/download/v0.25.0/buildkit-v0.25.0.linux-amd64.tar.gz"
    assert rows[other]["cached"] is False
    assert rows[other]["origin"] == "catalog"


def test_artifacts_import_runc(run, tmp_path):
    build = tmp_path / "runc"
    build.write_bytes(script("runc version 1.0.2\ncommit: v1.0.2-0-g52b36a2d\nspec: 1.0.2-dev"))
    result = run("artifacts", "import", "runc", "v1.0.2", str(build))
    assert result.returncode == 0, result.stderr
    rows = {row["file"]: row for row in json.loads(run("artifacts", "list", "--json").stdout)["artifacts"]}
    entry = rows[RUNC_RELPATH]
    assert (entry["kind"], entry["cached"], entry["origin"]) == ("runc", True, "import")


def test_artifacts_import_by_alias_names_the_version_chosen(run, tmp_path):
    newest = [v for v in RELEASES if v.startswith("v0.12.")][-1]
    build = buildkit_tarball(tmp_path / "b.tar.gz", says=f"buildctl github.com/moby/buildkit {newest} abc")
    result = run("artifacts", "import", "buildkit", "v0.12", str(build))
    assert result.returncode == 0, result.stderr
    assert f"v0.12 is {newest}" in result.stderr or f"provisions of {newest}" in result.stderr
    assert (run.cache / f"moby/buildkit/releases/download/{newest}/buildkit-{newest}.linux-amd64.tar.gz").is_file()


def good_import(run, tmp_path) -> dict[str, bytes]:
    """A cache holding a good import of v0.10.6 and of runc v1.0.2; returns its bytes."""
    good = buildkit_tarball(tmp_path / "good.tar.gz")
    assert run("artifacts", "import", "buildkit", "v0.10.6", str(good)).returncode == 0
    runc = tmp_path / "good-runc"
    runc.write_bytes(script("runc version 1.0.2"))
    assert run("artifacts", "import", "runc", "v1.0.2", str(runc)).returncode == 0
    return tree(run.cache)


@pytest.mark.parametrize(
    ("kind", "version", "make", "message"),
    [
        ("buildkit", "v0.10.6", lambda d: Path("/etc/passwd"), "/etc/passwd is not a gzip tarball"),
        (
            "buildkit",
            "v0.10.6",
            lambda d: buildkit_tarball(d / "no-buildkitd.tar.gz", members={"bin/buildctl": script("v0.10.6")}),
            "has no bin/buildkitd",
        ),
        (
            "buildkit",
            "v0.10.6",
            lambda d: buildkit_tarball(d / "other.tar.gz", says="buildctl github.com/moby/buildkit v0.10.5 abc"),
            "says 'buildctl github.com/moby/buildkit v0.10.5 abc', not v0.10.6",
        ),
        ("runc", "v1.0.2", lambda d: Path("/etc/passwd"), "/etc/passwd is not an executable"),
        ("runc", "v1.0.2", lambda d: write(d / "runc", script("runc version 1.1.12")), "not v1.0.2"),
    ],
    ids=["passwd-as-buildkit", "no-buildkitd", "other-buildctl-version", "passwd-as-runc", "other-runc-version"],
)
def test_a_bad_import_is_refused_and_the_earlier_import_stays(run, tmp_path, kind, version, make, message):
    before = good_import(run, tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    result = run("artifacts", "import", kind, version, str(make(bad)))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert tree(run.cache) == before  # byte for byte, the lock file too


def test_a_refused_import_into_an_empty_cache_creates_nothing(run):
    result = run("artifacts", "import", "buildkit", "v0.10.6", "/etc/passwd")
    assert result.returncode == 2
    assert not run.cache.exists()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_artifacts_list_on_an_empty_cache(run):
    result = run("artifacts", "list", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert not any(row["cached"] for row in data["artifacts"])
    assert {row["version"] for row in data["artifacts"] if row["kind"] == "buildkit"} == set(
        row["version"] for row in json.loads(run("versions", "--pre", "--json").stdout)
    )


def test_artifacts_import_unknown_version(run, tmp_path):
    build = tmp_path / "b.tar.gz"
    build.write_bytes(b"x")
    result = run("artifacts", "import", "buildkit", "v0.99.0", str(build))
    assert result.returncode == 2
    assert f"Nearest known: {RELEASES[-1]}" in result.stderr
    assert not run.cache.exists()


def test_artifacts_import_missing_file(run, tmp_path):
    missing = tmp_path / "no-such-build.tar.gz"
    result = run("artifacts", "import", "buildkit", "v0.10.6", str(missing))
    assert result.returncode == 2
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


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["provision", "v0.10.6", "--tcp", "http://x"], "expected tcp://HOST:PORT"),
        (["provision", "v0.10.6", "--tcp", "tcp://0.0.0.0:notaport"], "expected tcp://HOST:PORT"),
        (["provision", "v0.10.6", "--tcp", "tcp://0.0.0.0:65536"], "port from 1 to 65535"),
        (["provision", "v0.10.6", "--name", "../x"], "'../x' is not a valid name"),
        (["provision", "v0.10.6", "--name", "_x"], "is not a valid name"),
        (["provision", "v0.10.6", "--registry", "localhost"], "expected HOST:PORT"),
        (["provision", "v0.10.6", "--insecure-tcp"], "--insecure-tcp goes with --tcp"),
        (["create", "a/b"], "is not a valid name"),
        (["matrix", "v0.10.6", "--jobs", "0"], "at least 1"),
        (["matrix", "v0.10.6", "--report", "/etc/passwd/report"], "cannot write in /etc/passwd"),
        (["provision", "v0.10.6", "--inventory", "x.yml", "--host", "a@b"], "not allowed with argument"),
    ],
)
def test_bad_arguments_are_refused_before_anything_happens(run, argv, message):
    result = run(*argv)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not run.cache.exists()  # nothing fetched (a target would need the artifacts first)


def test_a_minor_version_resolves_to_its_newest_release_and_says_so(run, tmp_path):
    newest = [v for v in RELEASES if v.startswith("v0.12.")][-1]
    result = run("provision", "v0.12", "--inventory", str(tmp_path / "missing.yml"))
    assert result.returncode == 2
    assert f"v0.12 is {newest}" in result.stderr
    assert "latest is" in run("provision", "latest", "--inventory", str(tmp_path / "missing.yml")).stderr


def test_help_documents_the_exit_codes(run):
    result = run("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for code in ("0 success", "1 failed", "2 refused or could not run", "130 interrupted"):
        assert code in text


def test_an_unwritable_cache_is_one_line_with_what_to_do(run, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    env_cache = blocker / "cache"
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    h:\n      ansible_connection: local\n")
    result = subprocess.run(
        [sys.executable, "-m", "bkprov.cli", "provision", "v0.10.6", "--inventory", str(inventory)],
        capture_output=True,
        text=True,
        env={**os.environ, "BKPROV_CACHE": str(env_cache), "NO_COLOR": "1", "COLUMNS": "1000"},
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(env_cache) in lines[0] and "BKPROV_CACHE" in lines[0]


def test_a_closed_pipe_is_not_a_traceback(tmp_path):
    env = {**os.environ, "BKPROV_CACHE": str(tmp_path / "cache")}
    reader = subprocess.Popen(["head", "-c", "10"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    writer = subprocess.run(
        [sys.executable, "-m", "bkprov.cli", "versions", "--pre", "--json"],
        stdout=reader.stdin,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        timeout=60,
    )
    reader.stdin.close()
    reader.wait()
    assert "Traceback" not in writer.stderr and "BrokenPipe" not in writer.stderr


def test_an_unexpected_error_is_one_line_unless_debugging(monkeypatch, capsys):
    from bkprov import cli
    from bkprov.commands import versions

    def broken(options):
        raise RuntimeError("the catalog grew a third arm")

    monkeypatch.setattr(versions, "run", broken)
    monkeypatch.delenv("BKPROV_DEBUG", raising=False)
    assert cli.main(["versions"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines() == [
        "bkprov: unexpected error: RuntimeError: the catalog grew a third arm; "
        "run with -v or BKPROV_DEBUG=1 for the traceback"
    ]
    monkeypatch.setenv("BKPROV_DEBUG", "1")
    assert cli.main(["versions"]) == 1
    assert "Traceback" in capsys.readouterr().err
