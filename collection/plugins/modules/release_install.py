#!/usr/bin/python
# Copyright: bkprov developers
# Apache-2.0
"""Install a release tarball into a versioned directory and link its binaries, in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
module: release_install
short_description: Unpack a BuildKit release into a versioned directory and symlink its binaries
description:
  - Unpacks C(src) (a tarball whose entries are C(bin/<name>)) into C(dest) through a temporary
    directory renamed into place, so a failure never leaves a half-unpacked release.
  - Points C(bin_dir/<name>) at C(dest/bin/<name>) for every binary the tarball holds, atomically, and
    removes links in C(bin_dir) that point into C(root) but not into C(dest) (left by another version).
  - Unchanged when C(dest) holds the tarball with C(sha256) and every link is right; then C(src)
    need not exist, so callers copy the tarball only when C(needs_tarball) comes back true.
options:
  src:
    description: Tarball on the target.
    type: path
    required: true
  sha256:
    description: The tarball's sha256 (verified on the controller).
    type: str
    required: true
  dest:
    description: Versioned install directory, for example C(/usr/local/lib/bkprov/buildkit/v0.10.6).
    type: path
    required: true
  root:
    description: Parent of all versioned directories (links into it are ours).
    type: path
    required: true
  bin_dir:
    description: Where the links go.
    type: path
    required: true
  required:
    description: Names the tarball must hold under C(bin/); a missing one fails before anything changes.
    type: list
    elements: str
    required: true
  expected:
    description: Helpers the upstream release holds (qemu, cni); a custom build may lack them, which is reported in C(missing).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Install BuildKit v0.10.6
  bkprov.buildkit.release_install:
    src: /var/cache/bkprov/buildkit-v0.10.6.linux-amd64.tar.gz
    sha256: 9a21a41298c4a2a7a2b57cb90d37463d3a9057aedfe97a04b0e4fd6f622549d8
    dest: /usr/local/lib/bkprov/buildkit/v0.10.6
    root: /usr/local/lib/bkprov/buildkit
    bin_dir: /usr/local/bin
    required: [buildctl, buildkitd, buildkit-runc]
    expected: [buildctl, buildkitd, buildkit-runc, buildkit-qemu-arm]
"""

RETURN = r"""
needs_tarball:
  description: The release is not installed and C(src) is missing; copy it and call again.
  type: bool
  returned: always
unpacked:
  description: Whether the tarball was unpacked in this run.
  type: bool
  returned: always
linked:
  description: Links created or repointed.
  type: list
  elements: str
  returned: always
binaries:
  description: Every binary installed and linked.
  type: list
  elements: str
  returned: always
missing:
  description: Expected helpers the tarball lacks (a custom build).
  type: list
  elements: str
  returned: always
removed:
  description: Stale links removed.
  type: list
  elements: str
  returned: always
"""

import hashlib
import os
import shutil
import stat
import tarfile
import tempfile

from ansible.module_utils.basic import AnsibleModule

MARKER = ".bkprov-tarball-sha256"


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def unpack(module, src, dest, required, digest):
    with tarfile.open(src) as tar:
        names = {m.name.lstrip("./") for m in tar.getmembers() if m.isfile()}
        missing = [b for b in required if f"bin/{b}" not in names]
        if missing:
            module.fail_json(
                msg=f"{src} lacks {', '.join('bin/' + m for m in missing)}; "
                "is it the right release tarball (entries bin/<name>)?"
            )
        parent = os.path.dirname(dest)
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(dir=parent, prefix=".unpack-")
        os.chmod(staging, 0o755)  # mkdtemp makes 0700: non-root users of the socket must run buildctl
        try:
            for member in tar.getmembers():
                name = member.name.lstrip("./")
                if member.isfile() and name.startswith("bin/") and "/" not in name[4:]:
                    member.name = name
                    tar.extract(member, staging, set_attrs=False)
                    os.chmod(os.path.join(staging, name), 0o755)
            with open(os.path.join(staging, MARKER), "w", encoding="utf-8") as handle:
                handle.write(digest + "\n")
            if os.path.isdir(dest):
                old = dest + ".old"
                shutil.rmtree(old, ignore_errors=True)
                os.rename(dest, old)
                os.rename(staging, dest)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def link(path, target):
    if os.path.islink(path) and os.readlink(path) == target:
        return False
    tmp = path + ".bkprov-new"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, path)
    return True


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type="path", required=True),
            sha256=dict(type="str", required=True),
            dest=dict(type="path", required=True),
            root=dict(type="path", required=True),
            bin_dir=dict(type="path", required=True),
            required=dict(type="list", elements="str", required=True),
            expected=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    root = os.path.realpath(p["root"])
    digest = p["sha256"]
    result = dict(changed=False, unpacked=False, needs_tarball=False, linked=[], removed=[])

    if read(os.path.join(p["dest"], MARKER)) != digest or any(
        not os.path.isfile(os.path.join(p["dest"], "bin", b)) for b in p["required"]
    ):
        if not os.path.isfile(p["src"]) or sha256_of(p["src"]) != digest:
            result["needs_tarball"] = True
            module.exit_json(**result, binaries=[], missing=[])
        result.update(changed=True, unpacked=True)
        if module.check_mode:
            module.exit_json(**result, binaries=p["required"], missing=[])
        unpack(module, p["src"], p["dest"], p["required"], digest)

    # Installs made before the mode fix have a 0700 versioned directory; repair them.
    for directory in (p["dest"], os.path.join(p["dest"], "bin")):
        if stat.S_IMODE(os.stat(directory).st_mode) != 0o755:
            result["changed"] = True
            if not module.check_mode:
                os.chmod(directory, 0o755)

    binaries = sorted(os.listdir(os.path.join(p["dest"], "bin")))
    result["binaries"] = binaries
    result["missing"] = [b for b in p["expected"] if b not in binaries]
    os.makedirs(p["bin_dir"], exist_ok=True)
    for name in binaries:
        target = os.path.join(p["dest"], "bin", name)
        path = os.path.join(p["bin_dir"], name)
        if os.path.lexists(path) and not os.path.islink(path):
            module.fail_json(
                msg=f"{path} exists and is not a bkprov link (another installation?); "
                "remove it or set buildkit_bin_dir elsewhere"
            )
        if module.check_mode:
            if not (os.path.islink(path) and os.readlink(path) == target):
                result["linked"].append(path)
        elif link(path, target):
            result["linked"].append(path)

    wanted = set(binaries)
    for name in sorted(os.listdir(p["bin_dir"])):
        path = os.path.join(p["bin_dir"], name)
        if name in wanted or not os.path.islink(path):
            continue
        if os.path.realpath(path).startswith(root + os.sep):
            result["removed"].append(path)
            if not module.check_mode:
                os.unlink(path)

    result["changed"] = bool(result["changed"] or result["linked"] or result["removed"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
