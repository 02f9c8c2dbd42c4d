#!/usr/bin/python
# Copyright: bkprov developers
# Apache-2.0
"""Read what the buildkit role must know about a host, in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
module: host_facts
short_description: Facts bkprov needs before installing BuildKit on a host, and known causes of failure
description:
  - Reports PID 1, the cgroup layout, the filesystem under BuildKit's root directory,
    the installed bkprov BuildKit version and whether a buildkit.socket unit is installed.
  - Diagnoses the host (module_utils/diagnosis.py) and returns C(findings), each with status,
    cause, evidence and fix; the roles' preflight and C(bkprov doctor) use them.
  - Read-only; never changes the host.
options:
  release:
    description: Catalog entry of the BuildKit version in question (from the C(bkprov.buildkit.catalog) lookup).
    type: dict
    default: {}
  snapshotter:
    description: The OCI worker snapshotter that will be configured; empty = read it from the installed
      buildkitd.toml and buildkit.service (C(auto) when neither sets it).
    type: str
    default: auto
  config_file:
    description: buildkitd.toml to read the snapshotter from when C(snapshotter) is empty.
    type: path
    default: /etc/buildkit/buildkitd.toml
  runtime:
    description: OCI runtime to ask for C(--version) (the runc-keycreate check); empty to skip.
    type: str
    default: ""
  journal:
    description: Also read the last buildkit journal lines for signs of known failures.
    type: bool
    default: false
  buildkit_root:
    description: BuildKit's state directory (C(--root)); the nearest existing parent is examined.
    type: path
    default: /var/lib/buildkit
  bin_dir:
    description: Directory holding the buildkitd link.
    type: path
    default: /usr/local/bin
  unit_dir:
    description: Directory holding bkprov's unit files.
    type: path
    default: /etc/systemd/system
"""

EXAMPLES = r"""
- name: Read the host's facts
  bkprov.buildkit.host_facts:
  register: __facts
"""

RETURN = r"""
pid1:
  description: Command name of PID 1.
  type: str
  returned: always
systemd:
  description: Whether systemd runs as PID 1.
  type: bool
  returned: always
cgroup:
  description: C(v1), C(hybrid) or C(v2).
  type: str
  returned: always
root_fstype:
  description: Filesystem type under the BuildKit root (C(overlay) means nested overlayfs).
  type: str
  returned: always
installed_version:
  description: Version of the BuildKit the buildkitd link points at, empty if none.
  type: str
  returned: always
socket_unit:
  description: Whether a buildkit.socket unit file is installed in C(unit_dir).
  type: bool
  returned: always
units:
  description: C(enabled) and C(active) of buildkit.socket and buildkit.service.
  type: dict
  returned: always
findings:
  description: Diagnosis, one entry per check (check, status ok/warning/problem, summary, evidence, cause, fix).
  type: list
  elements: dict
  returned: always
problems:
  description: The findings whose status is C(problem).
  type: list
  elements: dict
  returned: always
"""

import os
import re
import shutil

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.bkprov.buildkit.plugins.module_utils.diagnosis import cgroup_layout, diagnose, mount_of, mounts


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def existing(path):
    """The path itself, or its nearest existing parent, with symlinks resolved (before install
    /var/lib/buildkit may not exist yet; the filesystem it will land on is what matters)."""
    while not os.path.exists(path) and path != "/":
        path = os.path.dirname(path)
    return os.path.realpath(path)


def configured_snapshotter(config_file, unit_file):
    """The snapshotter an installed buildkitd uses: its --oci-worker-snapshotter flag, else the TOML, else auto."""
    flag = re.search(r"--oci-worker-snapshotter[= ]+(\S+)", read(unit_file))
    if flag:
        return flag.group(1)
    toml = re.search(r'^\s*snapshotter\s*=\s*"([^"]*)"', read(config_file), re.MULTILINE)
    return toml.group(1) if toml else "auto"


def unit_states(module):
    states = {}
    for unit in ("buildkit.socket", "buildkit.service"):
        enabled = module.run_command(["systemctl", "is-enabled", unit])[1].strip()
        active = module.run_command(["systemctl", "is-active", unit])[1].strip()
        states[unit] = {"enabled": enabled == "enabled", "active": active == "active"}
    return states


def main():
    module = AnsibleModule(
        argument_spec=dict(
            buildkit_root=dict(type="path", default="/var/lib/buildkit"),
            bin_dir=dict(type="path", default="/usr/local/bin"),
            unit_dir=dict(type="path", default="/etc/systemd/system"),
            release=dict(type="dict", default={}),
            snapshotter=dict(type="str", default="auto"),
            runtime=dict(type="str", default=""),
            config_file=dict(type="path", default="/etc/buildkit/buildkitd.toml"),
            journal=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    mountinfo = read("/proc/self/mountinfo")
    table = mounts(mountinfo)
    pid1 = read("/proc/1/comm").strip()
    evidence = {
        "pid1": pid1,
        "proc1_status": read("/proc/1/status"),
        "apparmor": read("/proc/1/attr/current").rstrip("\x00\n"),
        "mountinfo": mountinfo,
        "buildkit_root": existing(p["buildkit_root"]),
        "snapshotter": p["snapshotter"]
        or configured_snapshotter(p["config_file"], os.path.join(p["unit_dir"], "buildkit.service")),
    }
    runtime = p["runtime"] and (shutil.which(p["runtime"]) or "")
    if runtime:
        rc, out, _err = module.run_command([runtime, "--version"])
        evidence["runtime_version"] = out if rc == 0 else ""
    if p["journal"]:
        evidence["journal"] = module.run_command(
            ["journalctl", "--no-pager", "-n", "300", "-u", "buildkit.service", "-u", "buildkit.socket"]
        )[1]
    findings = [f.as_dict() for f in diagnose(evidence, p["release"] or None)]
    link = os.path.join(module.params["bin_dir"], "buildkitd")
    installed = ""
    if os.path.islink(link):
        # <root>/<version>/bin/buildkitd
        installed = os.path.basename(os.path.dirname(os.path.dirname(os.readlink(link))))
    module.exit_json(
        changed=False,
        pid1=pid1,
        systemd=os.path.isdir("/run/systemd/system") and pid1 == "systemd",
        cgroup=cgroup_layout(table)[0],
        root_fstype=mount_of(evidence["buildkit_root"], table)[1],
        findings=findings,
        problems=[f for f in findings if f["status"] == "problem"],
        installed_version=installed,
        socket_unit=os.path.exists(os.path.join(module.params["unit_dir"], "buildkit.socket")),
        units=unit_states(module) if pid1 == "systemd" else {},
    )


if __name__ == "__main__":
    main()
