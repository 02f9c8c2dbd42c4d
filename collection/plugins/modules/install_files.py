#!/usr/bin/python
# Copyright: bkprov developers
# Apache-2.0
"""Write a set of small files (config, units) and ensure a system group, in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
module: install_files
short_description: Ensure a system group and write several small files in one round trip
description:
  - Creates C(group) as a system group when missing, then writes each file of C(files) whose
    content or mode differs (atomically, through a temporary file in the same directory,
    creating parent directories), and removes each path in C(absent).
  - Reports which paths changed, so callers notify handlers only on real changes.
options:
  group:
    description: System group to create when missing; empty for none.
    type: str
    default: ""
  files:
    description: Files to write.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      content:
        description: Full content.
        type: str
        required: true
      mode:
        description: Octal mode, for example C("0644").
        type: str
        default: "0644"
  absent:
    description: Paths to remove when present.
    type: list
    elements: path
    default: []
"""

EXAMPLES = r"""
- name: Write buildkitd.toml and the units
  bkprov.buildkit.install_files:
    group: buildkit
    files:
      - path: /etc/buildkit/buildkitd.toml
        content: "debug = false\n"
"""

RETURN = r"""
changed_paths:
  description: Paths written or removed.
  type: list
  elements: str
  returned: always
group_created:
  description: Whether the group was created.
  type: bool
  returned: always
"""

import grp
import os
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule


def differs(path, content, mode):
    try:
        with open(path, encoding="utf-8") as handle:
            current = handle.read()
        return current != content or stat.S_IMODE(os.stat(path).st_mode) != mode
    except (OSError, UnicodeDecodeError):
        return True


def write(path, content, mode):
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".bkprov-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main():
    module = AnsibleModule(
        argument_spec=dict(
            group=dict(type="str", default=""),
            files=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(
                    path=dict(type="path", required=True),
                    content=dict(type="str", required=True),
                    mode=dict(type="str", default="0644"),
                ),
            ),
            absent=dict(type="list", elements="path", default=[]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = dict(changed=False, changed_paths=[], group_created=False)
    if p["group"]:
        try:
            grp.getgrnam(p["group"])
        except KeyError:
            result.update(changed=True, group_created=True)
            if not module.check_mode:
                module.run_command(["groupadd", "--system", p["group"]], check_rc=True)
    for item in p["files"]:
        mode = int(item["mode"], 8)
        if differs(item["path"], item["content"], mode):
            result["changed_paths"].append(item["path"])
            if not module.check_mode:
                write(item["path"], item["content"], mode)
    for path in p["absent"]:
        if os.path.lexists(path):
            result["changed_paths"].append(path)
            if not module.check_mode:
                os.unlink(path)
    result["changed"] = bool(result["changed"] or result["changed_paths"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
