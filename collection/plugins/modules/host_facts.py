#!/usr/bin/python
# Copyright: bkprov developers
# Apache-2.0
"""Read what the buildkit role and doctor must know about a host, in one round trip.

The code is module_utils/host_facts.py; this file documents it and runs it as an AnsiballZ module.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: host_facts
short_description: Facts bkprov needs about a BuildKit host, and known causes of failure
author: bkprov developers (@bkprov)
description:
  - Reports PID 1, the cgroup layout, the filesystem under BuildKit's root directory,
    the installed BuildKit version and whether a buildkit.socket unit is installed.
  - Diagnoses the host (module_utils/diagnosis.py) and returns C(findings), each with status,
    cause, evidence and fix; the roles' preflight and C(bkprov doctor) use them.
  - With C(discover), reads the configuration buildkitd really runs with from the system, never from
    files bkprov would have written; the running process's command line (C(/proc/PID/cmdline)),
    else the unit's C(ExecStart) as systemd resolved it with its drop-ins (C(systemctl show)); the
    C(--config) TOML actually given; the root, snapshotter and runtime actually used; and, where the
    daemon answers, C(buildctl debug workers -v). Every finding's evidence names its source.
  - With C(probe), runs one small offline build (RUN, then COPY onto the RUN's layer) where the daemon
    answers, and sorts its error into the known causes. Before FileOp (v0.3.x, v0.4.x) COPY runs a helper
    image, served on localhost from the verify role's files, which this module's action plugin passes.
  - Changes nothing on the host (the probe's build context and its cache record aside).
  - Where the connection pipelines, the action plugin runs the same code (module_utils/host_facts.py) as one
    piped C(python3) command instead of this module, without AnsiballZ; the options and results are the same.
options:
  release:
    description: Catalog entry of the BuildKit version in question (from the C(bkprov.buildkit.catalog) lookup).
    type: dict
    default: {}
  runtime_release:
    description: Catalog entry of the runc release the OCI runtime reports (lookup C(runc:<tag>)); its
      defects are named with the catalog's texts.
    type: dict
    default: {}
  snapshotter:
    description: The OCI worker snapshotter that will be configured; empty = read it from the installed
      buildkitd.toml and buildkit.service (C(auto) when neither sets it). Ignored with C(discover).
    type: str
    default: auto
  config_file:
    description: buildkitd.toml to read the snapshotter from when C(snapshotter) is empty. Ignored with C(discover).
    type: path
    default: /etc/buildkit/buildkitd.toml
  runtime:
    description: OCI runtime to ask for C(--version) (the runc checks); empty to skip, or with C(discover)
      to use the runtime buildkitd really uses.
    type: str
    default: ""
  journal:
    description: Also read the last buildkit journal lines for signs of known failures.
    type: bool
    default: false
  buildkit_root:
    description: BuildKit's state directory (C(--root)); the nearest existing parent is examined.
      Ignored with C(discover).
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
  discover:
    description: Read buildkitd's effective configuration, its daemon, host requirements and inotify use
      from the running system (what C(bkprov doctor) does).
    type: bool
    default: false
  unit:
    description: The systemd service of buildkitd, when no running buildkitd names its own.
    type: str
    default: buildkit.service
  probe:
    description: Where the daemon answers, run the probe build (needs C(discover)).
    type: bool
    default: false
  probe_timeout:
    description: Seconds the probe build may take.
    type: int
    default: 180
  busybox:
    description: A static busybox for the probe's FROM scratch image; empty = find one (Debian busybox-static).
    type: path
    default: ""
  copy_helper:
    description: The verify role's C(copy) script and C(helper_registry.py) as C({copy, registry}) texts,
      for the probe's COPY before FileOp. The action plugin fills this in.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Read the host's facts
  bkprov.buildkit.host_facts:
  register: __facts

- name: Diagnose whatever BuildKit runs here, with a probe build
  bkprov.buildkit.host_facts:
    discover: true
    probe: true
    journal: true
  register: __doctor
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
  description: Version of the BuildKit found (its C(--version) with C(discover), else the buildkitd link), empty if none.
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
user_id:
  description: The effective uid the module ran as (doctor escalates only when it is not 0).
  type: int
  returned: always
runtime_release_tag:
  description: The runc release the OCI runtime reports, as a catalog key (C(v1.0.2)); empty if unknown.
  type: str
  returned: always
effective:
  description: With C(discover), buildkitd's effective settings (config, root, addr, snapshotter, runtime),
    each C({value, source}).
  type: dict
  returned: always
build_output:
  description: The probe build's RUN line, empty when no probe ran or it failed.
  type: str
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

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.bkprov.buildkit.plugins.module_utils.host_facts import ARGUMENT_SPEC
from ansible_collections.bkprov.buildkit.plugins.module_utils.host_facts import main as read_host


def main():
    # The action runs read_host() itself, without this module, where the connection pipes stdin; this
    # module is its path for connections that do not (and what ansible-doc and sanity read).
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.exit_json(**read_host(module.params))


if __name__ == "__main__":
    main()
