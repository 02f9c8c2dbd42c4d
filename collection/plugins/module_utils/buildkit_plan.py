# Copyright: bkprov developers
# Apache-2.0
"""What the buildkit role derives from its variables and the catalog entry, as plain functions.

Used by the ``bkprov.buildkit.buildkit_plan`` action (the role's first task, on the controller)
and unit-tested directly. Everything version-specific comes from the catalog entry
(``release``): flags, registry keys, defects (``tlscacert-ignored``, ``tls-on-every-listener``).
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, List
from urllib.parse import urlsplit

# tcp://HOST:PORT with HOST a name, an IPv4 address or a bracketed IPv6 address.
TCP_ADDRESS = re.compile(r"^tcp://(\[[0-9a-fA-F:.]+\]|[-A-Za-z0-9_.]+):[0-9]+$")
LOOPBACK = re.compile(r"^(127[.][0-9.]+|::1|localhost)$")
IP_ADDRESS = re.compile(r"^([0-9]+([.][0-9]+){3}|[0-9a-fA-F]*:[0-9a-fA-F:.]*)$")
WILDCARDS = ("", "0.0.0.0", "::")
TCP_FLAG = re.compile(r"^--addr[= ]*tcp://")

# Every TLS file bkprov may write under buildkit_tls_dir (relative); those not wanted are removed.
TLS_FILES = ("ca.pem", "cert.pem", "key.pem", "client/cert.pem", "client/key.pem")


def tcp_host(address: str) -> str:
    return (urlsplit(address).hostname or "") if address else ""


def is_loopback(host: str) -> bool:
    return bool(LOOPBACK.match(host))


def server_sans(inventory_hostname: str, address: str) -> List[str]:
    """The server certificate's names: loopback, the inventory name and the TCP host (never a wildcard)."""
    names = []
    for name in ("127.0.0.1", "localhost", inventory_hostname, tcp_host(address)):
        if name in WILDCARDS:
            continue
        entry = ("IP:" if IP_ADDRESS.match(name) else "DNS:") + name
        if entry not in names:
            names.append(entry)
    return names


def tls_plan(
    release: Dict[str, Any],
    inventory_hostname: str,
    tcp_address: str = "",
    insecure_tcp: bool = False,
    tls_mode: str = "mutual",
    tls_dir: str = "/etc/buildkit/tls",
    tls_local_dir: str = "",
    ca_cert: str = "",
    server_cert: str = "",
    server_key: str = "",
) -> Dict[str, Any]:
    """TCP and TLS for buildkit_tcp_address: what to render, which files go where, and local buildctl's flags.

    ``files`` name controller sources (``src``), never contents: the converge action reads them, so
    key material stays out of variables, task arguments and results.
    """
    defects = release.get("defects") or []
    enabled = bool(tcp_address) and not insecure_tcp  # TLS is on for TCP unless the user opts out by name
    verify_clients = enabled and tls_mode == "mutual"
    generate = not server_cert  # generated certificates unless the user gives a server certificate
    has_ca = generate or bool(ca_cert)
    local = enabled and "tls-on-every-listener" in defects  # v0.3.0-v0.6.0 serve TLS on the unix socket too
    local_client = local and verify_clients
    host = tcp_host(tcp_address)

    buildctl_args: List[str] = []
    if local:
        buildctl_args = ["--tlsservername", "localhost", "--tlscacert", f"{tls_dir}/ca.pem"]
        if local_client:
            buildctl_args += ["--tlscert", f"{tls_dir}/client/cert.pem", "--tlskey", f"{tls_dir}/client/key.pem"]

    files: List[Dict[str, Any]] = []
    if enabled:
        if has_ca:
            files.append({"path": f"{tls_dir}/ca.pem", "mode": "0644", "src": ca_cert or f"{tls_local_dir}/ca.pem"})
        files.append(
            {"path": f"{tls_dir}/cert.pem", "mode": "0644", "src": server_cert or f"{tls_local_dir}/server.pem"}
        )
        files.append(
            {
                "path": f"{tls_dir}/key.pem",
                "mode": "0600",
                "src": server_key or f"{tls_local_dir}/server-key.pem",
                "secret": True,
            }
        )
        if local_client:
            files.append({"path": f"{tls_dir}/client/cert.pem", "mode": "0644", "src": f"{tls_local_dir}/client.pem"})
            files.append(
                {
                    "path": f"{tls_dir}/client/key.pem",
                    "mode": "0600",
                    "src": f"{tls_local_dir}/client-key.pem",
                    "secret": True,
                }
            )
    wanted = {f["path"] for f in files}
    return {
        "enabled": enabled,
        "tcp_host": host,
        "tcp_loopback": is_loopback(host),
        "sans": server_sans(inventory_hostname, tcp_address),
        "verify_clients": verify_clients,
        # v0.3.0 ignores --tlscacert; the CA that turns on mutual TLS goes into [grpc.tls] ca.
        "ca_in_config": verify_clients and "tlscacert-ignored" in defects,
        "generate": enabled and generate,
        "has_ca": has_ca,
        "local": local,
        "local_client": local_client,
        "buildctl_args": buildctl_args,
        "files": files,
        "absent": [f"{tls_dir}/{name}" for name in TLS_FILES if f"{tls_dir}/{name}" not in wanted],
    }


def input_problems(
    release: Dict[str, Any],
    extra_flags: List[str],
    registries: Dict[str, Dict[str, Any]],
    oci_worker_binary: str = "",
    tcp_address: str = "",
    tls_mode: str = "mutual",
    ca_cert: str = "",
    server_cert: str = "",
    server_key: str = "",
    tls_local_dir: str = "",
    insecure_tcp: bool = False,
) -> List[str]:
    """Why the role's variables cannot work with this release, one message each (what is wrong, what to do)."""
    version = release.get("version", "?")
    problems = []
    flags = [f.split("=", 1)[0] for f in extra_flags]
    unknown_flags = [f for f in flags if f not in release.get("flags", [])]
    if oci_worker_binary and "--oci-worker-binary" not in release.get("flags", []):
        unknown_flags.append("--oci-worker-binary")
    keys = sorted({key for settings in registries.values() for key in (settings or {})})
    unknown_keys = [k for k in keys if k not in release.get("registry_keys", [])]
    if unknown_flags or unknown_keys:
        problems.append(
            f"BuildKit {version} ({release.get('flags_era', '?')}) does not know flags {unknown_flags} or registry keys "
            f"{unknown_keys}; it knows registry keys {release.get('registry_keys', [])}. Remove them or pick a newer version."
        )
    if tcp_address and not TCP_ADDRESS.match(tcp_address):
        problems.append(
            f"buildkit_tcp_address={tcp_address} is not tcp://HOST:PORT (e.g. tcp://0.0.0.0:1234, tcp://127.0.0.1:1234, "
            "tcp://[::1]:1234); empty means no TCP listener."
        )
    tcp_flags = [f for f in extra_flags if TCP_FLAG.match(f)]
    if tcp_flags:
        problems.append(
            f"buildkit_extra_flags has {' '.join(tcp_flags)}: a TCP listener there gets no TLS from bkprov. Set "
            "buildkit_tcp_address instead (mutual TLS by default; buildkit_insecure_tcp=true for plaintext)."
        )
    if tls_mode not in ("mutual", "server"):
        problems.append(f"buildkit_tls_mode={tls_mode}: use mutual or server.")
    tls = bool(tcp_address) and not insecure_tcp
    if tls:
        given = [ca_cert, server_cert, server_key]
        missing = [path for path in given if path and not os.path.isfile(os.path.expanduser(path))]
        generate = not server_cert
        if (
            bool(server_cert) != bool(server_key)
            or (generate and ca_cert)
            or (not generate and not ca_cert and tls_mode == "mutual")
            or missing
        ):
            problems.append(
                "Your own TLS files need buildkit_tls_server_cert and buildkit_tls_server_key, plus buildkit_tls_ca_cert "
                "(the CA of the client certificates) when buildkit_tls_mode=mutual, each a file on the controller"
                + (f" (not files: {', '.join(missing)})" if missing else "")
                + ". bkprov signs certificates only with a CA it generates itself, so a CA alone is not enough: leave "
                f"all three empty to have a CA, server and client certificate generated in {tls_local_dir}."
            )
        if "tls-on-every-listener" in (release.get("defects") or []) and not generate:
            problems.append(
                f"BuildKit {version} serves TLS on its unix socket too (catalog defect tls-on-every-listener), so "
                "bkprov's own buildctl calls need a client certificate and the name localhost, which only the CA bkprov "
                "generates provides. Leave buildkit_tls_ca_cert, buildkit_tls_server_cert and buildkit_tls_server_key "
                "empty, or use v0.7.0 or later."
            )
    return problems


def input_warnings(inventory_hostname: str, tcp_address: str, insecure_tcp: bool) -> List[str]:
    if tcp_address and insecure_tcp and not is_loopback(tcp_host(tcp_address)):
        return [
            f"buildkit_insecure_tcp=true: buildkitd on {inventory_hostname} listens on {tcp_address} without TLS. "
            "Anyone who can reach that address can run builds as root on the host (remote root). Drop "
            "buildkit_insecure_tcp to get mutual TLS, or listen on 127.0.0.1."
        ]
    return []
