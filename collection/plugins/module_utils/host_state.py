# Copyright: bkprov developers
# Apache-2.0
"""The state a converge left on a host, read back from the running system, and the proof build re-run.

This file runs ON THE TARGET with the Python standard library only (3.6+), like converge.py.

``snapshot(paths, units)`` is what converge reports after it finished: for every path it manages,
its lstat identity (type, mode, owner, size, mtime, ctime, inode, link target; ``None`` when it must
be absent), and for every unit what systemd says of it (loaded from which file and drop-ins, enabled,
active, whether its files changed since the last daemon-reload). Any write to a managed file, a new
drop-in, a stopped or disabled unit, a reinstall, changes it: ctime cannot be set back by a user.

``main()`` (``python3 -c SOURCE JSON``: one command, no stdin needed) takes snapshots recorded
after a verified run and the verify role's rendered build script: when the host still matches every
snapshot, it runs that script (the same proof build the verify role runs) and returns its output;
otherwise it names what differs and runs nothing. ``bkprov provision`` uses it to prove an
up-to-date host without starting Ansible; anything that differs goes through the playbook.
"""

import json
import os
import stat
import subprocess
import sys

UNIT_PROPERTIES = ("LoadState", "FragmentPath", "DropInPaths", "UnitFileState", "ActiveState", "NeedDaemonReload")


def identity(path):
    """What must stay the same for ``path`` to be untouched; None when it does not exist."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
    return [st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, link]


def unit_properties(units):
    """{unit: {property: value}} from one ``systemctl show`` (no volatile fields: no PIDs, no timestamps)."""
    if not units:
        return {}
    try:
        proc = subprocess.run(
            ["systemctl", "show", "--property=" + ",".join(UNIT_PROPERTIES), *units],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            universal_newlines=True,
            timeout=30,
            check=False,
        )
        text = proc.stdout if proc.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        text = ""
    found = {}
    for unit, chunk in zip(units, text.split("\n\n")):  # noqa: B905 - Python 3.6+ on the target
        found[unit] = dict(line.partition("=")[::2] for line in chunk.splitlines() if "=" in line)
    return {unit: found.get(unit, {}) for unit in units}


def snapshot(paths, units):
    """The managed paths' identities and the units' state, drop-in files included."""
    props = unit_properties(list(units))
    dropins = sorted(set(p for u in props.values() for p in (u.get("DropInPaths") or "").split() if p))
    every = sorted(set(list(paths) + dropins))
    return {"paths": {p: identity(p) for p in every}, "units": props}


def differences(recorded):
    """What differs now from a recorded snapshot, one line each (empty: the host is as it was left)."""
    now = snapshot(recorded.get("paths") or {}, recorded.get("units") or {})
    lines = []
    for path, was in sorted((recorded.get("paths") or {}).items()):
        is_now = now["paths"].get(path)
        if is_now == was:
            continue
        if was is None:
            lines.append("%s exists (it was absent)" % path)
        elif is_now is None:
            lines.append("%s is gone" % path)
        else:
            lines.append("%s changed" % path)
    for path in sorted(set(now["paths"]) - set(recorded.get("paths") or {})):
        lines.append("%s is new (a drop-in)" % path)
    for unit, was in sorted((recorded.get("units") or {}).items()):
        is_now = now["units"].get(unit) or {}
        for key in UNIT_PROPERTIES:
            if is_now.get(key) != was.get(key):
                lines.append("%s %s is %r (was %r)" % (unit, key, is_now.get(key), was.get(key)))
    return lines


def prove(snapshots, script, timeout):
    """Check every snapshot, then (only if nothing differs) run the proof build script."""
    differ = [line for snap in snapshots for line in differences(snap)]
    if differ:
        return {"same": False, "differences": differ}
    try:
        proc = subprocess.run(
            ["sh", "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            universal_newlines=True,
            timeout=timeout,
            check=False,
        )
        rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired:
        rc, stdout, stderr = 124, "", "the proof build timed out after %s s" % timeout
    return {"same": True, "rc": rc, "stdout": stdout, "stderr": stderr}


def main():
    """Entry point for ``python3 -c SOURCE JSON``: JSON is {snapshots, script, timeout}."""
    params = json.loads(sys.argv[1])
    result = prove(params.get("snapshots") or [], params.get("script") or "", float(params.get("timeout") or 600))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
