"""A stand-in for upstream's release pages: a directory in the mirror layout, served on 127.0.0.1.

Layout (what bkprov.catalog_refresh reads from a mirror):
  moby/buildkit/releases.json                          the release list (GitHub API shape)
  moby/buildkit/releases/download/<tag>/<file>          release assets
  moby/buildkit/raw/<tag>/<path>                        source files at the tag
The Go files written here are synthetic: flag declarations only, enough for the flag reader.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
from pathlib import Path
from typing import Any


class Mirror:
    """Builds the mirror tree; ``publish`` adds one release the way upstream would list it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = root / "moby" / "buildkit"
        self.releases: list[dict[str, Any]] = []

    def publish(
        self,
        tag: str,
        *,
        published: str = "2026-09-01T10:00:00Z",
        tarball: bool = True,
        provenance: bool = True,
        digest: bool = False,
        runc: str | None = "v1.4.3",
        flags: list[str] | None = None,
        list_assets: bool = True,
    ) -> str | None:
        """Add a release; returns the tarball's sha256 (None without a tarball)."""
        name = f"buildkit-{tag}.linux-amd64.tar.gz"
        download = self.base / "releases" / "download" / tag
        download.mkdir(parents=True, exist_ok=True)
        assets: list[dict[str, Any]] = [{"name": f"buildkit-{tag}.darwin-amd64.tar.gz"}]
        sha = None
        if tarball:
            data = f"not really a tarball of {tag}".encode()
            (download / name).write_bytes(data)
            sha = hashlib.sha256(data).hexdigest()
            asset: dict[str, Any] = {"name": name, "browser_download_url": f"https://example.invalid/{name}"}
            if digest:
                asset["digest"] = f"sha256:{sha}"
            assets.append(asset)
            if provenance:
                statement = {
                    "_type": "https://in-toto.io/Statement/v0.1",
                    "predicateType": "https://slsa.dev/provenance/v0.2",
                    "subject": [
                        {"name": f"buildkit-{tag}.darwin-amd64.tar.gz", "digest": {"sha256": "0" * 64}},
                        {"name": name, "digest": {"sha256": sha}},
                    ],
                    "predicate": {},
                }
                (download / f"{name}.provenance.json").write_text(json.dumps(statement))
                assets.append({"name": f"{name}.provenance.json"})
        raw = self.base / "raw" / tag
        if runc is not None:
            raw.mkdir(parents=True, exist_ok=True)
            (raw / "Dockerfile").write_text(f"# syntax=docker/dockerfile-upstream:master\n\nARG RUNC_VERSION={runc}\n")
        if flags is not None:
            buildkitd = raw / "cmd" / "buildkitd"
            buildkitd.mkdir(parents=True, exist_ok=True)
            declared = "".join(f'\t\tcli.StringFlag{{\n\t\t\tName: "{f.removeprefix("--")}",\n\t\t}},\n' for f in flags)
            (buildkitd / "main.go").write_text(f"package main\n\nvar flags = []cli.Flag{{\n{declared}}}\n")
            for other in ("main_oci_worker.go", "main_containerd_worker.go"):
                (buildkitd / other).write_text("package main\n")
        release = {
            "tag_name": tag,
            "name": tag,
            "draft": False,
            "prerelease": "-" in tag,
            "published_at": published,
            "target_commitish": "master",
        }
        if list_assets:
            release["assets"] = assets
        self.releases.append(release)
        self.write_list()
        return sha

    def write_list(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "releases.json").write_text(json.dumps(list(reversed(self.releases)), indent=1))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    requested: list[str]

    def log_message(self, format: str, *args: Any) -> None:
        self.requested.append(self.path)


class ReleaseServer:
    """Serves a Mirror's root over HTTP on 127.0.0.1; ``requested`` lists the paths asked for."""

    def __init__(self, root: Path) -> None:
        self.requested: list[str] = []
        handler = type("Handler", (_Quiet,), {"requested": self.requested})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ReleaseServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
