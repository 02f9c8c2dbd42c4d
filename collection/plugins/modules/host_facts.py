#!/usr/bin/python
# Copyright: bkprov developers
# Apache-2.0
"""Read what the buildkit role must know about a host, in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
module: host_facts
short_description: Facts bkprov needs before installing BuildKit on a host
description:
  - Reports PID 1, the cgroup layout, the filesystem under BuildKit's root directory,
    the installed bkprov BuildKit version and whether a buildkit.socket unit is installed.
  - Read-only; never changes the host.
options:
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
"""

import os

from ansible.module_utils.basic import AnsibleModule


def mounts():
    """(mountpoint, fstype) from /proc/self/mountinfo, in mount order."""
    rows = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            left, right = line.split(" - ", 1)
            rows.append((left.split()[4].replace("\\040", " "), right.split()[0]))
    return rows


def fstype_of(path, table):
    while not os.path.exists(path) and path != "/":
        path = os.path.dirname(path)
    path = os.path.realpath(path)
    best, fstype = "", ""
    for point, kind in table:
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, kind
    return fstype


def cgroup_layout(table):
    kinds = {kind for point, kind in table if point == "/sys/fs/cgroup"}
    if "cgroup2" in kinds:
        return "v2"
    if any(kind == "cgroup2" and point.startswith("/sys/fs/cgroup/") for point, kind in table):
        return "hybrid"
    return "v1"


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
        ),
        supports_check_mode=True,
    )
    table = mounts()
    try:
        with open("/proc/1/comm", encoding="utf-8") as handle:
            pid1 = handle.read().strip()
    except OSError:
        pid1 = ""
    link = os.path.join(module.params["bin_dir"], "buildkitd")
    installed = ""
    if os.path.islink(link):
        # <root>/<version>/bin/buildkitd
        installed = os.path.basename(os.path.dirname(os.path.dirname(os.readlink(link))))
    module.exit_json(
        changed=False,
        pid1=pid1,
        systemd=os.path.isdir("/run/systemd/system") and pid1 == "systemd",
        cgroup=cgroup_layout(table),
        root_fstype=fstype_of(module.params["buildkit_root"], table),
        installed_version=installed,
        socket_unit=os.path.exists(os.path.join(module.params["unit_dir"], "buildkit.socket")),
        units=unit_states(module) if pid1 == "systemd" else {},
    )


if __name__ == "__main__":
    main()
