"""The installed package is the product: build the wheel (and the sdist), install it into a fresh
venv outside the checkout, and run the README's commands from an unrelated directory.

The venv gets the wheel with --no-deps; its dependencies come from the interpreter running the
tests (a .pth line, so the checkout's editable hook is not loaded), which keeps the test to a
minute. BKPROV_WHEEL_FULL_INSTALL=1 installs the dependencies from the package index instead
(a few minutes). Either way the test first proves that `bkprov` is the wheel's, not the checkout's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FULL_INSTALL = os.environ.get("BKPROV_WHEEL_FULL_INSTALL") == "1"
DATA = "bkprov/_data/playbooks/"
COLLECTION = DATA + "collections/ansible_collections/bkprov/buildkit/"


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=900, **kwargs)


def shipped_files() -> set[str]:
    """Every tracked file of playbooks/ and collection/, as the wheel must hold it."""
    tracked = run(["git", "ls-files", "playbooks", "collection"], cwd=ROOT).stdout.split()
    wanted = set()
    for path in tracked:
        if (ROOT / path).is_symlink():
            continue  # playbooks/collections/…/buildkit: the collection itself, listed below
        if path.startswith("collection/"):
            wanted.add(COLLECTION + path.removeprefix("collection/"))
        else:
            wanted.add("bkprov/_data/" + path)
    return wanted


def build_wheel(source: str, out: Path) -> Path:
    result = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), source], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = out.glob("bkprov-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(str(ROOT), tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv outside the checkout with the wheel installed; returns its bin directory."""
    base = tmp_path_factory.mktemp("venv") / "venv"
    assert run([sys.executable, "-m", "venv", str(base)]).returncode == 0
    python = base / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "-q", str(wheel)]
    result = run(install if FULL_INSTALL else [*install, "--no-deps"])
    assert result.returncode == 0, result.stderr[-3000:]
    if not FULL_INSTALL:
        purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
        Path(purelib, "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return base / "bin"


@pytest.fixture
def cli(venv, tmp_path):
    """cli(*argv) runs the venv's `bkprov` from an empty directory with an empty cache."""
    cache = tmp_path / "cache"
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BKPROV_", "PYTHON"))}
    # Ansible's own commands from the venv, else (dependencies shared) from the test interpreter's.
    env.update(
        BKPROV_CACHE=str(cache),
        PATH=f"{venv}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        COLUMNS="300",
        NO_COLOR="1",
    )

    def invoke(*argv: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run([str(venv / "bkprov"), *argv], cwd=workdir, env={**env, **(extra_env or {})})

    invoke.cache, invoke.workdir, invoke.python = cache, workdir, venv / "python"
    return invoke


def test_the_wheel_carries_every_playbook_and_the_whole_collection(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(shipped_files() - names)
    assert not missing, f"not in the wheel: {missing}"
    assert DATA + "doctor.yml" in names  # the one a hand-written list once forgot


def test_the_sdist_builds_a_wheel_with_the_same_files(wheel, venv, tmp_path):
    """The sdist (built by hatchling, as `python -m build` would) yields a wheel with the same contents."""
    tools = tmp_path / "tools"
    assert run([sys.executable, "-m", "venv", str(tools)]).returncode == 0
    got = run([str(tools / "bin/python"), "-m", "pip", "install", "-q", "hatchling>=1.18"])
    if got.returncode != 0:
        pytest.skip(f"hatchling not installable here: {got.stderr.strip().splitlines()[-1:]}")
    built = run([str(tools / "bin/python"), "-m", "hatchling", "build", "-t", "sdist", "-d", str(tmp_path)], cwd=ROOT)
    assert built.returncode == 0, built.stderr[-3000:]
    (sdist,) = tmp_path.glob("bkprov-*.tar.gz")
    from_sdist = build_wheel(str(sdist), tmp_path / "from-sdist")
    assert set(zipfile.ZipFile(from_sdist).namelist()) == set(zipfile.ZipFile(wheel).namelist())


def test_bkprov_runs_from_the_wheel_not_the_checkout(cli):
    where = run(
        [str(cli.python), "-c", "import bkprov, sys; print(bkprov.__file__); print(sys.path)"], cwd=cli.workdir
    ).stdout.splitlines()
    assert where[0].startswith(str(cli.python.parents[1])) and "/site-packages/bkprov/" in where[0]
    assert str(ROOT / "driver") not in where[1]
    probe = "from bkprov import paths; print(paths.collection_dir())"
    collection = run([str(cli.python), "-c", probe], cwd=cli.workdir).stdout.strip()
    assert collection.startswith(str(cli.python.parents[1])) and collection.endswith(COLLECTION.rstrip("/"))


def test_versions_and_artifacts_list(cli):
    versions = cli("versions", "--json")
    assert versions.returncode == 0, versions.stderr
    assert "v0.10.6" in {row["version"] for row in json.loads(versions.stdout)}
    listing = cli("artifacts", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    data = json.loads(listing.stdout)
    assert Path(data["cache"]) == cli.cache and not any(row["cached"] for row in data["artifacts"])
    assert "exit codes:" in cli("--help").stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["provision", "v0.99.0"], "unknown BuildKit version 'v0.99.0'"),
        (["provision", "v0.10.6", "--tcp", "http://x"], "expected tcp://HOST:PORT"),
        (["provision", "v0.10.6", "--name", "../x"], "is not a valid name"),
        (["provision", "v0.10.6", "--inventory", "/nonexistent/hosts.yml"], "no such file or directory"),
        (["artifacts", "import", "buildkit", "v0.10.6", "/etc/passwd"], "is not a gzip tarball"),
    ],
)
def test_refusals(cli, argv, message):
    result = cli(*argv)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not cli.cache.exists()


@pytest.mark.docker
def test_doctor_on_a_real_container(cli, make_target):
    name = make_target()
    result = cli("doctor", name, "--json")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    data = json.loads(result.stdout)
    checks = {f["check"]: f["status"] for f in data["findings"][name]}
    assert checks["systemd"] == "ok" and checks["nested-overlayfs"] == "ok"
    assert data["hosts"][name]["phase"] == "done"


@pytest.mark.docker
def test_matrix_with_missing_artifacts(cli, docker_client, tmp_path):
    mirror = tmp_path / "empty-mirror"
    mirror.mkdir()
    report = tmp_path / "report"
    result = cli("matrix", "v0.10.6", "--report", str(report), extra_env={"BKPROV_MIRROR": str(mirror)})
    assert result.returncode == 1, result.stderr
    (row,) = json.loads(report.with_suffix(".json").read_text())
    assert (row["version"], row["phase"], row["provision_ok"]) == ("v0.10.6", "artifacts missing", False)
    assert "| v0.10.6 | container | artifacts missing |" in report.with_suffix(".md").read_text()
    assert not [c for c in docker_client.containers.list(all=True) if c.name.startswith("bkprov-matrix-v0-10-6")]
