"""Known causes reproduced for real on this machine, named by `bkprov doctor` and refused by the roles.

Each host here is a deliberately broken container (no volume on /var/lib/buildkit, no systemd,
Docker's default capabilities); bkprov's own container target avoids all of them.
"""

from __future__ import annotations

import json
import uuid

import pytest

from bkprov.targets import container as ct
from tests.support.helpers import ansible_playbook, bkprov, docker_inventory, provision_refused_early, require_real, sh

pytestmark = pytest.mark.docker


@pytest.fixture
def plain_container(docker_client, base_image):
    """Containers like the target but with one thing missing; removed afterwards."""
    made = []

    def make(volume: bool = True, systemd: bool = True, capabilities: bool = True):
        name = f"bkprov-doctor-{uuid.uuid4().hex[:8]}"
        extra = {}
        if capabilities:
            extra = {"cap_add": ["ALL"], "cap_drop": ct.bounding_set_missing()}
        container = docker_client.containers.run(
            base_image,
            None if systemd else ["sleep", "600"],
            name=name,
            detach=True,
            network_mode="none",
            cgroupns="host",
            stop_signal="SIGRTMIN+3",
            security_opt=["seccomp=unconfined", "apparmor=unconfined"],
            tmpfs={"/run": "rw,mode=755", "/run/lock": "rw", "/tmp": "rw,exec,mode=1777"},
            volumes={
                "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
                **({f"{name}-buildkit": {"bind": "/var/lib/buildkit", "mode": "rw"}} if volume else {}),
            },
            **extra,
        )
        made.append(container)
        if systemd:
            ct.wait_for_systemd(container)
        return name

    yield make
    for container in made:
        container.remove(force=True)
        ct.destroy(docker_client, container.name)  # its named volume


def doctor(tmp_path, name):
    result = bkprov("doctor", "--inventory", str(docker_inventory(tmp_path, name)), "--json")
    findings = json.loads(result.stdout)["findings"][name]
    return result.returncode, {f["check"]: f for f in findings}


def test_forced_overlayfs_on_the_overlay_root_fails_and_doctor_names_it(tmp_path, plain_container):
    require_real("v0.10.6")
    name = plain_container(volume=False)  # /var/lib/buildkit on the container's overlay root
    inventory = docker_inventory(tmp_path, name)

    refused = ansible_playbook(
        "provision.yml", inventory, "-e", "buildkit_version=v0.10.6", "-e", "buildkit_snapshotter=overlayfs"
    )
    assert refused.returncode != 0
    assert "is on overlayfs and the snapshotter is forced to overlayfs" in refused.stdout
    assert sh(name, "test -e /usr/local/bin/buildkitd").returncode == 1  # nothing installed

    # With the default, bkprov picks native on an overlay root and builds.
    installed = ansible_playbook("provision.yml", inventory, "-e", "buildkit_version=v0.10.6")
    assert installed.returncode == 0, installed.stdout[-3000:]
    assert 'snapshotter = "native"' in sh(name, "cat /etc/buildkit/buildkitd.toml").stdout

    # Forced by hand, as people do, the build fails with the bare kernel error...
    sh(name, 'sed -i \'s/"native"/"overlayfs"/\' /etc/buildkit/buildkitd.toml && systemctl restart buildkit.service')
    build = sh(
        name,
        "d=$(mktemp -d) && cp /usr/local/bin/buildctl $d/x"
        " && printf 'FROM scratch\\nCOPY x /x\\nRUN [\"/x\"]\\n' > $d/Dockerfile"
        " && buildctl build --frontend dockerfile.v0 --local context=$d --local dockerfile=$d 2>&1",
    )
    assert build.returncode != 0 and "invalid argument" in build.stdout

    # ...and doctor names the cause, with the mount line as evidence.
    code, findings = doctor(tmp_path, name)
    assert code == 1
    overlay = findings["nested-overlayfs"]
    assert overlay["status"] == "problem"
    assert " - overlay " in overlay["evidence"]
    assert "volume" in overlay["fix"]


def test_doctor_names_a_missing_systemd(tmp_path, plain_container):
    name = plain_container(systemd=False)
    code, findings = doctor(tmp_path, name)
    assert code == 1
    assert findings["systemd"]["status"] == "problem"
    assert findings["systemd"]["evidence"] == "/proc/1/comm: sleep"


def test_missing_capabilities_are_named_and_refused(tmp_path, plain_container):
    name = plain_container(capabilities=False)  # Docker's default set: no CAP_SYS_ADMIN
    code, findings = doctor(tmp_path, name)
    assert code == 1
    assert findings["capabilities"]["status"] == "problem"
    assert "CAP_SYS_ADMIN" in findings["capabilities"]["summary"]
    assert findings["capabilities"]["evidence"].startswith("CapEff:")

    refused = provision_refused_early(tmp_path, name)
    assert refused.returncode != 0
    assert "cannot run BuildKit v0.10.6" in refused.stdout and "CAP_SYS_ADMIN" in refused.stdout


def test_bkprov_targets_are_healthy(tmp_path, make_target):
    name = make_target()
    code, findings = doctor(tmp_path, name)
    assert findings["nested-overlayfs"]["status"] == "ok"
    assert {f["status"] for f in findings.values()} <= {"ok", "warning"}
    assert code == 0
