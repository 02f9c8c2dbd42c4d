"""Two provisions at once share the cache: one download, both verified, no partial files."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

from ansible_collections.bkprov.buildkit.plugins.module_utils import artifacts as core


def test_concurrent_fetches_download_once(tmp_path: Path):
    payload = b"x" * (3 << 20)
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            for i in range(0, len(payload), 1 << 16):  # slow enough for the second fetch to wait on the lock
                self.wfile.write(payload[i : i + (1 << 16)])

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    mirror = f"http://127.0.0.1:{server.server_port}"
    url = "https://github.com/moby/buildkit/releases/download/v0.9.0/buildkit-v0.9.0.linux-amd64.tar.gz"
    results = []
    try:
        threads = [
            threading.Thread(target=lambda: results.append(core.ensure(url, str(tmp_path), mirror))) for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        server.shutdown()

    assert len(requests) == 1
    assert len(results) == 2 and results[0].sha256 == results[1].sha256
    assert sorted(r.downloaded for r in results) == [False, True]
    assert not list(tmp_path.rglob("*.partial"))
