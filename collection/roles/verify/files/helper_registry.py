"""A read-only registry on localhost serving one image: the COPY helper of BuildKit < v0.5.0.

Dockerfile COPY there runs `copy SRC… DEST` in a helper image pulled from a registry
(frontend option override-copy-image picks which). This builds that image from the host's
static busybox and the `copy` script, and serves it over HTTP on localhost, which the
BuildKit of those versions reaches without TLS (containerd's resolver treats localhost:PORT
as plain HTTP). Standard library only; it runs on the target with its python3.

    python3 helper_registry.py --port 5055 --copy copy --busybox /bin/busybox --ready FILE
"""

import argparse
import contextlib
import gzip
import hashlib
import http.server
import io
import json
import socket
import sys
import tarfile
import threading

NAME = "bkprov/copy"
TAG = "1"
APPLETS = ("sh", "cp", "mkdir", "chown", "tar", "dirname", "ls", "cat")
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def require_static(path):
    """The helper image has no libc: refuse a dynamically linked busybox (an ELF with PT_INTERP)."""
    with open(path, "rb") as handle:
        elf = handle.read(1 << 16)
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        raise SystemExit("%s is not a 64-bit ELF binary" % path)
    phoff = int.from_bytes(elf[32:40], "little")
    size, count = int.from_bytes(elf[54:56], "little"), int.from_bytes(elf[56:58], "little")
    for i in range(count):
        if int.from_bytes(elf[phoff + i * size : phoff + i * size + 4], "little") == 3:  # PT_INTERP
            raise SystemExit(
                "%s is dynamically linked; the COPY helper needs a static busybox (Debian: busybox-static)" % path
            )


def image(busybox, copy_script):
    """(manifest bytes, {digest: blob}) of a one-layer linux/amd64 image."""
    require_static(busybox)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path, mode in ((busybox, 0o755), (copy_script, 0o755)):
            info = tar.gettarinfo(path, arcname="bin/busybox" if path == busybox else "bin/copy")
            info.mode, info.uid, info.gid, info.uname, info.gname, info.mtime = mode, 0, 0, "", "", 0
            with open(path, "rb") as handle:
                tar.addfile(info, handle)
        for applet in APPLETS:
            info = tarfile.TarInfo("bin/" + applet)
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(info)
    layer_tar = raw.getvalue()
    layer = gzip.compress(layer_tar, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [digest(layer_tar)]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": digest(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": digest(layer),
                }
            ],
        }
    ).encode()
    return manifest, {digest(config): config, digest(layer): layer, digest(manifest): manifest}


def handler(manifest, blobs):
    prefix = "/v2/" + NAME + "/"

    class Registry(http.server.BaseHTTPRequestHandler):
        def reply(self, body, kind, extra=None):
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?")[0]
            if path in ("/v2", "/v2/"):
                return self.reply(b"{}", "application/json")
            if path in (prefix + "manifests/" + TAG, prefix + "manifests/" + digest(manifest)):
                return self.reply(manifest, MANIFEST, {"Docker-Content-Digest": digest(manifest)})
            if path.startswith(prefix + "blobs/") and path[len(prefix) + 6 :] in blobs:
                blob_digest = path[len(prefix) + 6 :]
                return self.reply(
                    blobs[blob_digest], "application/octet-stream", {"Docker-Content-Digest": blob_digest}
                )
            self.send_error(404)

        do_HEAD = do_GET

        def log_message(self, *args):
            pass

    return Registry


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


class Server6(Server):
    address_family = socket.AF_INET6


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--copy", required=True)
    parser.add_argument("--busybox", default="/bin/busybox")
    parser.add_argument("--ready", required=True, help="file written once serving")
    args = parser.parse_args()
    manifest, blobs = image(args.busybox, args.copy)
    serve = handler(manifest, blobs)
    servers = [Server(("127.0.0.1", args.port), serve)]
    port = servers[0].server_address[1]
    with contextlib.suppress(OSError):  # "localhost" may resolve to ::1 first
        servers.append(Server6(("::1", port), serve))
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    with open(args.ready, "w") as handle:
        handle.write("localhost:%d/%s:%s\n" % (port, NAME, TAG))
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
