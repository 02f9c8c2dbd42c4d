"""The verify role's built-in COPY helper registry, run for real on localhost."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

FILES = Path(__file__).resolve().parents[2] / "collection" / "roles" / "verify" / "files"


def start(tmp_path: Path, busybox: str) -> tuple[subprocess.Popen, Path]:
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [
            sys.executable,
            FILES / "helper_registry.py",
            "--copy",
            FILES / "copy",
            "--busybox",
            busybox,
            "--ready",
            ready,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for _ in range(100):
        if (ready.exists() and ready.read_text()) or proc.poll() is not None:
            break
        time.sleep(0.05)
    return proc, ready


def get(url: str, accept: str = "*/*") -> tuple[bytes, dict]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read(), dict(response.headers)


@pytest.mark.skipif(not shutil.which("busybox"), reason="needs Debian's busybox-static (CI installs it)")
def test_serves_a_consistent_image_of_busybox_and_the_copy_script(tmp_path):
    proc, ready = start(tmp_path, os.path.realpath(shutil.which("busybox")))
    try:
        reference = ready.read_text().strip()
        host, _, rest = reference.partition("/")
        assert host.startswith("localhost:") and rest == "bkprov/copy:1"
        base = f"http://127.0.0.1:{host.split(':')[1]}/v2"
        assert get(base + "/")[1]["Docker-Distribution-API-Version"] == "registry/2.0"
        body, headers = get(base + "/bkprov/copy/manifests/1")
        manifest = json.loads(body)
        assert headers["Docker-Content-Digest"] == "sha256:" + hashlib.sha256(body).hexdigest()
        for descriptor in [manifest["config"], *manifest["layers"]]:
            blob, _ = get(f"{base}/bkprov/copy/blobs/{descriptor['digest']}")
            assert "sha256:" + hashlib.sha256(blob).hexdigest() == descriptor["digest"]
            assert len(blob) == descriptor["size"]
    finally:
        proc.terminate()
        proc.wait(5)


def test_refuses_a_dynamically_linked_busybox(tmp_path):
    proc, ready = start(tmp_path, "/bin/ls")  # dynamically linked on every distribution bkprov targets
    proc.wait(10)
    assert proc.returncode != 0
    assert "dynamically linked" in proc.stderr.read()
    assert not ready.exists()
