#!/usr/bin/python
# Copyright: bkprov developers
# Apache-2.0
"""Install, configure, (re)start and wait for one component, in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
module: converge
short_description: Install a release, write its files and units, (re)start it and wait until it answers
author: bkprov developers (@bkprov)
description:
  - The one install path of the C(bkprov.buildkit) roles. The action of the same name fetches and
    verifies the artifact into the controller cache (C(artifact)), reads files given by C(src) on the
    controller, then converges the host in one connection command; the artifact travels only when the
    host lacks it.
  - "Install: one binary (C(binary), e.g. runc: replaced when its sha256 differs, then its C(--version)
    must name C(binary.version)) or a release tarball (C(release)) unpacked into a versioned directory
    whose binaries are linked into C(release.bin_dir); links into C(release.root) left by another version
    are removed."
  - "Configure: a system group (C(group)), small files (C(files); C(secret) ones never appear in a diff or
    result) and paths to remove (C(absent)); units in C(stop_before_remove) are stopped and disabled
    before their file goes."
  - "Run: after any change the service is stopped, systemd reloaded, the socket (if any) restarted and the
    service started; units in C(service.enable) are enabled. Then C(service.wait.argv) is polled every
    0.1 s. A failed unit or a restart loop ends the wait at once, with the unit's journal lines."
  - Steps follow C(--tags)/C(--skip-tags) through C(step_tags). Check mode reports every step without
    changing anything; diff mode shows file contents (never those of secret files).
options:
  artifact:
    description: Where the release comes from (C(url), C(cache_dir), C(mirror), C(sha256) from the catalog); used by the action.
    type: dict
  binary:
    description: Install one executable, C(path) and the C(version) its C(--version) must print.
    type: dict
  release:
    description:
      - Install a release tarball, C(dest) (versioned directory), C(root) (parent of all versions), C(bin_dir),
        C(required) and C(expected) binaries, C(keep) (path kept on the host for a later reinstall).
    type: dict
  group:
    description: System group to create when missing.
    type: str
    default: ""
  files:
    description: Files to write, each C(path), C(content) (or C(src) on the controller), C(mode), C(secret).
    type: list
    elements: dict
    default: []
  secret_files:
    description: Files whose content is key material (filled by the action; never logged).
    type: list
    elements: dict
    default: []
  absent:
    description: Paths to remove.
    type: list
    elements: path
    default: []
  stop_before_remove:
    description: Units (C(name), C(path)) to stop and disable when their unit file exists.
    type: list
    elements: dict
    default: []
  service:
    description:
      - C(service) (the daemon's unit), C(socket) (its socket unit or empty), C(enable) (units to enable),
        C(wait) (C(argv), C(timeout), C(what)).
    type: dict
  version_argv:
    description: Command whose C(--version) output names the installed version (reported as C(installed_version)).
    type: list
    elements: str
    default: []
  steps:
    description: Which of install, configure and run to do (the action sets it from the tags).
    type: dict
  artifact_path:
    description: The artifact on the host (the action's file transfer).
    type: path
  step_tags:
    description: "Action only. Tags selecting each step, e.g. C({install: [buildkit_install]})."
    type: dict
  refuse:
    description: Action only. Messages; any non-empty one fails the task before anything changes.
    type: list
    elements: str
  warn:
    description: Action only. Warnings to show.
    type: list
    elements: str
  facts:
    description: Action only. Facts to set on success.
    type: dict
  likely_missing:
    description: Action only. The host is known to lack the release (a fresh host); send the artifact with the first command.
    type: bool
"""

EXAMPLES = r"""
- name: Install runc v1.0.2
  bkprov.buildkit.converge:
    artifact:
      url: https://github.com/opencontainers/runc/releases/download/v1.0.2/runc.amd64
      cache_dir: ~/.cache/bkprov
    binary:
      path: /usr/local/sbin/runc
      version: 1.0.2
"""

RETURN = r"""
phase:
  description: Where the converge stopped or ended (install, start).
  type: str
  returned: always
installed_version:
  description: The version C(version_argv) reports.
  type: str
  returned: always
install:
  description: What the install step did (changed, unpacked, linked, removed, binaries, missing).
  type: dict
  returned: when installing
files:
  description: Paths written or removed (C(changed_paths)) and C(group_created).
  type: dict
  returned: when configuring
service:
  description: C(restarted), C(started), C(enabled) and C(answered_after) (seconds).
  type: dict
  returned: when running
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.bkprov.buildkit.plugins.module_utils.converge import converge


def main():
    module = AnsibleModule(
        argument_spec=dict(
            artifact=dict(type="dict"),
            binary=dict(type="dict"),
            release=dict(type="dict"),
            group=dict(type="str", default=""),
            files=dict(type="list", elements="dict", default=[]),
            secret_files=dict(type="list", elements="dict", default=[], no_log=True),
            absent=dict(type="list", elements="path", default=[]),
            stop_before_remove=dict(type="list", elements="dict", default=[]),
            service=dict(type="dict"),
            version_argv=dict(type="list", elements="str", default=[]),
            steps=dict(type="dict"),
            artifact_path=dict(type="path"),
            step_tags=dict(type="dict"),
            refuse=dict(type="list", elements="str"),
            warn=dict(type="list", elements="str"),
            facts=dict(type="dict"),
            likely_missing=dict(type="bool"),
        ),
        supports_check_mode=True,
    )
    params = dict(module.params, check_mode=module.check_mode)
    params["files"] = list(params["files"]) + [dict(f, secret=True) for f in params.pop("secret_files")]
    result = converge(params, params.pop("artifact_path"))
    if not module._diff:
        result.pop("diff", None)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
