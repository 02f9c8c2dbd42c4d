"""The buildkit role's unit and config templates and the verify script, rendered by Ansible's own templar."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
import warnings
from pathlib import Path

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from ansible_collections.bkprov.buildkit.plugins.module_utils.buildkit_plan import tls_plan

ROLES = Path(__file__).resolve().parents[2] / "collection" / "roles"
BUILDKIT = ROLES / "buildkit"
VERIFY = ROLES / "verify"
SOCKET_VERSIONS = ["v0.9.0", "v0.10.0", "v0.25.0"]
RENDERED_VERSIONS = ["v0.4.0", "v0.6.0", *SOCKET_VERSIONS]


def role_vars(role: Path) -> dict:
    """defaults/main.yml then vars/main.yml, loaded the way Ansible loads role files (templatable)."""
    loader = DataLoader()
    merged: dict = {}
    for path in (role / "defaults" / "main.yml", role / "vars" / "main.yml"):
        if path.is_file():
            merged.update(loader.load_from_file(str(path), trusted_as_template=True) or {})
    return merged


def render_text(text: str, variables: dict) -> str:
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(text))


def plan_tls(variables: dict) -> dict:
    """What the role's buildkit_plan task derives for TCP/TLS from these variables (module_utils/buildkit_plan.py)."""
    templar = Templar(loader=DataLoader(), variables=variables)

    def value(name: str):
        return (
            templar.template(trust_as_template(variables[name]))
            if isinstance(variables[name], str)
            else variables[name]
        )

    return tls_plan(
        variables["__buildkit_release"],
        variables.get("inventory_hostname", "bk1"),
        tcp_address=value("buildkit_tcp_address"),
        insecure_tcp=bool(value("buildkit_insecure_tcp")),
        tls_mode=value("buildkit_tls_mode"),
        tls_dir=value("buildkit_tls_dir"),
        tls_local_dir=value("buildkit_tls_local_dir"),
        ca_cert=value("buildkit_tls_ca_cert"),
        server_cert=value("buildkit_tls_server_cert"),
        server_key=value("buildkit_tls_server_key"),
    )


@pytest.fixture(scope="session")
def lookups():
    """Lookups by FQCN (ansible.builtin.file) need Ansible's collection loader, as ansible-playbook sets it up."""
    from ansible.plugins.loader import init_plugin_loader

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "AnsibleCollectionFinder has already been configured")
        init_plugin_loader()


@pytest.fixture
def buildkit_render(release_of):
    """render(template, version, **overrides) -> the rendered text of a buildkit role template."""

    def render(template: str, version: str, **overrides) -> str:
        variables = role_vars(BUILDKIT)
        variables.update(
            ansible_managed="Ansible managed",
            buildkit_cache_dir="/tmp/bkprov-cache",
            buildkit_mirror="",
            buildkit_version=version,
            __buildkit_release=release_of(version),
            buildkit_host_facts={"root_fstype": "ext4"},  # what host_facts reports for a volume
            inventory_hostname="bk1",
        )
        variables.update(overrides)
        if "__buildkit_tls" not in overrides:
            variables["__buildkit_tls"] = plan_tls(variables)
        return render_text((BUILDKIT / "templates" / template).read_text(encoding="utf-8"), variables)

    return render


@pytest.fixture
def verify_render(release_of):
    def render(version: str, **overrides) -> str:
        variables = role_vars(VERIFY)
        variables.update(
            ansible_managed="Ansible managed",
            buildkit_version=version,
            verify_registry="127.0.0.1:5000",
            __verify_release=release_of(version),
        )
        variables.update(overrides)
        return render_text((VERIFY / "templates" / "verify-build.sh.j2").read_text(encoding="utf-8"), variables)

    return render


def exec_start(unit: str) -> list[str]:
    """The ExecStart command line, continuation lines joined, as a list of words."""
    lines = unit.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ExecStart="))
    words: list[str] = []
    for line in lines[start:]:
        body = line.removeprefix("ExecStart=").strip()
        continued = body.endswith("\\")
        words += body.removesuffix("\\").split()
        if not continued:
            break
    return words


def exec_start_lines(unit: str) -> list[str]:
    lines = unit.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ExecStart="))
    block = []
    for line in lines[start:]:
        block.append(line)
        if not line.endswith("\\"):
            break
    return block


def section(unit: str, name: str) -> list[str]:
    """Non-comment lines of one [Section] of a systemd unit."""
    out, inside = [], False
    for line in unit.splitlines():
        if line.startswith("["):
            inside = line == f"[{name}]"
            continue
        if inside and line.strip() and not line.startswith("#"):
            out.append(line)
    return out


# ---------------------------------------------------------------- buildkit.service


def test_v0_4_0_service_listens_itself(buildkit_render):
    unit = buildkit_render("buildkit.service.j2", "v0.4.0")
    assert "Type=simple" in section(unit, "Service")
    assert "Requires=buildkit.socket" not in unit
    assert "After=buildkit.socket" not in unit
    assert "RuntimeDirectory=buildkit" in section(unit, "Service")
    assert "fd://" not in "\n".join(exec_start_lines(unit))
    words = exec_start(unit)
    assert words[0] == "/usr/local/bin/buildkitd"
    assert words[words.index("--addr") + 1] == "unix:///run/buildkit/buildkitd.sock"
    assert words[words.index("--group") + 1] == "buildkit"
    assert words[words.index("--config") + 1] == "/etc/buildkit/buildkitd.toml"
    assert words[-2:] == ["--root", "/var/lib/buildkit"]


def test_v0_6_0_service_notifies_without_socket_activation(buildkit_render):
    unit = buildkit_render("buildkit.service.j2", "v0.6.0")
    assert "Type=notify" in section(unit, "Service")
    assert "--addr fd://" not in unit
    words = exec_start(unit)
    assert "fd://" not in words
    assert words[words.index("--addr") + 1] == "unix:///run/buildkit/buildkitd.sock"
    assert "Requires=buildkit.socket" not in unit
    assert "--group" in words


@pytest.mark.parametrize("version", SOCKET_VERSIONS)
def test_socket_activated_service(buildkit_render, version):
    unit = buildkit_render("buildkit.service.j2", version)
    assert "Requires=buildkit.socket" in section(unit, "Unit")
    assert "After=buildkit.socket" in section(unit, "Unit")
    assert "Type=notify" in section(unit, "Service")
    assert "RuntimeDirectory=buildkit" not in unit
    words = exec_start(unit)
    assert words[words.index("--addr") + 1] == "fd://"
    assert "--group" not in words
    assert f"Description=BuildKit {version}" in section(unit, "Unit")


@pytest.mark.parametrize("version", RENDERED_VERSIONS)
def test_service_shape(buildkit_render, version):
    unit = buildkit_render("buildkit.service.j2", version)
    assert unit.startswith("#\n# Ansible managed\n#\n")
    assert section(unit, "Install") == ["WantedBy=multi-user.target"]
    # Every line of the ExecStart block but the last continues; no blank line breaks it.
    block = exec_start_lines(unit)
    assert all(line.strip() for line in block)
    assert block[-1].strip() == "--root /var/lib/buildkit"


@pytest.mark.parametrize("version", ["v0.4.0", "v0.10.0"])
def test_extra_flags_each_on_their_own_line(buildkit_render, version):
    flags = ["--debugaddr=127.0.0.1:6060", "--oci-worker-gc=false"]
    unit = buildkit_render("buildkit.service.j2", version, buildkit_extra_flags=flags)
    block = exec_start_lines(unit)
    assert "  --debugaddr=127.0.0.1:6060 \\" in block
    assert "  --oci-worker-gc=false \\" in block
    assert block[-1].strip() == "--root /var/lib/buildkit"
    words = exec_start(unit)
    assert words.index("--debugaddr=127.0.0.1:6060") < words.index("--oci-worker-gc=false") < words.index("--root")


def test_no_extra_flags_renders_none(buildkit_render):
    words = exec_start(buildkit_render("buildkit.service.j2", "v0.10.0"))
    assert "--debugaddr=127.0.0.1:6060" not in words
    assert "--oci-worker-binary" not in words
    assert "--debug" not in words


def test_oci_worker_binary(buildkit_render):
    unit = buildkit_render("buildkit.service.j2", "v0.10.0", buildkit_oci_worker_binary="/usr/local/sbin/runc")
    words = exec_start(unit)
    assert words[words.index("--oci-worker-binary") + 1] == "/usr/local/sbin/runc"
    assert "  --oci-worker-binary /usr/local/sbin/runc \\" in exec_start_lines(unit)


def test_custom_paths_and_group(buildkit_render):
    unit = buildkit_render(
        "buildkit.service.j2",
        "v0.4.0",
        buildkit_bin_dir="/opt/bk/bin",
        buildkit_root="/srv/buildkit",
        buildkit_group="builders",
        buildkit_config_file="/opt/bk/buildkitd.toml",
    )
    words = exec_start(unit)
    assert "ExecStart=/opt/bk/bin/buildkitd" in unit
    assert words[words.index("--group") + 1] == "builders"
    assert words[words.index("--config") + 1] == "/opt/bk/buildkitd.toml"
    assert words[-2:] == ["--root", "/srv/buildkit"]


# ---------------------------------------------------------------- buildkit.socket


@pytest.mark.parametrize("version", SOCKET_VERSIONS)
def test_socket_is_group_owned_and_never_world_writable(buildkit_render, version):
    unit = buildkit_render("buildkit.socket.j2", version)
    socket = section(unit, "Socket")
    assert "ListenStream=%t/buildkit/buildkitd.sock" in socket
    assert "SocketMode=0660" in socket
    assert "SocketGroup=buildkit" in socket
    assert section(unit, "Install") == ["WantedBy=sockets.target"]


def test_socket_group_follows_the_variable(buildkit_render):
    socket = section(buildkit_render("buildkit.socket.j2", "v0.10.0", buildkit_group="builders"), "Socket")
    assert "SocketGroup=builders" in socket


# ---------------------------------------------------------------- role vars


@pytest.mark.parametrize(
    ("version", "unit"),
    [
        ("v0.4.0", "buildkit.service"),
        ("v0.6.0", "buildkit.service"),
        ("v0.9.0", "buildkit.socket"),
        ("v0.25.0", "buildkit.socket"),
    ],
)
def test_started_unit_follows_socket_activation(release_of, version, unit):
    variables = role_vars(BUILDKIT)
    variables["__buildkit_release"] = release_of(version)
    assert render_text("{{ __buildkit_unit }}", variables) == unit


# ---------------------------------------------------------------- buildkitd.toml


@pytest.mark.parametrize("version", RENDERED_VERSIONS)
def test_buildkitd_toml_registries(buildkit_render, version):
    text = buildkit_render(
        "buildkitd.toml.j2",
        version,
        buildkit_registries={"127.0.0.1:5000": {"http": True, "mirrors": ["a"]}},
    )
    assert '[registry."127.0.0.1:5000"]' in text
    assert "  http = true" in text.splitlines()
    assert '  mirrors = ["a"]' in text.splitlines()
    parsed = tomllib.loads(text)
    assert parsed["registry"] == {"127.0.0.1:5000": {"http": True, "mirrors": ["a"]}}
    assert parsed["debug"] is False
    assert parsed["worker"] == {"oci": {"snapshotter": "auto"}, "containerd": {"enabled": False}}


def test_buildkitd_toml_without_registries_and_with_debug(buildkit_render):
    text = buildkit_render("buildkitd.toml.j2", "v0.25.0", buildkit_debug=True, buildkit_snapshotter="native")
    parsed = tomllib.loads(text)
    assert parsed["debug"] is True
    assert parsed["worker"]["oci"]["snapshotter"] == "native"
    assert "registry" not in parsed
    assert "(E14)" in text


def test_buildkitd_toml_several_registries_sorted(buildkit_render):
    registries = {
        "z.example:5000": {"insecure": True, "ca": ["/etc/ca.pem"]},
        "a.example": {"mirrors": ["m1.example", "m2.example"]},
    }
    text = buildkit_render("buildkitd.toml.j2", "v0.10.6", buildkit_registries=registries)
    assert text.index('[registry."a.example"]') < text.index('[registry."z.example:5000"]')
    assert tomllib.loads(text)["registry"] == registries


# ---------------------------------------------------------------- verify-build.sh


def test_verify_script_v0_4_0_overrides_the_copy_image(verify_render):
    script = verify_render("v0.4.0")
    assert "copy_image=127.0.0.1:5000/bkprov/copy:1" in script
    assert '--opt override-copy-image="$copy_image"' in script
    assert "--frontend dockerfile.v0" in script
    assert "timeout 300 /usr/local/bin/buildctl --addr unix:///run/buildkit/buildkitd.sock build" in script
    assert "helper_registry" not in script and "BKPROV_HELPER_REGISTRY" not in script


def test_verify_script_v0_4_0_serves_its_own_copy_helper_without_a_registry(verify_render, lookups, tmp_path):
    # The role's files/ are found the way a role run finds them.
    script = verify_render("v0.4.0", verify_registry="", ansible_search_path=[str(VERIFY)])
    assert "<<'BKPROV_HELPER_REGISTRY'" in script and "<<'BKPROV_COPY_HELPER'" in script
    assert (VERIFY / "files" / "helper_registry.py").read_text() in script
    assert '--busybox /bin/busybox --ready "$helper/ready"' in script
    assert 'copy_image=$(cat "$helper/ready")' in script
    assert '--opt override-copy-image="$copy_image"' in script
    path = tmp_path / "verify.sh"
    path.write_text(script)
    assert subprocess.run(["sh", "-n", str(path)], check=False).returncode == 0


def test_verify_script_v0_10_6_needs_no_helper_image(verify_render):
    script = verify_render("v0.10.6")
    assert "override-copy-image" not in script
    assert "127.0.0.1:5000" not in script
    assert "--frontend dockerfile.v0" in script


@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh to check the script's syntax")
@pytest.mark.parametrize("version", ["v0.4.0", "v0.10.6"])
def test_verify_script_is_valid_sh(verify_render, tmp_path, version):
    script = tmp_path / "verify-build.sh"
    script.write_text(verify_render(version), encoding="utf-8")
    result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    # The build command is one logical line: every continued line is followed by a non-blank one.
    lines = script.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if line.endswith("\\"):
            assert lines[number + 1].strip(), f"blank line after continuation at line {number + 1}"
    assert lines[-1].endswith("2>&1")


def test_buildkitd_toml_registry_keypair_is_toml(buildkit_render):
    registries = {"r.example": {"keypair": [{"key": "/etc/bk/key.pem", "cert": "/etc/bk/cert.pem"}]}}
    text = buildkit_render("buildkitd.toml.j2", "v0.10.6", buildkit_registries=registries)
    assert tomllib.loads(text)["registry"] == registries


@pytest.mark.parametrize(
    ("fstype", "configured", "rendered"),
    [
        ("ext4", "auto", "auto"),
        ("overlay", "auto", "native"),
        ("overlay", "native", "native"),
        ("xfs", "overlayfs", "overlayfs"),
    ],
)
def test_snapshotter_follows_the_root_filesystem(buildkit_render, fstype, configured, rendered):
    text = buildkit_render(
        "buildkitd.toml.j2", "v0.10.6", buildkit_snapshotter=configured, buildkit_host_facts={"root_fstype": fstype}
    )
    assert tomllib.loads(text)["worker"]["oci"]["snapshotter"] == rendered
