"""The collection on its own: built with ansible-galaxy, installed, used from a user's playbook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.support.helpers import ROOT, docker_inventory, require_real, sh

pytestmark = [pytest.mark.docker, pytest.mark.real]
BIN = Path(sys.executable).parent

PLAYBOOK = """\
- name: My own play with bkprov's roles
  hosts: all
  gather_facts: false
  roles:
    - role: bkprov.buildkit.buildkit
      vars:
        buildkit_version: v0.10.6
    - role: bkprov.buildkit.verify
"""


def run(argv: list, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False, cwd=cwd, env=env)


def test_built_collection_installs_and_its_roles_run_from_a_user_playbook(tmp_path, make_target):
    require_real("v0.10.6")
    # A user outside the checkout: none of its Ansible settings, an empty ansible.cfg.
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"), ANSIBLE_NOCOLOR="1")

    built = run(
        [BIN / "ansible-galaxy", "collection", "build", ROOT / "collection", "--output-path", tmp_path], tmp_path, env
    )
    assert built.returncode == 0, built.stderr
    tarball = next(tmp_path.glob("bkprov-buildkit-*.tar.gz"))
    with tarfile.open(tarball) as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))
    assert "community.crypto" in manifest["collection_info"]["dependencies"]  # the TLS tasks use it
    collections = tmp_path / "collections"
    # No Galaxy here: community.crypto comes from the ansible package's collections.
    installed = run(
        [BIN / "ansible-galaxy", "collection", "install", "--no-deps", tarball, "-p", collections], tmp_path, env
    )
    assert installed.returncode == 0, installed.stderr
    assert (collections / "ansible_collections/bkprov/buildkit/catalog/versions.yml").is_file(), installed.stdout

    name = make_target()
    playbook = tmp_path / "site.yml"
    playbook.write_text(PLAYBOOK)
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections)
    played = run([BIN / "ansible-playbook", "-i", docker_inventory(tmp_path, name), playbook], tmp_path, env)
    assert played.returncode == 0, played.stdout[-3000:]
    assert "RUN printed: buildctl github.com/moby/buildkit v0.10.6" in played.stdout
    assert sh(name, "systemctl is-active buildkit.socket").stdout.strip() == "active"
