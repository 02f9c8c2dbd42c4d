# Copyright: bkprov developers
# Apache-2.0
"""Action: fetch → verify → install → configure → (re)start → wait, in as few round trips as possible.

The one install path of the runc and buildkit roles. On the controller it refuses what the
role refused (``refuse``), fetches and verifies the artifact into the cache and reads the files
given by ``src`` (TLS keys stay out of every result). On the host it runs
``module_utils/converge.py`` once, as a plain ``python3 -c`` whose code and arguments arrive on stdin
(plugin_utils/piped.py, shared with host_facts): one connection command, no AnsiballZ, nothing
written to the journal. Only when the host lacks the artifact does a second call follow, with the
artifact streamed on the same stdin after the arguments, where converge's ``main()`` reads it.

Connections that cannot pipe stdin (pipelining off) get the same code through the
``bkprov.buildkit.converge`` module and a file transfer instead.
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.bkprov.buildkit.plugins.module_utils.artifacts import (
    ArtifactError,
    ensure,
    read_lock,
    relpath_for,
)
from ansible_collections.bkprov.buildkit.plugins.plugin_utils import piped


def selected_steps(step_tags, task_tags, run_tags, skip_tags):
    """Which steps run under --tags/--skip-tags: a task tag that names no step (e.g. 'buildkit') selects all."""
    run_tags, skip_tags = set(run_tags or ["all"]), set(skip_tags or [])
    step_only = set().union(*step_tags.values()) if step_tags else set()
    everything = "all" in run_tags or bool(run_tags & (set(task_tags) - step_only))
    steps = {}
    for step in ("install", "configure", "run"):
        tags = set(step_tags.get(step) or [])
        steps[step] = bool((everything or run_tags & tags) and not skip_tags & tags)
    # A change made under --tags buildkit_configure still restarts the daemon (as a notified handler
    # would), unless the run step is skipped by name.
    steps["restart"] = not skip_tags & set(step_tags.get("run") or [])
    return steps


def expected_sha256(spec):
    """The sha256 the artifact must have, without reading it: what ensure() would enforce, strongest first
    (an import's recorded hash, the catalog's, one recorded on first use); empty when none is known yet.

    An up-to-date host is recognised by this hash alone, so a re-run never re-hashes the cached tarball;
    the file is verified (ensure) only when it is about to be sent.
    """
    lock = read_lock(spec["cache_dir"]).get(relpath_for(spec["url"]))
    if lock and lock.get("origin") == "import":
        return lock["sha256"]
    return spec.get("sha256") or (lock or {}).get("sha256") or ""


def read_file_item(item):
    """A file for the host: its content given, or read here from the controller path ``src``."""
    item = dict(item)
    if "src" in item:
        with open(os.path.expanduser(item.pop("src")), encoding="utf-8") as handle:
            item["content"] = handle.read()
    if "content" not in item:
        raise AnsibleActionFail(f"file {item.get('path')}: give content or src")
    item["content"] = str(item["content"])
    item["secret"] = bool(item.get("secret"))
    return item


class ActionModule(ActionBase):
    TRANSFERS_FILES = False  # the fallback path makes its own temporary directory
    _VALID_ARGS = frozenset(
        (
            "artifact",
            "binary",
            "release",
            "group",
            "files",
            "absent",
            "stop_before_remove",
            "service",
            "version_argv",
            "step_tags",
            "refuse",
            "warn",
            "facts",
            "likely_missing",
        )
    )

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        refusals = [str(r) for r in args.get("refuse") or [] if r]
        if refusals:
            return dict(result, failed=True, phase="preflight", msg="\n".join(refusals))
        warnings = [str(w) for w in args.get("warn") or [] if w]

        params = {
            "check_mode": bool(self._task.check_mode),
            "steps": selected_steps(
                args.get("step_tags") or {},
                self._task.tags,
                task_vars.get("ansible_run_tags"),
                task_vars.get("ansible_skip_tags"),
            ),
            "group": args.get("group") or "",
            "absent": list(args.get("absent") or []),
            "stop_before_remove": list(args.get("stop_before_remove") or []),
            "version_argv": list(args.get("version_argv") or []),
        }
        spec = args.get("artifact") if params["steps"]["install"] else None
        artifact = None
        digest = ""
        if spec:
            try:
                digest = expected_sha256(spec)
                if not digest:  # nothing known about it yet: fetch (or record on first use) now
                    artifact = self._ensure(spec, warnings)
                    digest = artifact.sha256
            except ArtifactError as exc:
                return dict(result, failed=True, phase="install", msg=str(exc))
        for kind in ("binary", "release"):
            if args.get(kind) and params["steps"]["install"]:
                if not spec:
                    raise AnsibleActionFail(f"{kind} needs artifact (url, cache_dir) to install from")
                params[kind] = dict(args[kind], sha256=digest)
        try:
            params["files"] = [read_file_item(item) for item in args.get("files") or []]
        except OSError as exc:
            return dict(result, failed=True, phase="install", msg=f"cannot read a file to install: {exc}")
        if args.get("service"):
            params["service"] = dict(args["service"])

        # A host known not to have the release (a fresh one) gets the artifact with the first command,
        # saving the round trip that would only ask for it; a wrong guess costs one transfer, nothing else.
        send_now = bool(args.get("likely_missing")) and spec is not None and not self._task.check_mode
        if send_now:
            try:
                artifact = self._artifact_for(artifact, spec, params, warnings)
            except ArtifactError as exc:
                return dict(result, failed=True, phase="install", msg=str(exc))
        out = self._converge(params, artifact.path if send_now else None, task_vars)
        if out.get("needs_artifact"):
            try:
                artifact = self._artifact_for(artifact, spec, params, warnings)
            except ArtifactError as exc:
                return dict(result, failed=True, phase="install", msg=str(exc))
            out = self._converge(params, artifact.path, task_vars)
            if out.get("needs_artifact"):
                return dict(
                    result, failed=True, phase="install", msg="the host still lacks the artifact after it was sent"
                )
        if artifact is not None:
            result["artifact"] = {"path": artifact.path, "sha256": artifact.sha256, "origin": artifact.origin}

        diff = out.pop("diff", [])
        result.update(out)
        if self._task.diff and diff:
            result["diff"] = diff
        if warnings:
            result["warnings"] = warnings
        if args.get("facts") and not out.get("failed"):
            result["ansible_facts"] = dict(args["facts"])
        return result

    def _artifact_for(self, artifact, spec, params, warnings):
        """The verified artifact (fetched once), its sha256 stamped on what the host installs from it."""
        artifact = artifact or self._ensure(spec, warnings)
        for kind in ("binary", "release"):
            if kind in params:
                params[kind]["sha256"] = artifact.sha256
        return artifact

    def _ensure(self, spec, warnings):
        """The artifact fetched into the controller cache and verified (sha256)."""
        artifact = ensure(
            url=spec["url"],
            cache_dir=spec["cache_dir"],
            mirror=spec.get("mirror") or "",
            expected=spec.get("sha256") or "",
        )
        if artifact.warning:
            warnings.append(artifact.warning)
        return artifact

    # ------------------------------------------------------------ remote side

    def _converge(self, params, artifact_path, task_vars):
        if self._connection.is_pipelining_enabled():
            return self._converge_piped(params, artifact_path, task_vars)
        return self._converge_module(params, artifact_path, task_vars)

    def _converge_piped(self, params, artifact_path, task_vars):
        # converge's main() reads <len>\n<params> and then the artifact from stdin itself ("main").
        tail = b""
        if artifact_path:
            with open(artifact_path, "rb") as handle:
                tail = handle.read()
        params = dict(params, artifact_follows=bool(artifact_path))
        return piped.run(self, task_vars, "converge:main", params, call="main", tail=tail, what="the converge step")

    def _converge_module(self, params, artifact_path, task_vars):
        module_args = {k: v for k, v in params.items() if k not in ("check_mode", "files")}
        files = params.get("files") or []
        module_args["files"] = [f for f in files if not f["secret"]]
        module_args["secret_files"] = [f for f in files if f["secret"]]
        remote_tmp = None
        try:
            if artifact_path:
                remote_tmp = self._make_tmp_path()
                remote = self._connection._shell.join_path(remote_tmp, "artifact")
                self._transfer_file(artifact_path, remote)
                self._fixup_perms2((remote_tmp, remote))
                module_args["artifact_path"] = remote
            out = self._execute_module(
                module_name="bkprov.buildkit.converge", module_args=module_args, task_vars=task_vars
            )
        finally:
            if remote_tmp:
                self._remove_tmp_path(remote_tmp, force=True)
        out.pop("invocation", None)
        return out
