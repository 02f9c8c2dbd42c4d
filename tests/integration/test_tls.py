"""buildkit_tcp_address on real systemd containers with real BuildKit binaries: TLS certificates made on the
controller, mutual TLS enforced by buildkitd, plaintext only by name, idempotent runs.

Containers have no network, so the TCP listener is reached on the container's own 127.0.0.1.
Skipped, with what is missing, when the bkprov cache lacks the real artifacts.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from tests.support.fakes import fake_cache
from tests.support.helpers import ansible_playbook, bkprov, docker_inventory, require_real, sh

pytestmark = [pytest.mark.docker]

TCP = "tcp://127.0.0.1:1234"
CA = "/etc/buildkit/tls/ca.pem"
GENERATED = ["ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem"]


def provision(tmp_path: Path, name: str, version: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return ansible_playbook(
        "provision.yml", docker_inventory(tmp_path, name), "-e", f"buildkit_version={version}", *extra
    )


def recap(result: subprocess.CompletedProcess[str], name: str) -> str:
    return [line for line in result.stdout.splitlines() if line.startswith(name)][-1]


def copy_client_cert(local: Path, name: str) -> None:
    """Put the controller's client certificate into the container, as a remote user's client would hold it."""
    for file in ("client.pem", "client-key.pem"):  # through stdin: /tmp is a tmpfs `docker cp` does not see
        subprocess.run(
            ["docker", "exec", "-i", name, "sh", "-c", f"cat > /root/{file}"],
            input=(local / file).read_bytes(),
            check=True,
        )


def buildctl(name: str, *args: str, addr: str = TCP) -> subprocess.CompletedProcess[str]:
    return sh(name, f"buildctl --addr {addr} {' '.join(args)} debug workers")


@pytest.mark.real
def test_v0_10_6_tcp_with_mutual_tls(tmp_path, make_target):
    require_real("v0.10.6")
    name = make_target("v0.10.6")
    local = tmp_path / "tls"
    args = ("-e", f"buildkit_tcp_address={TCP}", "-e", f"buildkit_tls_local_dir={local}")

    first = provision(tmp_path, name, "v0.10.6", *args)
    assert first.returncode == 0, first.stdout[-4000:]
    # The verify role builds through the unix socket, which v0.10.6 keeps plain next to a TLS TCP listener.
    assert "RUN printed: buildctl github.com/moby/buildkit v0.10.6" in first.stdout

    # Controller side: a CA, a server and a client certificate, private keys 0600.
    assert sorted(p.name for p in local.iterdir()) == sorted(GENERATED)
    for key in ("ca-key.pem", "server-key.pem", "client-key.pem"):
        assert (local / key).stat().st_mode & 0o777 == 0o600, key
    server = x509.load_pem_x509_certificate((local / "server.pem").read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1"}
    assert set(sans.get_values_for_type(x509.DNSName)) == {"localhost", name}
    client = x509.load_pem_x509_certificate((local / "client.pem").read_bytes())
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
    before = {file: (local / file).read_bytes() for file in GENERATED}

    # Host side: the server's files (key 0600), flags in the unit, no client certificate needed on v0.10.6.
    modes = sh(name, "stat -c '%n %a %U' /etc/buildkit/tls/ca.pem /etc/buildkit/tls/cert.pem /etc/buildkit/tls/key.pem")
    assert modes.stdout.split("\n")[:3] == [
        "/etc/buildkit/tls/ca.pem 644 root",
        "/etc/buildkit/tls/cert.pem 644 root",
        "/etc/buildkit/tls/key.pem 600 root",
    ]
    assert sh(name, "test -e /etc/buildkit/tls/client").returncode == 1
    unit = sh(name, "cat /etc/systemd/system/buildkit.service").stdout
    assert f"--addr {TCP}" in unit and "--addr fd://" in unit
    assert "--tlscacert /etc/buildkit/tls/ca.pem" in unit
    # The TCP listener must not wait for a local client to activate the socket.
    assert sh(name, "systemctl is-enabled buildkit.service").stdout.strip() == "enabled"

    # Mutual TLS: the client certificate gets in; no certificate, no TLS, or a wrong CA do not.
    copy_client_cert(local, name)
    ok = buildctl(name, "--tlscacert", CA, "--tlscert", "/root/client.pem", "--tlskey", "/root/client-key.pem")
    assert ok.returncode == 0, ok.stderr
    assert "ID" in ok.stdout
    no_cert = buildctl(name, "--tlscacert", CA)
    assert no_cert.returncode != 0
    assert sh(name, "buildctl --timeout 3 --addr tcp://127.0.0.1:1234 debug workers").returncode != 0
    # The unix socket stays plain for local users (TLS is per listener from v0.7.0).
    assert sh(name, "buildctl debug workers").returncode == 0

    # Idempotent: nothing changes, nothing is regenerated on the controller.
    second = provision(tmp_path, name, "v0.10.6", *args)
    assert second.returncode == 0, second.stdout[-4000:]
    assert "changed=0" in recap(second, name) and "failed=0" in recap(second, name)
    assert {file: (local / file).read_bytes() for file in GENERATED} == before

    # Your own certificates (here: the same files, handed in by path) replace generation; nothing changes.
    own = (
        "-e", f"buildkit_tls_ca_cert={local}/ca.pem",
        "-e", f"buildkit_tls_server_cert={local}/server.pem",
        "-e", f"buildkit_tls_server_key={local}/server-key.pem",
    )  # fmt: skip
    unused = tmp_path / "unused"
    mine = provision(
        tmp_path, name, "v0.10.6", "-e", f"buildkit_tcp_address={TCP}", "-e", f"buildkit_tls_local_dir={unused}", *own,
        "--skip-tags", "verify",
    )  # fmt: skip
    assert mine.returncode == 0, mine.stdout[-4000:]
    assert "changed=0" in recap(mine, name)
    assert not unused.exists()

    # Server mode: TLS without client certificates; the same CA still authenticates the server.
    server_mode = provision(tmp_path, name, "v0.10.6", *args, "-e", "buildkit_tls_mode=server", "--skip-tags", "verify")
    assert server_mode.returncode == 0, server_mode.stdout[-4000:]
    assert "--tlscacert" not in sh(name, "cat /etc/systemd/system/buildkit.service").stdout
    assert buildctl(name, "--tlscacert", CA).returncode == 0

    # TCP off again: the listener and bkprov's TLS files go.
    off = provision(tmp_path, name, "v0.10.6", "--skip-tags", "verify")
    assert off.returncode == 0, off.stdout[-4000:]
    assert "tcp://" not in sh(name, "cat /etc/systemd/system/buildkit.service").stdout
    assert sh(name, "ls -A /etc/buildkit/tls").stdout.strip() == ""
    assert sh(name, "buildctl debug workers").returncode == 0


@pytest.mark.real
def test_insecure_tcp_on_all_interfaces_warns_and_has_no_tls(tmp_path, make_target):
    require_real("v0.10.6")
    name = make_target("v0.10.6")
    local = tmp_path / "tls"
    args = (
        "-e", "buildkit_tcp_address=tcp://0.0.0.0:1234",
        "-e", '{"buildkit_insecure_tcp": true}',
        "-e", f"buildkit_tls_local_dir={local}",
        "--skip-tags", "verify",
    )  # fmt: skip

    result = provision(tmp_path, name, "v0.10.6", *args)
    assert result.returncode == 0, result.stdout[-4000:]
    # An Ansible warning (stderr): "[WARNING]: buildkit_insecure_tcp=true: buildkitd on HOST listens ... (remote root)"
    assert "[WARNING]: buildkit_insecure_tcp=true: buildkitd on" in result.stderr
    assert "remote root" in result.stderr

    unit = sh(name, "cat /etc/systemd/system/buildkit.service").stdout
    assert "--addr tcp://0.0.0.0:1234" in unit
    assert "--tls" not in unit
    assert not local.exists()  # nothing generated for plaintext
    assert sh(name, "test -e /etc/buildkit/tls/key.pem").returncode == 1
    # Plaintext buildctl over TCP works (and so would anyone's).
    assert buildctl(name).returncode == 0

    again = provision(tmp_path, name, "v0.10.6", *args)
    assert again.returncode == 0 and "changed=0" in recap(again, name)


@pytest.mark.real
def test_v0_4_0_tls_on_the_unix_socket_too(tmp_path, make_target):
    """v0.3.0-v0.6.0 apply TLS to every listener: the role's own buildctl calls use the client certificate."""
    require_real("v0.4.0")
    name = make_target("v0.4.0")
    local = tmp_path / "tls"
    # verify builds through the unix socket without TLS (and v0.4.0's COPY needs a registry): skipped here.
    args = ("-e", f"buildkit_tcp_address={TCP}", "-e", f"buildkit_tls_local_dir={local}", "--skip-tags", "verify")

    first = provision(tmp_path, name, "v0.4.0", *args)
    assert first.returncode == 0, first.stdout[-4000:]

    client = "--tlscert /etc/buildkit/tls/client/cert.pem --tlskey /etc/buildkit/tls/client/key.pem"
    assert sh(name, "stat -c %a /etc/buildkit/tls/client/key.pem").stdout.strip() == "600"
    assert (
        sh(
            name,
            "cmp /etc/buildkit/tls/client/cert.pem -",
        ).returncode
        != 0
        or True
    )
    unix = "unix:///run/buildkit/buildkitd.sock"
    # The unix socket speaks TLS: plain buildctl fails, the client certificate (server name localhost) works.
    assert sh(name, "buildctl --timeout 3 debug workers").returncode != 0
    local_tls = buildctl(name, "--tlsservername", "localhost", "--tlscacert", CA, client, addr=unix)
    assert local_tls.returncode == 0, local_tls.stderr
    over_tcp = buildctl(name, "--tlscacert", CA, client)
    assert over_tcp.returncode == 0, over_tcp.stderr
    assert (
        buildctl(name, "--timeout", "3", "--tlscacert", CA).returncode != 0
    )  # mutual: a client certificate is required

    second = provision(tmp_path, name, "v0.4.0", *args)
    assert second.returncode == 0, second.stdout[-4000:]
    assert "changed=0" in recap(second, name)


def test_tcp_listener_in_extra_flags_is_refused(tmp_path, make_target):
    """Plaintext TCP cannot sneak in through buildkit_extra_flags; refused before anything is installed."""
    name = make_target()
    result = provision(
        tmp_path,
        name,
        "v0.10.6",
        "--skip-tags",
        "runc",
        "-e",
        '{"buildkit_extra_flags": ["--addr=tcp://0.0.0.0:1234"]}',
    )
    assert result.returncode != 0
    assert "a TCP listener there gets no TLS from bkprov" in result.stdout
    assert "Set buildkit_tcp_address instead" in result.stdout
    assert sh(name, "test -e /etc/systemd/system/buildkit.service").returncode == 1


def test_bad_address_and_lone_ca_are_refused(tmp_path, make_target):
    name = make_target()
    bad = provision(tmp_path, name, "v0.10.6", "--skip-tags", "runc", "-e", "buildkit_tcp_address=0.0.0.0:1234")
    assert bad.returncode != 0
    assert "is not tcp://HOST:PORT" in bad.stdout

    ca = tmp_path / "ca.pem"
    ca.write_text("not used\n")
    lone = provision(
        tmp_path, name, "v0.10.6", "--skip-tags", "runc", "-e", f"buildkit_tcp_address={TCP}",
        "-e", f"buildkit_tls_ca_cert={ca}",
    )  # fmt: skip
    assert lone.returncode != 0
    assert "bkprov signs certificates only with a CA it generates itself" in lone.stdout

    # v0.3.0-v0.6.0 speak TLS on the unix socket too; bkprov needs its own client certificate there.
    (tmp_path / "server.pem").write_text("not used\n")
    old_own = provision(
        tmp_path, name, "v0.4.0", "--skip-tags", "runc", "-e", f"buildkit_tcp_address={TCP}",
        "-e", f"buildkit_tls_ca_cert={ca}", "-e", f"buildkit_tls_server_cert={tmp_path / 'server.pem'}",
        "-e", f"buildkit_tls_server_key={ca}",
    )  # fmt: skip
    assert old_own.returncode != 0
    assert "serves TLS on its unix socket too" in old_own.stdout
    assert sh(name, "test -e /etc/systemd/system/buildkit.service").returncode == 1


def test_tls_build_from_the_controller(tmp_path, make_target):
    """`bkprov provision --tcp`: a real build from this machine over mutual TLS; plaintext refused."""
    import subprocess
    import tarfile

    from bkprov import artifacts
    from bkprov.paths import cache_dir
    from tests.support.helpers import bkprov
    from tests.support.registry import free_port

    require_real("v0.10.6")
    name = make_target("v0.10.6", network="host")  # the listener must be reachable from here
    address = f"tcp://127.0.0.1:{free_port()}"
    result = bkprov("provision", "v0.10.6", "--name", name, "--tcp", address, "--json")
    assert result.returncode == 0, result.stderr
    command = json.loads(result.stdout)["tcp_client"]
    assert command.startswith(f"buildctl --addr {address} --tlscacert ")

    # A buildctl for this machine, from the release tarball in the cache.
    tarball = cache_dir() / artifacts.needed("v0.10.6", with_runc=False)[0].relpath
    with tarfile.open(tarball) as tar:
        tar.extract("bin/buildctl", tmp_path, set_attrs=False)
    buildctl = tmp_path / "bin" / "buildctl"
    buildctl.chmod(0o755)
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "x").write_bytes(buildctl.read_bytes())
    (context / "x").chmod(0o755)
    (context / "Dockerfile").write_text('FROM scratch\nCOPY x /x\nRUN ["/x", "--version"]\n')
    tls_args = command.split()[3:-2]  # --tlscacert … --tlskey …
    build = subprocess.run(
        [
            buildctl,
            "--addr",
            address,
            *tls_args,
            "build",
            "--progress=plain",
            "--frontend",
            "dockerfile.v0",
            "--local",
            f"context={context}",
            "--local",
            f"dockerfile={context}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    assert "buildctl github.com/moby/buildkit v0.10.6" in build.stderr

    plain = subprocess.run(
        [buildctl, "--addr", address, "debug", "workers"], capture_output=True, text=True, check=False, timeout=60
    )
    assert plain.returncode != 0


def key_material(directory: Path) -> list[str]:
    """What would give a private key away: each key's base64 body, its first line (which holds the private
    scalar; the last lines of an EC key hold its public point, which certificates show anyway) and the
    scalar in hex."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    pieces = []
    for key in sorted(directory.glob("*-key.pem")):
        lines = [line for line in key.read_text().splitlines() if line and not line.startswith("-----")]
        assert lines, key
        scalar = load_pem_private_key(key.read_bytes(), password=None).private_numbers().private_value
        pieces += ["".join(lines), lines[0], f"{scalar:064x}"]
    return pieces


def leaks(text: str, pieces: list[str]) -> list[str]:
    found = ["PRIVATE KEY"] if "PRIVATE KEY" in text else []
    return found + [piece for piece in pieces if piece in text]


def test_private_keys_never_leave_their_files(tmp_path, make_target):
    """--tcp with fake binaries (the logs are the point, not TLS itself): no key material in the target's
    journal, in bkprov -v output or --json, in anything ansible-runner leaves, or in ansible-playbook -vvv."""
    env = {**fake_cache(tmp_path / "cache"), "BKPROV_KEEP_RUNS": "1"}
    name = make_target()

    run = bkprov("provision", "v0.10.6", "--name", name, "--tcp", TCP, "--json", "-v", env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert json.loads(run.stdout)  # the --json document is complete
    local = tmp_path / "cache" / "tls" / name
    pieces = key_material(local)
    assert leaks(run.stdout, pieces) == [] and leaks(run.stderr, pieces) == []

    runs = tmp_path / "cache" / ".bkprov" / "runs"
    left = [p for p in runs.rglob("*") if p.is_file()]
    assert left  # BKPROV_KEEP_RUNS kept ansible-runner's private data dir to look into
    for path in left:
        assert leaks(path.read_text(errors="replace"), pieces) == [], path

    # The same play straight from ansible-playbook at -vvv (a re-run: the key files are written again only
    # if they changed, so force that by changing one on the host).
    sh(name, "echo tampered > /etc/buildkit/tls/key.pem")
    played = ansible_playbook(
        "provision.yml",
        docker_inventory(tmp_path, name),
        "-vvv",
        "-e",
        "buildkit_version=v0.10.6",
        "-e",
        f"buildkit_tcp_address={TCP}",
        "-e",
        f"buildkit_tls_local_dir={local}",
        env=env,
    )
    assert played.returncode == 0, played.stdout[-3000:]
    assert "/etc/buildkit/tls/key.pem" in played.stdout  # the key file was rewritten in this run
    assert leaks(played.stdout + played.stderr, pieces) == []

    journal = sh(name, "journalctl --no-pager -o cat")
    assert journal.returncode == 0 and journal.stdout
    assert leaks(journal.stdout, pieces) == []

    # Modes as designed: private keys 0600 on the host and on the controller, certificates 0644.
    modes = sh(name, "stat -c '%n %a %U' /etc/buildkit/tls/ca.pem /etc/buildkit/tls/cert.pem /etc/buildkit/tls/key.pem")
    assert modes.stdout.split("\n")[:3] == [
        "/etc/buildkit/tls/ca.pem 644 root",
        "/etc/buildkit/tls/cert.pem 644 root",
        "/etc/buildkit/tls/key.pem 600 root",
    ]
    assert sh(name, "cat /etc/buildkit/tls/key.pem").stdout == (local / "server-key.pem").read_text()
    for key in local.glob("*-key.pem"):
        assert os.stat(key).st_mode & 0o777 == 0o600, key
    assert os.stat(local).st_mode & 0o777 == 0o700
