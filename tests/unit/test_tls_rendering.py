"""TCP/TLS in the buildkit role: unit flags, buildkitd.toml, local buildctl arguments, certificate names.

Rendered by Ansible's own templar through test_unit_rendering's fixture; the TLS facts come from the
catalog's defects (tlscacert-ignored: v0.3.0; tls-on-every-listener: v0.3.0-v0.6.0), never from version numbers.
"""

from __future__ import annotations

import tempfile
import tomllib
from pathlib import Path

import pytest
from ansible_collections.bkprov.buildkit.plugins.action.converge import read_file_item
from ansible_collections.bkprov.buildkit.plugins.module_utils.buildkit_plan import input_problems
from test_unit_rendering import (  # the same templar machinery and fixture as the unit rendering tests
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
    assert render_var(buildkit_render, "__buildkit_tls.buildctl_args", version, **overrides) == []


@pytest.mark.parametrize("version", VERSIONS)
def test_no_tcp_renders_no_tcp_and_no_tls(buildkit_render, version):  # noqa: F811
    unit = buildkit_render("buildkit.service.j2", version)
    words = exec_start(unit)
    assert not [a for a in flag(words, "--addr") if a.startswith("tcp://")]
    assert not [w for w in words if w.startswith("--tls")]
    assert "# TCP" not in unit
    assert render_var(buildkit_render, "__buildkit_tls.files", version) == []


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
    args = render_var(buildkit_render, "__buildkit_tls.buildctl_args", version, buildkit_tls_mode=mode, **TCP)
    assert args == expected


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
def test_host_tls_files(buildkit_render, tmp_path, version, mode, paths):  # noqa: F811
    contents = write_pki(tmp_path / "tls")
    files = render_var(
        buildkit_render,
        "__buildkit_tls.files",
        version,
        buildkit_tls_local_dir=str(tmp_path / "tls"),
        buildkit_tls_mode=mode,
        **TCP,
    )
    assert [f["path"] for f in files] == [f"{TLS_DIR}/{p}" for p in paths]
    # The plan names controller sources only; the converge action reads them (key material never
    # passes through variables or task arguments).
    assert all("content" not in f for f in files)
    by_path = {f["path"].removeprefix(TLS_DIR + "/"): read_file_item(f) for f in files}
    assert by_path["key.pem"]["mode"] == "0600" and by_path["key.pem"]["secret"] is True
    assert by_path["cert.pem"]["mode"] == "0644" and by_path["cert.pem"]["secret"] is False
    assert by_path["key.pem"]["content"] == contents["server-key.pem"]
    assert by_path["ca.pem"]["content"] == contents["ca.pem"]
    if "client/key.pem" in by_path:
        assert by_path["client/key.pem"]["mode"] == "0600" and by_path["client/key.pem"]["secret"] is True
        assert by_path["client/key.pem"]["content"] == contents["client-key.pem"]
    absent = render_var(
        buildkit_render,
        "__buildkit_tls.absent",
        version,
        buildkit_tls_local_dir=str(tmp_path / "tls"),
        buildkit_tls_mode=mode,
        **TCP,
    )
    assert sorted(absent + [f["path"] for f in files]) == sorted(
        f"{TLS_DIR}/{p}" for p in ("ca.pem", "cert.pem", "key.pem", "client/cert.pem", "client/key.pem")
    )


def test_own_server_certificate_without_ca_in_server_mode(buildkit_render, tmp_path):  # noqa: F811
    own = tmp_path / "own"
    own.mkdir()
    (own / "srv.pem").write_text("cert\n", encoding="utf-8")
    (own / "srv.key").write_text("key\n", encoding="utf-8")
    files = render_var(
        buildkit_render,
        "__buildkit_tls.files",
        "v0.10.6",
        buildkit_tls_mode="server",
        buildkit_tls_server_cert=str(own / "srv.pem"),
        buildkit_tls_server_key=str(own / "srv.key"),
        **TCP,
    )
    assert [(f["path"], read_file_item(f)["content"]) for f in files] == [
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
        buildkit_render, "__buildkit_tls.sans", "v0.10.6", inventory_hostname=host, buildkit_tcp_address=address
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
    assert (
        render_var(buildkit_render, "__buildkit_tls.tcp_loopback", "v0.10.6", buildkit_tcp_address=address) is loopback
    )


def problems(release_of, version="v0.10.6", **kwargs) -> list[str]:
    """What the buildkit_plan task refuses (module_utils/buildkit_plan.input_problems)."""
    return input_problems(release_of(version), kwargs.pop("extra_flags", []), kwargs.pop("registries", {}), **kwargs)


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
def test_preflight_address_check(release_of, address, valid):
    found = [p for p in problems(release_of, tcp_address=address, insecure_tcp=True) if "is not tcp://HOST:PORT" in p]
    assert (not found) is valid
    if not valid:
        assert found == [
            f"buildkit_tcp_address={address} is not tcp://HOST:PORT (e.g. tcp://0.0.0.0:1234, tcp://127.0.0.1:1234, "
            "tcp://[::1]:1234); empty means no TCP listener."
        ]


@pytest.mark.parametrize(
    ("flags", "refused"),
    [
        ([], False),
        (["--addr=tcp://0.0.0.0:1234"], True),
        (["--debugaddr=127.0.0.1:6060", "--addr=tcp://127.0.0.1:1"], True),
        (["--addr=unix:///run/other.sock"], False),
    ],
)
def test_preflight_refuses_tcp_in_extra_flags(release_of, flags, refused):
    found = [p for p in problems(release_of, extra_flags=flags) if "gets no TLS from bkprov" in p]
    assert bool(found) is refused
    if refused:
        assert "Set buildkit_tcp_address instead" in found[0]


def test_preflight_unknown_flags_and_registry_keys(release_of):
    (problem,) = problems(
        release_of, "v0.4.0", extra_flags=["--trace=x"], registries={"r:5000": {"insecure": True, "http": True}}
    )
    assert "BuildKit v0.4.0" in problem and "does not know flags ['--trace'] or registry keys ['insecure']" in problem


def test_preflight_own_tls_files(release_of, tmp_path):
    key = tmp_path / "srv.key"
    key.write_text("key\n")
    tcp = {"tcp_address": "tcp://127.0.0.1:1234"}
    assert problems(release_of, **tcp) == []  # all generated
    (incomplete,) = problems(release_of, server_key=str(key), **tcp)
    assert "need buildkit_tls_server_cert and buildkit_tls_server_key" in incomplete
    (missing,) = problems(
        release_of, server_cert=str(tmp_path / "nope.pem"), server_key=str(key), tls_mode="server", **tcp
    )
    assert f"(not files: {tmp_path / 'nope.pem'})" in missing
    own_on_old = problems(release_of, "v0.6.0", server_cert=str(key), server_key=str(key), tls_mode="server", **tcp)
    assert any("tls-on-every-listener" in p for p in own_on_old)
