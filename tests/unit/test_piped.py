"""The piped path (plugin_utils/piped.py): module_utils code run on a host by one ``python3 -c`` reading stdin.

The protocol runs here as the actions run it over a connection: a real interpreter, real stdin, the real
converge and host_facts code. host_facts runs through ansible-playbook on this machine (local
connection), piped and as the AnsiballZ module, and both must give the same result.
"""

from __future__ import annotations

import ast
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.bkprov.buildkit.plugins.filter.doctor import doctor_unread_reason
from ansible_collections.bkprov.buildkit.plugins.plugin_utils import piped

from tests.support.fakes import script_tarball

MODULE_UTILS = Path(piped.__file__).resolve().parents[1] / "module_utils"
ROOT = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"


def on_host(data: bytes, python: str = sys.executable) -> subprocess.CompletedProcess[bytes]:
    """``python -c BOOTSTRAP`` with ``data`` on stdin, as the connection runs it."""
    return subprocess.run([python, "-c", piped.BOOTSTRAP], input=data, capture_output=True, check=False)


def json_line(proc: subprocess.CompletedProcess[bytes]) -> dict:
    return piped.result_of(
        {"rc": proc.returncode, "stdout": proc.stdout.decode(), "stderr": proc.stderr.decode()}, "test"
    )


# --- what is sent ---------------------------------------------------------------------------------------------


def ast_imports(path: Path) -> set[str]:
    """The module_utils a file imports, read by Python's own parser (what the regex walk must agree with)."""
    depth = len(piped.PACKAGE.split("."))
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and ((node.level == 1 and not node.module) or node.module == piped.PACKAGE):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 1:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(piped.PACKAGE + "."):
            names.add(node.module.split(".")[depth])
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[depth] for a in node.names if a.name.startswith(piped.PACKAGE + ".")}
    return names


@pytest.mark.parametrize("path", sorted(MODULE_UTILS.glob("*.py")), ids=lambda p: p.name)
def test_the_import_walk_agrees_with_the_parser(path):
    assert set(piped.imported_module_utils(path.read_text())) == ast_imports(path)


def test_host_facts_goes_with_its_module_utils_and_converge_with_its_own():
    names = [name.rsplit(".", 1)[1] for name, _ in piped.sources("host_facts")]
    assert names == ["buildkitd_config", "diagnosis", "host_facts"]
    assert "converge" in [name.rsplit(".", 1)[1] for name, _ in piped.sources("converge")]
    for name, data in piped.sources("host_facts"):
        assert name.startswith("ansible_collections.bkprov.buildkit.plugins.module_utils.")
        assert data == (MODULE_UTILS / (name.rsplit(".", 1)[1] + ".py")).read_bytes()


def test_controller_code_is_refused_before_anything_is_sent():
    """Code needing more than the standard library would fail on the host: the controller says so first."""
    with pytest.raises(piped.PipedError, match=r"module_utils/catalog.py imports yaml, beyond Python's standard"):
        piped.sources("catalog")


def test_sources_sent_to_hosts_parse_as_python_3_7():
    """bookworm has 3.11, bullseye 3.9; diagnosis.py's dataclass makes 3.7 the floor of what is sent."""
    ast.parse(piped.LOADER, feature_version=(3, 6))
    for entry in ("host_facts", "converge"):
        for name, data in piped.sources(entry):
            ast.parse(data.decode(), filename=name, feature_version=(3, 7))


# --- the protocol on a real interpreter -------------------------------------------------------------------------


def host_facts_params(**given) -> dict:
    params = {name: option.get("default") for name, option in host_facts_spec().items()}
    return dict(params, **given)


def host_facts_spec() -> dict:
    from ansible_collections.bkprov.buildkit.plugins.module_utils.host_facts import ARGUMENT_SPEC

    return ARGUMENT_SPEC


def test_host_facts_runs_from_stdin_and_expands_paths_on_the_host(tmp_path):
    version_dir = tmp_path / "lib" / "v0.10.6" / "bin"
    version_dir.mkdir(parents=True)
    (version_dir / "buildkitd").touch()
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "buildkitd").symlink_to(version_dir / "buildkitd")
    data = piped.stdin_for("host_facts:piped", host_facts_params(bin_dir="$BKPROV_TEST_BIN", unit_dir=str(tmp_path)))
    proc = subprocess.run(
        [sys.executable, "-c", piped.BOOTSTRAP],
        input=data,
        capture_output=True,
        check=False,
        env=dict(os.environ, BKPROV_TEST_BIN=str(tmp_path / "bin")),  # the host's variable, expanded there
    )
    result = json_line(proc)
    assert proc.returncode == 0 and proc.stderr == b""
    assert result["installed_version"] == "v0.10.6" and result["socket_unit"] is False
    assert result["user_id"] == os.geteuid() and {f["check"] for f in result["findings"]} >= {"systemd", "cgroups"}


def test_an_entry_that_raises_is_one_failed_result_naming_the_error():
    proc = on_host(piped.stdin_for("host_facts:piped", {"release": {}}))
    result = json_line(proc)
    assert result["failed"] is True
    assert result["msg"] == "host_facts failed on the host: KeyError: 'discover'"
    assert "Traceback" in result["exception"]


def test_no_interpreter_is_a_failure_that_names_it_and_doctor_reads(tmp_path):
    """What the connection returns when the host has no such Python: exit code, stderr, the hint."""
    command = f"nopython3.99 -c {shlex.quote(piped.BOOTSTRAP)}"
    done = subprocess.run(["/bin/sh", "-c", command], input=b"", capture_output=True, check=False)
    res = {"rc": done.returncode, "stdout": done.stdout.decode(), "stderr": done.stderr.decode()}
    result = piped.result_of(res, "bkprov.buildkit.host_facts", "nopython3.99")
    assert result["failed"] is True and result["rc"] == 127
    assert result["msg"].startswith("bkprov.buildkit.host_facts did not report a result (exit 127): ")
    assert "nopython3.99: not found" in result["msg"]
    assert result["msg"].endswith("(is nopython3.99 on the host? set ansible_python_interpreter)")
    assert result["module_stderr"] == done.stderr.decode()
    assert doctor_unread_reason(result, "h1") == (
        "no usable Python on h1 (Ansible modules need python3): install python3 or set ansible_python_interpreter"
    )


def test_no_output_at_all_still_says_what_ran():
    result = piped.result_of({"rc": 1, "stdout": "", "stderr": ""}, "the converge step")
    assert result["msg"] == (
        "the converge step did not report a result (exit 1): no output "
        "(is python3 on the host? set ansible_python_interpreter)"
    )


def test_converge_reads_its_parameters_and_the_artifact_after_the_code(tmp_path):
    """converge's main() reads <len>\\n<params> and the artifact after them from the same stdin ("main")."""
    artifact = tmp_path / "v1.tar.gz"
    dest = tmp_path / "lib" / "v1"
    release = {
        "root": str(tmp_path / "lib"),
        "bin_dir": str(tmp_path / "bin"),
        "keep": str(tmp_path / "cache" / "release.tar.gz"),
        "required": ["buildctl", "buildkitd", "buildkit-runc"],
        "expected": ["buildctl", "buildkitd", "buildkit-runc"],
        "dest": str(dest),
        "sha256": script_tarball(artifact),
    }
    params = {"release": release, "artifact_follows": True}
    proc = on_host(piped.stdin_for("converge:main", params, call="main", tail=artifact.read_bytes()))
    result = json_line(proc)
    assert proc.returncode == 0, proc.stderr.decode()
    assert result["changed"] is True and result["install"]["unpacked"] is True
    assert (dest / "bin" / "buildkitd").read_text() == "#!/bin/sh\necho buildkitd v1\n"
    assert os.readlink(tmp_path / "bin" / "buildkitd") == str(dest / "bin" / "buildkitd")
    assert (tmp_path / "cache" / "release.tar.gz").read_bytes() == artifact.read_bytes()

    again = json_line(on_host(piped.stdin_for("converge:main", dict(params, artifact_follows=False), call="main")))
    assert again["changed"] is False and again["needs_artifact"] is False


def test_the_hosts_own_ansible_collections_do_not_shadow_the_sources(tmp_path):
    """A host with an ansible_collections of its own (older bkprov, say) still runs the code that was sent."""
    stale = tmp_path / "site" / "ansible_collections" / "bkprov" / "buildkit" / "plugins" / "module_utils"
    stale.mkdir(parents=True)
    (stale / "diagnosis.py").write_text("raise ImportError('the stale copy was imported')\n")
    data = piped.stdin_for("host_facts:piped", host_facts_params())
    proc = subprocess.run(
        [sys.executable, "-c", piped.BOOTSTRAP],
        input=data,
        capture_output=True,
        check=False,
        env=dict(os.environ, PYTHONPATH=str(tmp_path / "site")),
    )
    assert "failed" not in json_line(proc), proc.stdout.decode()[-500:]


# --- host_facts through Ansible, piped and as a module ---------------------------------------------------------

PLAYBOOK = """\
- name: host_facts both ways
  hosts: all
  gather_facts: false
  tasks:
    - name: Discover
      bkprov.buildkit.host_facts:
        discover: true
        journal: true
        unit: bkprov-test-none.service
      register: discovered
    - name: Preflight view of an installed layout
      bkprov.buildkit.host_facts:
        buildkit_root: "{{ layout }}/root/not-yet"
        bin_dir: "{{ layout }}/bin"
        unit_dir: "{{ layout }}/units"
        snapshotter: ""
        runtime: "{{ layout }}/fake-runc"
        release:
          version: v0.10.6
      register: preflight
    - name: With the task's environment (the runtime is found in its PATH)
      bkprov.buildkit.host_facts:
        runtime: fake-runc
      environment:
        PATH: "{{ layout }}:/usr/bin:/bin"
      register: with_env
    - name: A value of the wrong type
      bkprov.buildkit.host_facts:
        probe_timeout: soon
      register: bad_type
      ignore_errors: true
    - name: An option that does not exist
      bkprov.buildkit.host_facts:
        bogus: 1
      register: unknown
      ignore_errors: true
    - name: Escalated to another user
      bkprov.buildkit.host_facts:
        copy_helper:
          copy: "a long script"
          registry: "another one"
      become: true
      become_method: ansible.builtin.su
      become_user: nobody
      become_flags: -s /bin/sh
      register: escalated
    - name: Report
      ansible.builtin.set_stats:
        data:
          results: "{{ {'discovered': discovered, 'preflight': preflight, 'with_env': with_env, 'bad_type': bad_type,
            'unknown': unknown, 'escalated': escalated} }}"
"""


def run_both_ways(tmp_path: Path, pipelining: bool, *extra: str) -> dict:
    playbook = tmp_path / "both.yml"
    playbook.write_text(PLAYBOOK)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        "all:\n  hosts:\n    here:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {PYTHON}\n      layout: {tmp_path / 'layout'}\n"
    )
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(playbook), *extra],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=ROOT,
        env=dict(
            os.environ,
            ANSIBLE_PIPELINING="1" if pipelining else "0",
            ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
            ANSIBLE_SHOW_CUSTOM_STATS="1",
            ANSIBLE_NOCOLOR="1",
        ),
    )
    try:
        return json.loads(done.stdout)["global_custom_stats"]["results"]
    except (ValueError, KeyError) as exc:
        raise AssertionError(f"no results ({exc}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}") from exc


def test_piped_and_module_give_the_same_results_defaults_and_refusals(tmp_path):
    if not os.path.exists(PYTHON) or not shutil.which("su"):
        pytest.skip(f"needs {PYTHON} and su")
    layout = tmp_path / "layout"
    (layout / "lib" / "v0.10.6" / "bin").mkdir(parents=True)
    (layout / "lib" / "v0.10.6" / "bin" / "buildkitd").touch()
    (layout / "bin").mkdir()
    (layout / "bin" / "buildkitd").symlink_to(layout / "lib" / "v0.10.6" / "bin" / "buildkitd")
    (layout / "units").mkdir()
    (layout / "units" / "buildkit.socket").write_text("[Socket]\n")
    (layout / "units" / "buildkit.service").write_text(
        "[Service]\nExecStart=buildkitd --oci-worker-snapshotter=native\n"
    )
    (layout / "fake-runc").write_text("#!/bin/sh\nprintf 'runc version 1.0.2\\ncommit: v1.0.2-0-g52b36a2d\\n'\n")
    (layout / "fake-runc").chmod(0o755)
    os.chmod(tmp_path, 0o755)  # su nobody needs to reach the module's files for the module path

    piped_run = run_both_ways(tmp_path, True, "--check")  # read-only: it runs in check mode too
    module_run = run_both_ways(tmp_path, False)

    for name in ("discovered", "preflight", "with_env", "escalated"):
        for result in (piped_run[name], module_run[name]):
            assert not result.get("failed"), result
            result.pop("invocation", None)  # the module's own echo of its arguments
            for finding in result["findings"] + result["problems"]:
                if finding["check"].startswith("inotify-"):  # counts of the whole machine's inotify use
                    del finding["summary"], finding["evidence"]
        assert piped_run[name] == module_run[name], name
    pre = piped_run["preflight"]
    assert (pre["installed_version"], pre["socket_unit"], pre["runtime_release_tag"]) == ("v0.10.6", True, "v1.0.2")
    assert piped_run["with_env"]["runtime_release_tag"] == "v1.0.2"
    assert piped_run["escalated"]["user_id"] == 65534 and piped_run["discovered"]["user_id"] == os.geteuid()
    assert piped_run["discovered"]["effective"] == {}  # no buildkitd here

    for name in ("bad_type", "unknown"):
        assert piped_run[name]["failed"] is True and module_run[name]["failed"] is True
        assert piped_run[name]["msg"] == module_run[name]["msg"]
    assert piped_run["bad_type"]["msg"].startswith("argument 'probe_timeout' is of type str and we were unable")
    assert piped_run["unknown"]["msg"].startswith("Unsupported parameters for (bkprov.buildkit.host_facts) module:")
