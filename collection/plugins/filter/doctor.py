# Copyright: bkprov developers
# Apache-2.0
"""Filter: one line a person can act on for a host doctor could not read.

Ansible reports a module that never ran as "Module result deserialization failed: No start of json
char found", with the real reason (``sudo: not found``, ``No such container``) in module_stderr.
"""

from __future__ import annotations

import re

DOCUMENTATION = r"""
name: doctor_unread_reason
short_description: Why doctor could not read a host, from the failed task's result
description:
  - Takes the registered result of a failed or unreachable task and returns one line naming the
    reason and what to do (no sudo for a non-root connection, no container, no Python, …).
positional: host
options:
  _input:
    description: The registered task result.
    type: dict
    required: true
  host:
    description: The inventory name of the host.
    type: str
    required: true
"""

# (pattern in the host's own words, what to say; {host} is the inventory name). First match wins.
REASONS = (
    (r"No such container", "there is no container {host} (docker ps -a lists them)"),
    (r"is not running", "container {host} is not running: docker start {host}"),
    (
        r"sudo: (command )?not found|sudo: not found|no sudo",
        "the connection is not root and {host} has no sudo: connect as root (ansible_user=root) or install sudo",
    ),
    (
        r"a password is required|incorrect password|Missing sudo password",
        "the connection is not root and sudo on {host} wants a password: pass --ask-become-pass or connect as root",
    ),
    (
        r"python[0-9.]*: (command )?not found|python[0-9.]*: No such file|[Ii]nterpreter",
        "no usable Python on {host} (Ansible modules need python3): install python3 or set ansible_python_interpreter",
    ),
)


def raw_text(result):
    """What the host said first: its stderr, its stdout, else Ansible's message."""
    for key in ("module_stderr", "module_stdout", "msg"):
        text = str((result or {}).get(key) or "").strip()
        if text:
            return text
    return "no output"


def doctor_unread_reason(result, host):
    raw = raw_text(result)
    if (result or {}).get("unreachable"):
        return "cannot reach %s: %s" % (host, raw[:300])
    for pattern, why in REASONS:
        if re.search(pattern, raw):
            return why.format(host=host)
    return "doctor could not read %s: %s" % (host, raw[:300])


class FilterModule:
    def filters(self):
        return {"doctor_unread_reason": doctor_unread_reason}
