"""`bkprov provision` on a host exactly as its last verified run left it: only the proof build runs.

Real systemd containers. The first tests use fake releases (tests/support/fakes.py: a daemon that
answers but builds nothing) so they always run; the last one needs the real v0.10.6 and proves the
shortcut's build is a real one. Every change a user can make to what bkprov manages sends the run
back through the playbook, which converges the host again.
"""

from __future__ import annotations

import json

import pytest

from tests.support.fakes import fake_cache
from tests.support.helpers import bkprov, require_real, sh

pytestmark = pytest.mark.docker


def provision(name: str, env: dict[str, str] | None = None, *extra: str) -> tuple[dict, str]:
    done = bkprov("provision", "v0.10.6", "--name", name, "--json", *extra, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout), done.stderr


def test_a_verified_host_gets_only_the_proof_until_something_changes(tmp_path, make_target):
    env = fake_cache(tmp_path / "cache")
    name = make_target()

    first, _ = provision(name, env)
    assert first["ran"] == "playbook" and first["changed"] > 0

    again, said = provision(name, env)
    assert again["ran"] == "proof" and again["changed"] == 0 and "ansible" not in again["seconds"]
    assert again["build_output"].startswith("buildctl github.com/moby/buildkit v0.10.6")
    assert f"{name} is as bkprov's last verified run left it" in said

    # A file bkprov manages was edited: the playbook runs and puts it back.
    sh(name, "echo '# edited by hand' >> /etc/buildkit/buildkitd.toml")
    edited, said = provision(name, env)
    assert edited["ran"] == "playbook" and edited["changed"] > 0
    assert "/etc/buildkit/buildkitd.toml changed" in said
    assert "edited by hand" not in sh(name, "cat /etc/buildkit/buildkitd.toml").stdout
    assert provision(name, env)[0]["ran"] == "proof"

    # Someone else's drop-in: not bkprov's to remove, but the run goes through the playbook once.
    sh(
        name,
        "mkdir -p /etc/systemd/system/buildkit.service.d && printf '[Service]\\nEnvironment=A=1\\n' "
        "> /etc/systemd/system/buildkit.service.d/site.conf && systemctl daemon-reload",
    )
    dropin, said = provision(name, env)
    assert dropin["ran"] == "playbook"
    assert "/etc/systemd/system/buildkit.service.d/site.conf is new (a drop-in)" in said
    assert provision(name, env)[0]["ran"] == "proof"

    # A stopped daemon: the playbook starts it again.
    sh(name, "systemctl stop buildkit.socket buildkit.service")
    stopped, said = provision(name, env)
    assert stopped["ran"] == "playbook" and "ActiveState is 'inactive' (was 'active')" in said
    assert sh(name, "systemctl is-active buildkit.socket").stdout.strip() == "active"

    # Asked for, the whole playbook runs anyway.
    assert provision(name, env, "--full")[0]["ran"] == "playbook"


def test_another_request_or_a_new_target_of_the_same_name_runs_the_playbook(tmp_path, make_target):
    env = fake_cache(tmp_path / "cache")
    name = make_target()
    assert provision(name, env)[0]["ran"] == "playbook"
    assert provision(name, env)[0]["ran"] == "proof"

    # Another request (a registry for the COPY helper) decides other files: the playbook runs.
    other, _ = provision(name, env, "--registry", "127.0.0.1:5000")
    assert other["ran"] == "playbook"

    # The container is replaced by a new one of the same name: nothing recorded applies to it.
    assert bkprov("destroy", name, env=env).returncode == 0
    fresh, said = provision(name, env)
    assert fresh["ran"] == "playbook" and "last verified run" not in said


@pytest.mark.real
def test_the_proof_is_a_real_build(make_target):
    require_real("v0.10.6")
    name = make_target()
    assert provision(name)[0]["ran"] == "playbook"
    sh(name, "buildctl prune --all >/dev/null")  # nothing cached: the proof builds from scratch
    proof, _ = provision(name)
    assert proof["ran"] == "proof"
    assert proof["build_output"].startswith("buildctl github.com/moby/buildkit v0.10.6 0c9b5aeb")
    assert sh(name, "buildctl du | tail -1").stdout.split()[-1] != "0B"  # the proof left its layers
