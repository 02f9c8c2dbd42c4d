"""The artifact cache (collection/plugins/module_utils/artifacts.py), imported by its collection name.

Downloads go to a real HTTP server on 127.0.0.1; nothing leaves the machine.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import re
import socket
import tarfile
import threading
import urllib.error
from pathlib import Path
from types import SimpleNamespace

import pytest
from ansible_collections.bkprov.buildkit.plugins.module_utils import artifacts as shared

from bkprov import artifacts, catalog
from bkprov.errors import BkprovError

URL = "https://github.com/moby/buildkit/releases/download/v0.4.0/buildkit-v0.4.0.linux-amd64.tar.gz"
RELPATH = "moby/buildkit/releases/download/v0.4.0/buildkit-v0.4.0.linux-amd64.tar.gz"
PAYLOAD = b"not really a tarball\n" * 100


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(directory: Path) -> list[str]:
    """Files in the cache other than its own bookkeeping (.lock, .locks/, sha256.lock.json)."""
    if not directory.exists():
        return []
    return sorted(
        str(p.relative_to(directory))
        for p in directory.rglob("*")
        if p.is_file() and p.name not in (".lock", "sha256.lock.json") and ".locks" not in p.parts
    )


def lock_file(cache: Path) -> dict:
    return json.loads((cache / "sha256.lock.json").read_text(encoding="utf-8"))["files"]


@pytest.fixture
def core(monkeypatch):
    """The shared artifact module, with retries that do not sleep."""
    monkeypatch.setattr(shared, "time", SimpleNamespace(sleep=lambda seconds: None))
    return shared


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def mirror_dir(tmp_path) -> Path:
    """A mirror in the release layout holding the v0.4.0 tarball."""
    root = tmp_path / "mirror"
    (root / RELPATH).parent.mkdir(parents=True)
    (root / RELPATH).write_bytes(PAYLOAD)
    return root


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the mirror; /fail/... always answers 500, /flaky/... answers 500 twice, then the file."""

    hits: dict[str, int]

    def do_GET(self) -> None:
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if self.path.startswith("/fail/") or (self.path.startswith("/flaky/") and self.hits[self.path] <= 2):
            self.send_error(500, "broken on purpose")
            return
        if self.path.startswith("/flaky/"):
            self.path = self.path[len("/flaky") :]
        super().do_GET()

    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture
def server(mirror_dir):
    hits: dict[str, int] = {}
    handler = type("Handler", (_Handler,), {"hits": hits})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(mirror_dir)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{httpd.server_address[1]}", hits=hits)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- paths


def test_relpath_for_upstream_url(core):
    url = "https://github.com/moby/buildkit/releases/download/v0.4.0/x.tar.gz"
    assert core.relpath_for(url) == "moby/buildkit/releases/download/v0.4.0/x.tar.gz"


def test_relpath_for_other_hosts_keeps_the_host(core):
    assert core.relpath_for("https://example.com/a/b.tgz") == "example.com/a/b.tgz"


def test_source_for(core):
    assert core.source_for(URL, "") == URL
    assert core.source_for(URL, "http://127.0.0.1:8080/") == "http://127.0.0.1:8080/" + RELPATH
    assert core.source_for(URL, "/srv/mirror") == "/srv/mirror/" + RELPATH


def test_driver_needed_uses_release_layout(cache):
    items = artifacts.needed("v0.10.6")
    assert [(i.kind, i.version) for i in items] == [("buildkit", "v0.10.6"), ("runc", "v1.0.2")]
    assert items[0].relpath == "moby/buildkit/releases/download/v0.10.6/buildkit-v0.10.6.linux-amd64.tar.gz"
    assert items[0].sha256 == catalog.get("v0.10.6").sha256
    assert items[1].relpath == "opencontainers/runc/releases/download/v1.0.2/runc.amd64"
    assert not items[0].cached


# ---------------------------------------------------------------- sources


def test_ensure_from_mirror_directory(core, tmp_path, mirror_dir):
    cache = tmp_path / "cache"
    result = core.ensure(URL, str(cache), str(mirror_dir), sha(PAYLOAD))
    assert (cache / RELPATH).read_bytes() == PAYLOAD
    assert result.path == str(cache / RELPATH)
    assert result.relpath == RELPATH
    assert result.sha256 == sha(PAYLOAD)
    assert result.origin == "catalog"
    assert result.downloaded is True
    assert leftovers(cache) == [RELPATH]


def test_ensure_from_mirror_directory_as_file_url(core, tmp_path, mirror_dir):
    cache = tmp_path / "cache"
    core.ensure(URL, str(cache), f"file://{mirror_dir}", sha(PAYLOAD))
    assert (cache / RELPATH).read_bytes() == PAYLOAD


def test_mirror_directory_without_the_file(core, tmp_path):
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    cache = tmp_path / "cache"
    with pytest.raises(core.ArtifactError, match="the mirror has no"):
        core.ensure(URL, str(cache), str(empty), sha(PAYLOAD))
    assert leftovers(cache) == []


def test_ensure_from_mirror_url_reports_progress(core, tmp_path, server):
    cache = tmp_path / "cache"
    seen: list[tuple[int, int | None]] = []
    result = core.ensure(URL, str(cache), server.url, sha(PAYLOAD), lambda done, total: seen.append((done, total)))
    assert (cache / RELPATH).read_bytes() == PAYLOAD
    assert result.downloaded is True
    assert result.origin == "catalog"
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert server.hits == {"/" + RELPATH: 1}


def test_large_download_reports_growing_progress(core, tmp_path, mirror_dir, server):
    big = bytes(range(256)) * (6 * 1024)  # 1.5 MiB: more than one chunk
    (mirror_dir / RELPATH).write_bytes(big)
    seen: list[tuple[int, int | None]] = []
    core.ensure(URL, str(tmp_path / "cache"), server.url, sha(big), lambda done, total: seen.append((done, total)))
    dones = [done for done, _ in seen]
    assert len(seen) >= 2
    assert dones == sorted(dones)
    assert seen[-1] == (len(big), len(big))


def test_cached_file_is_not_fetched_again(core, tmp_path, server):
    cache = tmp_path / "cache"
    core.ensure(URL, str(cache), server.url, sha(PAYLOAD))
    again = core.ensure(URL, str(cache), server.url, sha(PAYLOAD))
    assert again.downloaded is False
    assert again.origin == "catalog"
    assert server.hits == {"/" + RELPATH: 1}


# ---------------------------------------------------------------- verification


def test_catalog_hash_mismatch(core, tmp_path, mirror_dir):
    cache = tmp_path / "cache"
    wrong = "0" * 64
    with pytest.raises(core.ArtifactError) as info:
        core.ensure(URL, str(cache), str(mirror_dir), wrong)
    message = str(info.value)
    assert str(cache / RELPATH) in message
    assert f"expected {wrong}" in message
    assert f"actual {sha(PAYLOAD)}" in message
    assert "bkprov artifacts import" in message


def test_first_use_is_recorded_and_enforced(core, tmp_path, mirror_dir):
    cache = tmp_path / "cache"
    first = core.ensure(URL, str(cache), str(mirror_dir))
    assert first.origin == "first-use"
    assert first.sha256 == sha(PAYLOAD)
    assert "first use" in first.warning
    recorded = lock_file(cache)[RELPATH]
    assert recorded["sha256"] == sha(PAYLOAD)
    assert recorded["origin"] == "first-use"
    assert recorded["recorded"].endswith("Z")

    # The same file passes, now checked against the recorded hash.
    second = core.ensure(URL, str(cache), str(mirror_dir))
    assert (second.origin, second.warning, second.downloaded) == ("first-use", "", False)

    (cache / RELPATH).write_bytes(b"tampered")
    with pytest.raises(core.ArtifactError) as info:
        core.ensure(URL, str(cache), str(mirror_dir))
    assert f"expected {sha(PAYLOAD)}" in str(info.value)
    assert f"actual {sha(b'tampered')}" in str(info.value)


def test_import_wins_over_the_catalog_hash(core, tmp_path):
    cache = tmp_path / "cache"
    build = tmp_path / "my-build.tar.gz"
    build.write_bytes(b"a custom debug build")
    imported = core.import_file(URL, str(cache), str(build))
    assert imported.origin == "import"
    assert imported.sha256 == sha(b"a custom debug build")
    assert (cache / RELPATH).read_bytes() == b"a custom debug build"
    assert lock_file(cache)[RELPATH]["origin"] == "import"
    assert lock_file(cache)[RELPATH]["sha256"] == sha(b"a custom debug build")

    result = core.ensure(URL, str(cache), "", "f" * 64)  # the catalog's hash differs: the import wins
    assert result.origin == "import"
    assert result.sha256 == sha(b"a custom debug build")
    assert result.downloaded is False


def test_imported_file_is_enforced(core, tmp_path):
    cache = tmp_path / "cache"
    build = tmp_path / "my-build.tar.gz"
    build.write_bytes(b"build one")
    core.import_file(URL, str(cache), str(build))
    (cache / RELPATH).write_bytes(b"build two")
    with pytest.raises(core.ArtifactError, match=re.escape(f"expected {sha(b'build one')} (import)")):
        core.ensure(URL, str(cache), "", "")


def test_reimport_replaces_the_recorded_hash(core, tmp_path):
    cache = tmp_path / "cache"
    build = tmp_path / "b.tar.gz"
    build.write_bytes(b"one")
    core.import_file(URL, str(cache), str(build))
    build.write_bytes(b"two")
    core.import_file(URL, str(cache), str(build))
    assert lock_file(cache)[RELPATH]["sha256"] == sha(b"two")
    assert core.ensure(URL, str(cache)).sha256 == sha(b"two")
    assert leftovers(cache) == [RELPATH]


def test_import_of_a_missing_file(core, tmp_path):
    missing = tmp_path / "nope.tar.gz"
    with pytest.raises(core.ArtifactError, match=re.escape("nope.tar.gz: no such file")):
        core.import_file(URL, str(tmp_path / "cache"), str(missing))


def test_broken_lock_file_is_named(core, tmp_path, mirror_dir):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "sha256.lock.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(core.ArtifactError) as info:
        core.ensure(URL, str(cache), str(mirror_dir))
    assert str(cache / "sha256.lock.json") in str(info.value)


def test_lock_file_keeps_other_entries(core, tmp_path, mirror_dir):
    cache = tmp_path / "cache"
    other = "https://github.com/opencontainers/runc/releases/download/v1.0.2/runc.amd64"
    build = tmp_path / "runc"
    build.write_bytes(b"runc")
    core.import_file(other, str(cache), str(build))
    core.ensure(URL, str(cache), str(mirror_dir))
    files = lock_file(cache)
    assert set(files) == {RELPATH, "opencontainers/runc/releases/download/v1.0.2/runc.amd64"}
    assert files["opencontainers/runc/releases/download/v1.0.2/runc.amd64"]["origin"] == "import"


# ---------------------------------------------------------------- failures


def test_unreachable_source(core, tmp_path, closed_port):
    cache = tmp_path / "cache"
    with pytest.raises(core.ArtifactError) as info:
        core.ensure(URL, str(cache), f"http://127.0.0.1:{closed_port}", sha(PAYLOAD))
    message = str(info.value)
    assert f"127.0.0.1:{closed_port}" in message
    assert "BKPROV_MIRROR" in message
    assert "bkprov artifacts import" in message
    assert not (cache / RELPATH).exists()
    assert leftovers(cache) == []
    assert list(cache.rglob("*.partial")) == []


def test_server_error_is_retried_and_leaves_nothing(core, tmp_path, server):
    cache = tmp_path / "cache"
    with pytest.raises(core.ArtifactError) as info:
        core.ensure(URL, str(cache), server.url + "/fail", sha(PAYLOAD))
    assert "500" in str(info.value)
    assert "BKPROV_MIRROR" in str(info.value)
    assert server.hits == {"/fail/" + RELPATH: 3}
    assert leftovers(cache) == []
    assert list(cache.rglob("*.partial")) == []


def test_transient_server_error_recovers(core, tmp_path, server):
    cache = tmp_path / "cache"
    result = core.ensure(URL, str(cache), server.url + "/flaky", sha(PAYLOAD))
    assert result.downloaded is True
    assert (cache / RELPATH).read_bytes() == PAYLOAD
    assert server.hits == {"/flaky/" + RELPATH: 3}
    assert leftovers(cache) == [RELPATH]


def test_truncated_download_is_refused(core, tmp_path):
    class Truncating(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:10])
            self.close_connection = True

        def log_message(self, format, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Truncating)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    cache = tmp_path / "cache"
    try:
        with pytest.raises(core.ArtifactError):
            core.ensure(URL, str(cache), f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------- the driver's wrappers


def test_driver_fetch_checks_the_catalog_hash(cache, tmp_path, monkeypatch):
    item = artifacts.needed("v0.10.6", with_runc=False)[0]
    mirror = tmp_path / "mirror"
    (mirror / item.relpath).parent.mkdir(parents=True)
    (mirror / item.relpath).write_bytes(b"not v0.10.6")
    monkeypatch.setenv("BKPROV_MIRROR", str(mirror))
    with pytest.raises(BkprovError) as info:
        artifacts.fetch(item)
    assert f"expected {catalog.get('v0.10.6').sha256}" in str(info.value)
    assert f"actual {sha(b'not v0.10.6')}" in str(info.value)


def release_tarball(path: Path, version: str) -> Path:
    """bin/buildkitd and bin/buildctl, the latter a script saying ``version`` as buildctl does."""
    with tarfile.open(path, "w:gz") as archive:
        for name, text in (
            ("bin/buildkitd", "buildkitd"),
            ("bin/buildctl", f"buildctl github.com/moby/buildkit {version} x"),
        ):
            data = f"#!/bin/sh\necho '{text}'\n".encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
    return path


def test_driver_import_then_fetch(cache, tmp_path):
    build = release_tarball(tmp_path / "custom.tar.gz", "v0.10.6")
    imported, checked = artifacts.import_file("buildkit", "v0.10.6", str(build))
    assert checked.endswith("--version: buildctl github.com/moby/buildkit v0.10.6 x")
    item = artifacts.needed("v0.10.6", with_runc=False)[0]
    assert item.cached
    assert Path(imported.path) == cache / item.relpath
    fetched = artifacts.fetch(item)  # catalog hash differs; the imported one is enforced
    assert (fetched.origin, fetched.sha256) == ("import", sha(build.read_bytes()))
    assert artifacts.lock_entries()[item.relpath]["origin"] == "import"


def test_driver_unknown_runc_version(cache, tmp_path):
    build = tmp_path / "runc"
    build.write_bytes(b"runc")
    with pytest.raises(BkprovError) as info:
        artifacts.import_file("runc", "v9.9.9", str(build))
    assert info.value.exit_code == 2
    assert "v1.0.2" in str(info.value)


@pytest.mark.parametrize(
    ("output", "version", "named"),
    [
        ("buildctl github.com/moby/buildkit v0.10.6 0c9b5aeb269c", "v0.10.6", True),
        ("buildctl github.com/moby/buildkit v0.10.60 0c9b5aeb269c", "v0.10.6", False),
        ("buildctl github.com/moby/buildkit v0.10.5 0c9b5aeb269c", "v0.10.6", False),
        ("runc version 1.0.2\ncommit: v1.0.2-0-g52b36a2d\nspec: 1.0.2-dev", "v1.0.2", True),
        ("runc version 1.0.0-rc7\nspec: 1.0.1-dev", "v1.0.0-rc7", True),
        ("runc version 1.0.0-rc7\nspec: 1.0.1-dev", "v1.0.0-rc6", False),
        ("runc version 1.1.12+noseccomp\ncommit: 51d5e946", "v1.1.12+noseccomp", True),
        ("runc version 1.1.12+noseccomp\ncommit: 51d5e946", "v1.1.12", True),  # build metadata
        ("runc version 1.1.12\ncommit: 51d5e946", "v1.1.12+noseccomp", False),
        ("runc version 1.1.7\nspec: 1.0.2-dev", "v1.0.2", False),  # the spec version is not runc's
    ],
)
def test_version_output_names_the_release(output, version, named):
    assert artifacts.names_version(output, version) is named


@pytest.mark.parametrize(
    ("error", "again"),
    [
        (urllib.error.URLError(socket.gaierror(-2, "Name or service not known")), False),  # offline
        (urllib.error.HTTPError("http://127.0.0.1/x", 404, "Not Found", None, None), False),
        (urllib.error.HTTPError("http://127.0.0.1/x", 503, "Unavailable", None, None), True),
        (urllib.error.HTTPError("http://127.0.0.1/x", 429, "Too Many Requests", None, None), True),
        (urllib.error.URLError(ConnectionResetError(104, "reset")), True),
    ],
)
def test_only_transient_download_errors_are_retried(error, again):
    assert shared._transient(error) is again
