"""bkprov.recorded's decisions, with a target that runs its commands on this machine (real processes, real
files): a record is used only with the same key and version, on an unchanged host, with a passing proof."""

from __future__ import annotations

import subprocess

import pytest
from ansible_collections.bkprov.buildkit.plugins.module_utils import host_state

from bkprov import recorded
from bkprov.results import OK, HostResult, PlayResult
from bkprov.targets.base import Target

PROOF = (
    "echo 'bkprov-installed: buildctl github.com/moby/buildkit v9.9.9 x';"
    " echo '#6 0.2 buildctl github.com/moby/buildkit v9.9.9 abc'"
)


class LocalTarget(Target):
    """This machine as a target: commands run here, as the test's user."""

    kind, name, version, status, detail = "local", "here", "v9.9.9", "running", ""

    def inventory(self):
        return {"all": {"hosts": {"here": {"ansible_connection": "local"}}}}

    def exec(self, command):
        return subprocess.run(command, check=False).returncode

    def capture(self, command, timeout):
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        return done.returncode, done.stdout, done.stderr


@pytest.fixture
def verified(tmp_path, monkeypatch):
    """A host file converged and recorded as bkprov records a verified run."""
    monkeypatch.setenv("BKPROV_CACHE", str(tmp_path / "cache"))
    managed = tmp_path / "buildkitd.toml"
    managed.write_text("[worker.oci]\n")
    state = {"snapshots": [host_state.snapshot([str(managed)], [])], "proof": PROOF}
    played = PlayResult("provision.yml", rc=0, status="successful")
    played.hosts["here"] = HostResult("here", OK, phase="done", version="v9.9.9", state=state)
    recorded.record(LocalTarget(), played, "key-1")
    return managed


def test_an_unchanged_host_gets_the_proof_only(verified):
    said: list[str] = []
    result = recorded.prove(LocalTarget(), "key-1", "v9.9.9", said.append)
    assert result is not None and result.succeeded
    assert result.hosts["here"].build_output == "buildctl github.com/moby/buildkit v9.9.9 abc"
    assert result.hosts["here"].installed_version == "v9.9.9"
    assert "1 paths, 0 units checked" in said[0]


def test_another_key_or_version_means_the_playbook(verified):
    assert recorded.prove(LocalTarget(), "key-2", "v9.9.9", print) is None
    assert recorded.prove(LocalTarget(), "key-1", "v9.9.8", print) is None


def test_a_changed_file_means_the_playbook_and_says_why(verified):
    verified.write_text("[worker.oci]\n  enabled = false\n")
    said: list[str] = []
    assert recorded.prove(LocalTarget(), "key-1", "v9.9.9", said.append) is None
    assert f"{verified} changed" in said[0] and "running the playbook" in said[0]


def test_a_failing_proof_means_the_playbook(verified, tmp_path):
    path = recorded.record_path(LocalTarget(), "here")
    path.write_text(path.read_text().replace("abc'", "abc'; exit 1"))
    said: list[str] = []
    assert recorded.prove(LocalTarget(), "key-1", "v9.9.9", said.append) is None
    assert "its proof build failed (exit 1)" in said[0]


def test_a_failed_run_forgets_the_host(verified):
    failed = PlayResult("provision.yml", rc=2, status="failed")
    failed.hosts["here"] = HostResult("here", "failed", phase="verify", version="v9.9.9")
    recorded.record(LocalTarget(), failed, "key-1")
    assert not recorded.record_path(LocalTarget(), "here").exists()
    assert recorded.prove(LocalTarget(), "key-1", "v9.9.9", print) is None


def test_the_key_follows_the_request_the_artifacts_and_the_code():
    base = recorded.run_key({"buildkit_version": "v0.10.6"}, {"a.tar.gz": "1"})
    assert base == recorded.run_key({"buildkit_version": "v0.10.6"}, {"a.tar.gz": "1"})
    assert base != recorded.run_key({"buildkit_version": "v0.10.6", "verify_registry": "r:5000"}, {"a.tar.gz": "1"})
    assert base != recorded.run_key({"buildkit_version": "v0.10.6"}, {"a.tar.gz": "2"})


def test_the_code_digest_covers_every_file(tmp_path):
    (tmp_path / "roles").mkdir()
    (tmp_path / "roles" / "x.yml").write_text("a")
    before = recorded.tree_digest(tmp_path)
    (tmp_path / "roles" / "x.yml").write_text("b")
    assert recorded.tree_digest(tmp_path) != before


def test_a_users_inventory_is_never_recorded(tmp_path, monkeypatch):
    """Its hosts always go through Ansible (their connection settings are the inventory's), so nothing is kept."""
    monkeypatch.setenv("BKPROV_CACHE", str(tmp_path / "cache"))

    class Inventory(LocalTarget):
        kind, name = "inventory", str(tmp_path / "hosts.yml")

        def inventory(self):
            return self.name

    played = PlayResult("provision.yml", rc=0, status="successful")
    state = {"snapshots": [{"paths": {}, "units": {}}], "proof": PROOF}
    played.hosts["h1"] = HostResult("h1", OK, phase="done", version="v9.9.9", state=state)
    recorded.record(Inventory(), played, "key-1")
    assert not (tmp_path / "cache" / ".bkprov" / "recorded").exists()
