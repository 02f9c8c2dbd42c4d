# Copyright: bkprov developers
# Apache-2.0
"""Converge one component on a host in one round trip: install, files, units, (re)start, wait.

This file runs ON THE TARGET and uses only the Python standard library (3.6+), so the
``bkprov.buildkit.converge`` action can send it to ``python3 -c`` over one connection
command, with its arguments and any artifact on stdin, instead of an AnsiballZ module
whose imports alone cost about a second per call. The ``bkprov.buildkit.converge`` module
wraps the same ``converge()`` for connections that cannot pipe stdin.

Steps, each skipped when ``steps`` says so (tags) and only reported in check mode:

1. install: one binary (``binary``, e.g. runc) or a release tarball unpacked into a versioned
   directory whose binaries are linked into a bin directory (``release``). When the wanted
   content is not on the host yet and no artifact came with the call, nothing is changed and
   ``needs_artifact`` is returned: the caller sends the file and calls again.
2. configure: a system group, small files (config, units, TLS files; ``secret`` ones are never
   echoed in a diff) and paths to remove.
3. run: on any change stop, daemon-reload and start again (socket first where socket-activated),
   enable, then poll ``wait.argv`` every 0.1 s until it answers. While polling, the unit's state
   is read too: a failed unit or a restart loop ends the wait at once with the journal lines.
"""

import grp
import hashlib
import json
import os
import queue
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

from ansible_collections.bkprov.buildkit.plugins.module_utils.host_state import snapshot

MARKER = ".bkprov-tarball-sha256"
POLL_SECONDS = 0.1
JOURNAL_LINES = 40
HIDDEN = "(secret content not shown)\n"


class Failure(Exception):
    """Stop the converge; ``phase`` says where (install, configure, start)."""

    def __init__(self, msg, phase):
        Exception.__init__(self, msg)
        self.phase = phase


def run(argv, timeout=None):
    try:
        proc = subprocess.run(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout, check=False
        )
    except OSError as exc:
        return 127, "", str(exc)
    except subprocess.TimeoutExpired:
        return 124, "", "timed out after %s s" % timeout
    return proc.returncode, proc.stdout, proc.stderr


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Artifact(object):
    """An artifact read once, as it arrives (stdin) or from a file: hashed while it is read and, once
    ``keep_in`` was called, written beside where it will live, so keeping it is a rename, not a copy.

    A reader thread receives, hashes and copies while the caller unpacks what it hands over: hashing
    and inflating both release the GIL, so on two CPUs they overlap (seconds on an emulated VM).
    ``keep_in`` comes before the first ``read``.
    """

    CHUNK = 1 << 20

    def __init__(self, stream):
        self.stream = stream
        self.digest = hashlib.sha256()
        self.copy = None  # (path, file) of the copy being written
        self.done = ""
        self.chunks = None  # the reader thread's hand-over, made on the first read
        self.error = None  # what the reader thread hit (a full disk), raised to the caller
        self.chunk, self.pos = b"", 0
        self.eof = False

    def keep_in(self, directory):
        os.makedirs(directory, mode=0o755, exist_ok=True)
        fd, path = tempfile.mkstemp(dir=directory, prefix=".bkprov-incoming-")
        self.copy = (path, os.fdopen(fd, "wb"))

    def _receive(self):
        try:
            while True:
                data = self.stream.read(self.CHUNK)
                self.digest.update(data)
                if self.copy:
                    self.copy[1].write(data)
                self.chunks.put(data)
                if not data:
                    return
        except Exception as exc:  # handed to the reading side
            self.error = exc
            self.chunks.put(b"")

    def _next_chunk(self):
        if self.eof:
            return b""
        if self.chunks is None:
            self.chunks = queue.Queue(maxsize=8)
            self.reader = threading.Thread(target=self._receive)
            self.reader.daemon = True
            self.reader.start()
        data = self.chunks.get()
        if not data:
            self.eof = True
            self.reader.join()
            if self.error is not None:
                raise self.error
        return data

    def read(self, size=-1):
        parts = []
        while size != 0:
            if self.pos >= len(self.chunk):
                self.chunk, self.pos = self._next_chunk(), 0
                if not self.chunk:
                    break
            take = len(self.chunk) - self.pos if size < 0 else min(size, len(self.chunk) - self.pos)
            parts.append(self.chunk[self.pos : self.pos + take])
            self.pos += take
            if size > 0:
                size -= take
        return b"".join(parts)

    def finish(self):
        """Read what is left (a tar stream ends before the gzip trailer); the sha256 of all of it."""
        if not self.done:
            while self.read(self.CHUNK):
                pass
            if self.copy:
                self.copy[1].close()
            if self.stream is not sys.stdin.buffer:
                self.stream.close()
            self.done = self.digest.hexdigest()
        return self.done

    def commit(self, path, mode):
        """Move the verified copy to ``path``."""
        os.chmod(self.copy[0], mode)
        os.replace(self.copy[0], path)
        self.copy = None

    def discard(self):
        """Read and drop whatever was not used (the sender must be able to finish writing)."""
        self.finish()
        if self.copy and os.path.exists(self.copy[0]):
            os.unlink(self.copy[0])
        self.copy = None


def read_text(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def version_word(text):
    """The first word that looks like a version (v0.10.6, 1.0.2) in a --version output."""
    for word in text.split():
        if word[:1] == "v" and word[1:2].isdigit():
            return word
    return ""


def atomic_write(path, data, mode):
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".bkprov-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------- install


def install_binary(spec, artifact, check):
    """One executable (runc): replaced when its sha256 differs, then asked for --version."""
    path, wanted = spec["path"], spec["sha256"]
    current = sha256_of(path) if os.path.isfile(path) else ""
    out = {"changed": False, "path": path, "needs_artifact": False}
    if current == wanted and stat.S_IMODE(os.stat(path).st_mode) == 0o755:
        return out, None
    out["changed"] = True
    diff = {
        "before_header": path,
        "after_header": path,
        "before": "sha256 %s\n" % (current or "(absent)"),
        "after": "sha256 %s\n" % wanted,
    }
    if check:
        return out, diff
    if current != wanted:
        if artifact is None:
            out.update(changed=False, needs_artifact=True)
            return out, None
        artifact.keep_in(os.path.dirname(path))
        if artifact.finish() != wanted:
            raise Failure("%s arrived with another sha256 than the verified artifact %s" % (path, wanted), "install")
        artifact.commit(path, 0o755)
    else:
        os.chmod(path, 0o755)
    expect = spec.get("version") or ""
    if expect:
        rc, stdout, stderr = run([path, "--version"], timeout=30)
        if rc != 0 or expect not in stdout:
            raise Failure(
                "%s --version does not name %s (exit %d): %s" % (path, expect, rc, (stdout + stderr).strip()[:500]),
                "install",
            )
    return out, diff


def unpack(artifact, dest, required, digest):
    """Unpack the release's bin/ entries while the tarball is read (one pass: stream mode), then check
    its sha256; only a tarball with the verified sha256 and every required binary replaces ``dest``."""
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=".unpack-")
    os.chmod(staging, 0o755)  # mkdtemp makes 0700: non-root users of the socket must run buildctl
    try:
        os.mkdir(os.path.join(staging, "bin"), 0o755)
        names = set()
        try:
            with tarfile.open(fileobj=artifact, mode="r|*") as tar:
                for member in tar:
                    name = member.name.lstrip("./")
                    if member.isfile() and name.startswith("bin/") and "/" not in name[4:]:
                        target = os.path.join(staging, name)
                        with open(target, "wb") as handle:
                            shutil.copyfileobj(tar.extractfile(member), handle, 1 << 20)
                        os.chmod(target, 0o755)
                        names.add(name)
        except (tarfile.TarError, EOFError, OSError) as exc:
            if artifact.finish() != digest:
                why = "the release tarball arrived with another sha256 than the verified %s" % digest
            else:
                why = "cannot unpack the release tarball: %s" % exc
            raise Failure(why, "install") from None
        if artifact.finish() != digest:
            raise Failure("the release tarball arrived with another sha256 than the verified %s" % digest, "install")
        missing = [b for b in required if "bin/" + b not in names]
        if missing:
            raise Failure(
                "the release tarball lacks %s; is it the right release tarball (entries bin/<name>)?"
                % ", ".join("bin/" + m for m in missing),
                "install",
            )
        with open(os.path.join(staging, MARKER), "w") as handle:
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


def install_release(spec, artifact, check):
    """A release tarball unpacked into spec['dest'] (versioned), its binaries linked into bin_dir.

    Unchanged when dest holds the tarball with spec['sha256'] and every link is right. The
    tarball is kept as spec['keep'] so a later reinstall needs no transfer.
    """
    dest, digest, required = spec["dest"], spec["sha256"], spec["required"]
    root = os.path.realpath(spec["root"])
    out = {"changed": False, "unpacked": False, "needs_artifact": False, "linked": [], "removed": []}
    installed = (read_text(os.path.join(dest, MARKER)) or "").strip() == digest and all(
        os.path.isfile(os.path.join(dest, "bin", b)) for b in required
    )
    diff = None
    if not installed:
        keep = spec.get("keep") or ""
        out.update(changed=True, unpacked=True)
        diff = {"prepared": "unpack %s into %s\n" % (os.path.basename(keep or "the release tarball"), dest)}
        if check:
            out["binaries"], out["missing"] = list(required), []
            return out, diff
        if artifact is None and keep and os.path.isfile(keep):
            kept = Artifact(open(keep, "rb"))  # noqa: SIM115 - closed by finish()
            try:
                unpack(kept, dest, required, digest)
                artifact = None  # reinstalled from the kept tarball
            except Failure:
                kept.discard()  # a kept tarball that is not the verified one: ask for the artifact
                out.update(changed=False, unpacked=False, needs_artifact=True)
                return out, None
        elif artifact is None:
            out.update(changed=False, unpacked=False, needs_artifact=True)
            return out, None
        else:
            if keep:
                artifact.keep_in(os.path.dirname(keep))
            unpack(artifact, dest, required, digest)
            if keep:
                artifact.commit(keep, 0o644)

    # Installs made before the mode fix have a 0700 versioned directory; repair them.
    for directory in (dest, os.path.join(dest, "bin")):
        if os.path.isdir(directory) and stat.S_IMODE(os.stat(directory).st_mode) != 0o755:
            out["changed"] = True
            if not check:
                os.chmod(directory, 0o755)

    binaries = sorted(os.listdir(os.path.join(dest, "bin"))) if os.path.isdir(os.path.join(dest, "bin")) else []
    out["binaries"] = binaries
    out["missing"] = [b for b in spec.get("expected") or [] if b not in binaries]
    bin_dir = spec["bin_dir"]
    if not check:
        os.makedirs(bin_dir, exist_ok=True)
    for name in binaries:
        target = os.path.join(dest, "bin", name)
        path = os.path.join(bin_dir, name)
        if os.path.lexists(path) and not os.path.islink(path):
            raise Failure(
                "%s exists and is not a bkprov link (another installation?); remove it or set buildkit_bin_dir elsewhere"
                % path,
                "install",
            )
        if check:
            if not (os.path.islink(path) and os.readlink(path) == target):
                out["linked"].append(path)
        elif link(path, target):
            out["linked"].append(path)
    wanted = set(binaries)
    for name in sorted(os.listdir(bin_dir)) if os.path.isdir(bin_dir) else []:
        path = os.path.join(bin_dir, name)
        if name in wanted or not os.path.islink(path):
            continue
        if os.path.realpath(path).startswith(root + os.sep):
            out["removed"].append(path)
            if not check:
                os.unlink(path)
    if out["linked"] or out["removed"]:
        out["changed"] = True
        if diff is None:
            diff = {"prepared": "link %s into %s\n" % (", ".join(binaries), bin_dir)}
    return out, diff


# ---------------------------------------------------------------- configure


def configure(p, check):
    out = {"changed_paths": [], "group_created": False}
    diffs = []
    group = p.get("group") or ""
    if group:
        try:
            grp.getgrnam(group)
        except KeyError:
            out["group_created"] = True
    if out["group_created"]:
        diffs.append({"prepared": "create system group %s\n" % group})
        if not check:
            rc, stdout, stderr = run(["groupadd", "--system", group])
            if rc != 0:
                raise Failure("groupadd --system %s failed: %s" % (group, (stdout + stderr).strip()), "install")
    for item in p.get("files") or []:
        path, content, secret = item["path"], item["content"], bool(item.get("secret"))
        mode = int(str(item.get("mode") or "0644"), 8)
        current = read_text(path)
        same_mode = current is not None and stat.S_IMODE(os.stat(path).st_mode) == mode
        if current == content and same_mode:
            continue
        out["changed_paths"].append(path)
        diffs.append(
            {
                "before_header": path,
                "after_header": path,
                "before": HIDDEN if secret and current else (current or ""),
                "after": HIDDEN if secret else content,
            }
        )
        if not check:
            atomic_write(path, content.encode("utf-8"), mode)
    for unit in p.get("stop_before_remove") or []:
        if not check and os.path.lexists(unit["path"]):
            run(["systemctl", "disable", "--now", unit["name"]])
    for path in p.get("absent") or []:
        if os.path.lexists(path):
            out["changed_paths"].append(path)
            diffs.append({"before_header": path, "after_header": path, "before": "(present)\n", "after": "(absent)\n"})
            if not check:
                os.unlink(path)
    return out, diffs


# ---------------------------------------------------------------- run


def unit_state(*units):
    """systemctl show for several units: {unit: {ActiveState, SubState, Result, NRestarts, UnitFileState, ...}}."""
    props = "ActiveState,SubState,Result,NRestarts,UnitFileState,ExecMainStatus,LoadState"
    _rc, stdout, _stderr = run(["systemctl", "show", "--property=" + props, *units])
    states, chunks = {}, stdout.split("\n\n")
    for unit, chunk in zip(units, chunks):  # noqa: B905 - runs on the target's Python (3.6+), no strict=
        entry = {}
        for line in chunk.splitlines():
            key, _sep, value = line.partition("=")
            entry[key] = value
        states[unit] = entry
    for unit in units:
        states.setdefault(unit, {})
    return states


def journal(units, since):
    argv = ["journalctl", "--no-pager", "-n", str(JOURNAL_LINES)]
    for unit in units:
        argv += ["-u", unit]
    rc, stdout, stderr = run([*argv, "--since", "@%d" % int(since)], timeout=20)
    if rc != 0:  # an old journalctl without @epoch: the last lines, whenever they were written
        rc, stdout, stderr = run(argv, timeout=20)
    return (stdout or stderr).strip() or "(no journal lines)"


def systemctl(*args):
    rc, stdout, stderr = run(["systemctl", *args], timeout=120)
    if rc != 0:
        raise Failure("systemctl %s failed (exit %d): %s" % (" ".join(args), rc, (stdout + stderr).strip()), "start")


def start(svc, restart, check):
    """(Re)start the daemon's units; return what was done."""
    name, socket = svc["service"], svc.get("socket") or ""
    units = [u for u in (socket, name) if u]
    states = unit_state(*units)
    enable = [u for u in svc.get("enable") or [] if states.get(u, {}).get("UnitFileState") != "enabled"]
    first = socket or name
    active = states.get(first, {}).get("ActiveState") == "active"
    # Units systemd has not loaded (a new host) have nothing to stop and no failure to reset: under
    # emulation each of those systemctl calls costs ~0.3 s.
    loaded = [u for u in units if states.get(u, {}).get("LoadState") == "loaded"]
    running = states.get(name, {}).get("ActiveState") not in ("inactive", "failed", None)
    out = {"restarted": bool(restart), "started": bool(not restart and not active), "enabled": enable}
    if check:
        return out
    if restart:
        if name in loaded and running:
            systemctl("stop", name)
        if enable:  # links only: the one daemon-reload below reads them with the new unit files
            systemctl("enable", "--no-reload", *enable)
        systemctl("daemon-reload")
    elif enable:
        systemctl("enable", *enable)
    if loaded:
        run(["systemctl", "reset-failed", *loaded])
    if restart and socket:
        systemctl("restart", socket)
    if restart or not active:
        if socket and not restart:
            systemctl("start", socket)
        # --no-block: a Type=notify daemon that never becomes ready must not hang here for
        # TimeoutStartSec; the wait below watches it instead.
        systemctl("start", "--no-block", name)
    return out


def wait(svc, since):
    """Poll wait.argv every 0.1 s until it answers; fail at once on a failed unit or a restart loop."""
    spec = svc["wait"]
    name, socket = svc["service"], svc.get("socket") or ""
    units = [u for u in (name, socket) if u]
    started = time.time()
    timeout = spec.get("timeout")
    deadline = started + float(60 if timeout in (None, "") else timeout)
    baseline = None
    last = ""
    while True:
        rc, stdout, stderr = run(spec["argv"], timeout=30)
        if rc == 0:
            return {"answered_after": round(time.time() - started, 2)}
        last = (stderr or stdout).strip()
        states = unit_state(*units)
        service = states.get(name, {})
        restarts = int(service.get("NRestarts") or 0)
        if baseline is None:
            baseline = restarts
        why = ""
        if service.get("ActiveState") == "failed":
            why = "%s failed (result %s, exit status %s)" % (
                name,
                service.get("Result") or "?",
                service.get("ExecMainStatus") or "?",
            )
        elif service.get("SubState") == "auto-restart" or restarts > baseline:
            why = "%s is in a restart loop (%d restarts, result %s)" % (name, restarts, service.get("Result") or "?")
        elif socket and states.get(socket, {}).get("ActiveState") == "failed":
            why = "%s failed (result %s)" % (socket, states[socket].get("Result") or "?")
        elif time.time() > deadline:
            why = "it did not answer within %s s (%s is %s/%s)" % (
                spec.get("timeout"),
                name,
                service.get("ActiveState") or "?",
                service.get("SubState") or "?",
            )
        if why:
            raise Failure(
                "%s did not start: %s.\nLast answer of `%s`: %s\nJournal of %s since the start:\n%s"
                % (
                    spec.get("what") or name,
                    why,
                    " ".join(spec["argv"]),
                    last or "(none)",
                    " and ".join(units),
                    journal(units, since),
                ),
                "start",
            )
        time.sleep(POLL_SECONDS)


# ---------------------------------------------------------------- all steps


def ask_version(argv):
    """Start ``BINARY --version`` now and read its answer later (``answered_version``): a Go binary
    takes ~1 s to answer under emulation, time that overlaps the units' start and the wait."""
    if not argv or not os.path.exists(argv[0]):
        return None
    try:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    except OSError:
        return None


def answered_version(proc):
    if proc is None:
        return ""
    try:
        stdout, _stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return ""
    return version_word(stdout) if proc.returncode == 0 else ""


def managed(p, result):
    """The paths and units this converge answers for: what must stay as it left them."""
    paths = list(p.get("absent") or []) + [f["path"] for f in p.get("files") or []]
    if p.get("binary"):
        paths.append(p["binary"]["path"])
    if p.get("release"):
        spec = p["release"]
        paths.append(os.path.join(spec["dest"], MARKER))
        for name in (result.get("install") or {}).get("binaries") or []:
            paths += [os.path.join(spec["dest"], "bin", name), os.path.join(spec["bin_dir"], name)]
    svc = p.get("service") or {}
    units = [u for u in (svc.get("socket"), svc.get("service")) if u]
    return paths, units


def converge(p, artifact=None):
    """Run the steps; return the result dict (``failed`` and ``msg`` on failure, never raises for a Failure).

    ``artifact``: an ``Artifact`` (arriving on stdin), the path of a transferred file, or None.
    """
    if isinstance(artifact, str):
        artifact = Artifact(open(artifact, "rb"))  # noqa: SIM115 - closed by discard()
    try:
        return _converge(p, artifact)
    finally:
        if artifact is not None:
            artifact.discard()


def _converge(p, artifact):
    check = bool(p.get("check_mode"))
    steps = p.get("steps") or {}
    result = {"changed": False, "needs_artifact": False, "phase": "install", "diff": []}
    changed_install = changed_files = False
    version = None  # the installed daemon's --version, asked as soon as its binary is in place
    try:
        if steps.get("install", True) and (p.get("binary") or p.get("release")):
            if p.get("binary"):
                out, diff = install_binary(p["binary"], artifact, check)
            else:
                out, diff = install_release(p["release"], artifact, check)
            result["install"] = out
            if diff:
                result["diff"].append(diff)
            if out["needs_artifact"]:
                result["needs_artifact"] = True
                return result
            changed_install = out["changed"]
        version = ask_version(p.get("version_argv") or [])
        if steps.get("configure", True) and (p.get("files") or p.get("absent") or p.get("group")):
            out, diffs = configure(p, check)
            result["files"] = out
            result["diff"] += diffs
            changed_files = bool(out["changed_paths"] or out["group_created"])
        result["phase"] = "start"
        svc = p.get("service")
        restart = changed_install or changed_files
        if svc and (steps.get("run", True) or (restart and steps.get("restart", True))):
            since = time.time() - 1
            result["service"] = start(svc, restart, check)
            if restart:
                result["diff"].append({"prepared": "restart %s\n" % svc["service"]})
            if not check and svc.get("wait"):
                result["service"].update(wait(svc, since))
    except Failure as exc:
        result.update(failed=True, msg=str(exc), phase=exc.phase)
    service = result.get("service") or {}
    result["changed"] = bool(changed_install or changed_files or service.get("started") or service.get("enabled"))
    result["installed_version"] = answered_version(version or ask_version(p.get("version_argv") or []))
    # What the host looks like now that this component is converged, read back from the system: a later
    # run finds the host up to date when nothing in it differs (module_utils/host_state.py).
    if (
        snapshot
        and not check
        and not result.get("failed")
        and all(steps.get(s, True) for s in ("install", "configure", "run"))
    ):
        result["state"] = snapshot(*managed(p, result))
    return result


def main():
    """Entry point for ``python3 -c``: stdin holds <length>\\n<args JSON>[artifact bytes]."""
    stdin = sys.stdin.buffer
    params = json.loads(stdin.read(int(stdin.readline())).decode("utf-8"))
    # The artifact is unpacked or installed while it arrives, never stored and re-read first.
    result = converge(params, Artifact(stdin) if params.get("artifact_follows") else None)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
