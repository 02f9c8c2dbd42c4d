"""TCP/TLS in the buildkit role: unit flags, buildkitd.toml, local buildctl arguments, certificate names.

Rendered by Ansible's own templar through test_unit_rendering's fixture; the TLS facts come from the
catalog's defects (tlscacert-ignored: v0.3.0; tls-on-every-listener: v0.3.0-v0.6.0), never from version numbers.
"""

from __future__ import annotations

import tempfile
import tomllib
import warnings
from pathlib import Path

import pytest
import yaml
from test_unit_rendering import (  # the same templar machinery and fixture as the unit rendering tests
    BUILDKIT,
    buildkit_render,  # noqa: F401 - fixture
    exec_start,
    exec_start_lines,
)

TLS_DIR = "/etc/buildkit/tls"
TCP = {"buildkit_tcp_address": "tcp://127.0.0.1:1234"}
VERSIONS = ["v0.3.0", "v0.6.0", "v0.10.6"]


def flag(words: list[str], name: str) -> list[str]:
    """Every value given to a flag (flags may repeat, e.g. --addr)."""
    return [words[i + 1] for i, word in enumerate(words) if word == name]


def render_var(buildkit_render, expression: str, version: str, **overrides):  # noqa: F811 - fixture passed in
    """A role variable (or any expression) evaluated with the role's defaults and vars, as a native value."""
    with tempfile.TemporaryDirectory() as directory:
        template = Path(directory) / "expression.j2"  # absolute: BUILDKIT / "templates" / template is this path
        template.write_text("{{ " + expression + " }}", encoding="utf-8")
        return buildkit_render(str(template), version, **overrides)


@pytest.mark.parametrize("version", VERSIONS)
def test_mutual_tls_flags(buildkit_render, version):  # noqa: F811
    unit = buildkit_render("buildkit.service.j2", version, **TCP)
    words = exec_start(unit)
    addrs = flag(words, "--addr")
    assert addrs[-1] == "tcp://127.0.0.1:1234"
    assert addrs[0] in ("fd://", "unix:///run/buildkit/buildkitd.sock")  # the local socket stays
    assert flag(words, "--tlscert") == [f"{TLS_DIR}/cert.pem"]
    assert flag(words, "--tlskey") == [f"{TLS_DIR}/key.pem"]
    block = exec_start_lines(unit)
    assert all(line.endswith("\\") for line in block[:-1])
    assert block[-1].strip() == "--root /var/lib/buildkit"
    assert "# TCP tcp://127.0.0.1:1234: mutual TLS" in unit


@pytest.mark.parametrize(("version", "flag_given"), [("v0.3.0", False), ("v0.6.0", True), ("v0.10.6", True)])
def test_client_ca_by_flag_or_in_config(buildkit_render, version, flag_given):  # noqa: F811
    words = exec_start(buildkit_render("buildkit.service.j2", version, **TCP))
    config = tomllib.loads(buildkit_render("buildkitd.toml.j2", version, **TCP))
    if flag_given:
        assert flag(words, "--tlscacert") == [f"{TLS_DIR}/ca.pem"]
        assert "grpc" not in config
    else:  # v0.3.0 reads the flag as "tlsca" and ignores --tlscacert: mutual TLS would silently be off
        assert "--tlscacert" not in words
        assert config["grpc"]["tls"] == {"ca": f"{TLS_DIR}/ca.pem"}
    assert config["worker"]["oci"]["snapshotter"] == "auto"  # the rest of the file is intact


def test_ca_placement_follows_the_defect_not_the_version(buildkit_render, release_of):  # noqa: F811
    release = dict(release_of("v0.10.6"), defects=["tlscacert-ignored"])
    words = exec_start(buildkit_render("buildkit.service.j2", "v0.10.6", __buildkit_release=release, **TCP))
    assert "--tlscacert" not in words
    config = tomllib.loads(buildkit_render("buildkitd.toml.j2", "v0.10.6", __buildkit_release=release, **TCP))
    assert config["grpc"]["tls"]["ca"] == f"{TLS_DIR}/ca.pem"


@pytest.mark.parametrize("version", VERSIONS)
def test_server_mode_has_no_client_ca(buildkit_render, version):  # noqa: F811
    overrides = {**TCP, "buildkit_tls_mode": "server"}
    unit = buildkit_render("buildkit.service.j2", version, **overrides)
    words = exec_start(unit)
    assert "--tlscacert" not in words
    assert flag(words, "--tlscert") == [f"{TLS_DIR}/cert.pem"]
    assert "grpc" not in tomllib.loads(buildkit_render("buildkitd.toml.j2", version, **overrides))
    assert "TLS without client certificates" in unit


@pytest.mark.parametrize("version", VERSIONS)
def test_insecure_tcp_has_no_tls_at_all(buildkit_render, version):  # noqa: F811
    overrides = {"buildkit_tcp_address": "tcp://0.0.0.0:1234", "buildkit_insecure_tcp": True}
    unit = buildkit_render("buildkit.service.j2", version, **overrides)
    words = exec_start(unit)
    assert flag(words, "--addr")[-1] == "tcp://0.0.0.0:1234"
    assert not [w for w in words if w.startswith("--tls")]
    assert "PLAINTEXT" in unit
    assert "grpc" not in tomllib.loads(buildkit_render("buildkitd.toml.j2", version, **overrides))
    assert render_var(buildkit_render, "__buildkit_buildctl_tls_args", version, **overrides) == []


@pytest.mark.parametrize("version", VERSIONS)
def test_no_tcp_renders_no_tcp_and_no_tls(buildkit_render, version):  # noqa: F811
    unit = buildkit_render("buildkit.service.j2", version)
    words = exec_start(unit)
    assert not [a for a in flag(words, "--addr") if a.startswith("tcp://")]
    assert not [w for w in words if w.startswith("--tls")]
    assert "# TCP" not in unit
    assert render_var(buildkit_render, "__buildkit_tls_files", version) == []


MUTUAL_LOCAL_ARGS = [
    "--tlsservername",
    "localhost",
    "--tlscacert",
    f"{TLS_DIR}/ca.pem",
    "--tlscert",
    f"{TLS_DIR}/client/cert.pem",
    "--tlskey",
    f"{TLS_DIR}/client/key.pem",
]


@pytest.mark.parametrize(
    ("version", "mode", "expected"),
    [
        (
            "v0.3.0",
            "mutual",
            MUTUAL_LOCAL_ARGS,
        ),
        (
            "v0.6.0",
            "mutual",
            MUTUAL_LOCAL_ARGS,
        ),
        ("v0.6.0", "server", ["--tlsservername", "localhost", "--tlscacert", f"{TLS_DIR}/ca.pem"]),
        ("v0.7.0", "mutual", []),  # TLS per listener from v0.7.0: the unix socket stays plain
        ("v0.10.6", "mutual", []),
    ],
)
def test_local_buildctl_speaks_tls_where_the_socket_does(buildkit_render, version, mode, expected):  # noqa: F811
    args = render_var(buildkit_render, "__buildkit_buildctl_tls_args", version, buildkit_tls_mode=mode, **TCP)
    assert args == expected


@pytest.fixture(scope="session")
def lookups():
    """Lookups by FQCN (ansible.builtin.file) need Ansible's collection loader, as ansible-playbook sets it up."""
    from ansible.plugins.loader import init_plugin_loader

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "AnsibleCollectionFinder has already been configured")
        init_plugin_loader()


def write_pki(directory: Path) -> dict[str, str]:
    directory.mkdir(parents=True)
    contents = {}
    for name in ("ca.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem"):
        contents[name] = f"-----BEGIN {name}-----\nAAAA\n-----END {name}-----\n"  # trailing newline kept
        (directory / name).write_text(contents[name], encoding="utf-8")
    return contents


@pytest.mark.parametrize(
    ("version", "mode", "paths"),
    [
        ("v0.10.6", "mutual", ["ca.pem", "cert.pem", "key.pem"]),
        ("v0.6.0", "mutual", ["ca.pem", "cert.pem", "key.pem", "client/cert.pem", "client/key.pem"]),
        ("v0.6.0", "server", ["ca.pem", "cert.pem", "key.pem"]),
    ],
)
def test_host_tls_files(buildkit_render, lookups, tmp_path, version, mode, paths):  # noqa: F811
    contents = write_pki(tmp_path / "tls")
    files = render_var(
        buildkit_render,
        "__buildkit_tls_files",
        version,
        buildkit_tls_local_dir=str(tmp_path / "tls"),
        buildkit_tls_mode=mode,
        **TCP,
    )
    assert [f["path"] for f in files] == [f"{TLS_DIR}/{p}" for p in paths]
    by_path = {f["path"].removeprefix(TLS_DIR + "/"): f for f in files}
    assert by_path["key.pem"]["mode"] == "0600"
    assert by_path["cert.pem"]["mode"] == "0644"
    assert by_path["key.pem"]["content"] == contents["server-key.pem"]
    assert by_path["ca.pem"]["content"] == contents["ca.pem"]
    if "client/key.pem" in by_path:
        assert by_path["client/key.pem"]["mode"] == "0600"
        assert by_path["client/key.pem"]["content"] == contents["client-key.pem"]


def test_own_server_certificate_without_ca_in_server_mode(buildkit_render, lookups, tmp_path):  # noqa: F811
    own = tmp_path / "own"
    own.mkdir()
    (own / "srv.pem").write_text("cert\n", encoding="utf-8")
    (own / "srv.key").write_text("key\n", encoding="utf-8")
    files = render_var(
        buildkit_render,
        "__buildkit_tls_files",
        "v0.10.6",
        buildkit_tls_mode="server",
        buildkit_tls_server_cert=str(own / "srv.pem"),
        buildkit_tls_server_key=str(own / "srv.key"),
        **TCP,
    )
    assert [(f["path"], f["content"]) for f in files] == [
        (f"{TLS_DIR}/cert.pem", "cert\n"),
        (f"{TLS_DIR}/key.pem", "key\n"),
    ]


@pytest.mark.parametrize(
    ("host", "address", "sans"),
    [
        ("bk1", "tcp://0.0.0.0:1234", ["IP:127.0.0.1", "DNS:localhost", "DNS:bk1"]),
        ("bk1", "tcp://10.1.2.3:1234", ["IP:127.0.0.1", "DNS:localhost", "DNS:bk1", "IP:10.1.2.3"]),
        (
            "bk1.example",
            "tcp://build.example:1234",
            ["IP:127.0.0.1", "DNS:localhost", "DNS:bk1.example", "DNS:build.example"],
        ),
        ("192.168.1.5", "tcp://[::1]:1234", ["IP:127.0.0.1", "DNS:localhost", "IP:192.168.1.5", "IP:::1"]),
        ("localhost", "tcp://127.0.0.1:1234", ["IP:127.0.0.1", "DNS:localhost"]),
    ],
)
def test_server_certificate_names(buildkit_render, host, address, sans):  # noqa: F811
    got = render_var(
        buildkit_render, "__buildkit_tls_sans", "v0.10.6", inventory_hostname=host, buildkit_tcp_address=address
    )
    assert got == sans


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("tcp://127.0.0.1:1234", True),
        ("tcp://127.1.2.3:1234", True),
        ("tcp://[::1]:1234", True),
        ("tcp://localhost:1234", True),
        ("tcp://0.0.0.0:1234", False),
        ("tcp://[::]:1234", False),
        ("tcp://10.0.0.1:1234", False),
        ("tcp://127.example:1234", False),
    ],
)
def test_loopback_detection(buildkit_render, address, loopback):  # noqa: F811
    assert render_var(buildkit_render, "__buildkit_tcp_loopback", "v0.10.6", buildkit_tcp_address=address) is loopback


def preflight_condition(name: str) -> str:
    tasks = yaml.safe_load((BUILDKIT / "tasks" / "preflight.yml").read_text(encoding="utf-8"))
    (task,) = [t for t in tasks if t["name"] == name]
    return task["ansible.builtin.assert"]["that"]


@pytest.mark.parametrize(
    ("address", "valid"),
    [
        ("", True),
        ("tcp://0.0.0.0:1234", True),
        ("tcp://127.0.0.1:1234", True),
        ("tcp://[::1]:1234", True),
        ("tcp://build-1.example:1234", True),
        ("0.0.0.0:1234", False),
        ("tcp://0.0.0.0", False),
        ("unix:///run/x.sock", False),
        ("tcp://0.0.0.0:1234/x", False),
    ],
)
def test_preflight_address_check(buildkit_render, address, valid):  # noqa: F811
    condition = preflight_condition("Require buildkit_tcp_address to be tcp://HOST:PORT")
    assert render_var(buildkit_render, condition, "v0.10.6", buildkit_tcp_address=address) is valid


@pytest.mark.parametrize(
    ("flags", "refused"),
    [
        ([], False),
        (["--addr=tcp://0.0.0.0:1234"], True),
        (["--debugaddr=127.0.0.1:6060", "--addr=tcp://127.0.0.1:1"], True),
        (["--addr=unix:///run/other.sock"], False),
    ],
)
def test_preflight_refuses_tcp_in_extra_flags(buildkit_render, flags, refused):  # noqa: F811
    tasks = yaml.safe_load((BUILDKIT / "tasks" / "preflight.yml").read_text(encoding="utf-8"))
    (task,) = [t for t in tasks if t["name"].startswith("Refuse TCP listeners in buildkit_extra_flags")]
    expression = task["vars"]["__buildkit_tcp_flags"].strip().removeprefix("{{").removesuffix("}}")
    assert bool(render_var(buildkit_render, expression, "v0.10.6", buildkit_extra_flags=flags)) is refused
