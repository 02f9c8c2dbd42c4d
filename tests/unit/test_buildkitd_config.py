"""buildkitd's effective configuration from what a host shows (module_utils/buildkitd_config.py).

The texts below were recorded in a Debian bookworm systemd container (systemd 252) with upstream's
units in /usr/local/lib/systemd/system and a drop-in in /etc/systemd/system/buildkit.service.d/.
"""

from __future__ import annotations

import pytest
from ansible_collections.bkprov.buildkit.plugins.module_utils import buildkitd_config as bc

from tests.support.units import UPSTREAM_SERVICE

DROP_IN_ARGV = (
    "/usr/local/bin/buildkitd --addr fd:// --config /etc/bk/custom.toml --root /srv/bk"
    " --oci-worker-snapshotter=overlayfs"
)
# `systemctl show buildkit.service -p ExecStart -p DropInPaths -p FragmentPath -p TriggeredBy …`
SHOW = f"""\
NRestarts=0
ExecStart={{ path=/usr/local/bin/buildkitd ; argv[]={DROP_IN_ARGV} ; ignore_errors=no ; start_time=[n/a] ; \
stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }}
Environment=
TriggeredBy=buildkit.socket
FragmentPath=/usr/local/lib/systemd/system/buildkit.service
DropInPaths=/etc/systemd/system/buildkit.service.d/override.conf
"""
DROP_IN = f"""\
[Service]
ExecStart=
ExecStart={DROP_IN_ARGV}
"""
ORIGIN = ("cmdline", "/proc/812/cmdline")
SYSTEMCTL = ("systemctl", "buildkit.service", "/etc/systemd/system/buildkit.service.d/override.conf:3")


# --- the command line ---------------------------------------------------------------------------------------------


def test_parse_flags_reads_both_value_forms_and_boolean_flags():
    argv = [
        "/usr/local/bin/buildkitd",
        "--debug",
        "--root",
        "/srv/bk",
        "-oci-worker-snapshotter=native",
        "--addr=fd://",
    ]
    assert bc.parse_flags(argv) == [
        ("debug", "true", "--debug"),
        ("root", "/srv/bk", "--root /srv/bk"),
        ("oci-worker-snapshotter", "native", "-oci-worker-snapshotter=native"),
        ("addr", "fd://", "--addr=fd://"),
    ]


def test_parse_flags_stops_at_the_first_word_that_is_no_flag():
    assert bc.parse_flags(["buildkitd", "--root", "/a", "extra", "--root", "/b"]) == [("root", "/a", "--root /a")]
    assert bc.parse_flags(["buildkitd", "--", "--root", "/b"]) == []


def test_a_boolean_flag_never_takes_the_next_word():
    assert bc.flag_values(["buildkitd", "--oci-worker-rootless", "--root", "/x"], "root") == [("/x", "--root /x")]


# --- systemd ------------------------------------------------------------------------------------------------------


def test_exec_start_argv_from_systemctl_show():
    props = bc.parse_show(SHOW)
    assert bc.exec_start_argv(props["ExecStart"]) == DROP_IN_ARGV.split()
    assert props["DropInPaths"] == "/etc/systemd/system/buildkit.service.d/override.conf"
    assert props["Environment"] == ""


def test_exec_start_argv_keeps_quoted_words_and_takes_the_last_command():
    value = (
        "{ path=/bin/true ; argv[]=/bin/true ; ignore_errors=no ; start_time=[n/a] }\n"
        '{ path=/usr/bin/buildkitd ; argv[]=/usr/bin/buildkitd --root "/srv/build kit" ; ignore_errors=no ; pid=0 }'
    )
    assert bc.exec_start_argv(value) == ["/usr/bin/buildkitd", "--root", "/srv/build kit"]
    assert bc.exec_start_argv("") == []


def test_exec_start_location_is_the_drop_in_line_after_the_reset():
    files = [
        ("/usr/local/lib/systemd/system/buildkit.service", UPSTREAM_SERVICE),
        ("/etc/systemd/system/buildkit.service.d/override.conf", DROP_IN),
    ]
    assert bc.exec_start_location(files) == (
        "/etc/systemd/system/buildkit.service.d/override.conf",
        3,
        f"ExecStart={DROP_IN_ARGV}",
    )


def test_exec_start_location_of_the_fragment_alone():
    files = [("/usr/local/lib/systemd/system/buildkit.service", UPSTREAM_SERVICE)]
    assert bc.exec_start_location(files)[1:] == (9, "ExecStart=/usr/local/bin/buildkitd --addr fd://")


def test_a_drop_in_that_only_resets_leaves_no_location():
    files = [("/x/buildkit.service", UPSTREAM_SERVICE), ("/x/buildkit.service.d/a.conf", "[Service]\nExecStart=\n")]
    assert bc.exec_start_location(files) == ("", 0, "")


def test_exec_start_location_joins_continuation_lines_and_ignores_other_sections():
    text = "[Unit]\nExecStart=/not/a/service\n[Service]\nExecStart=/usr/bin/buildkitd \\\n  --root /srv/bk\n"
    assert bc.exec_start_location([("/u.service", text)]) == (
        "/u.service",
        4,
        "ExecStart=/usr/bin/buildkitd --root /srv/bk",
    )


def test_listen_paths_of_a_socket_unit():
    assert bc.listen_paths("/run/buildkit/buildkitd.sock (Stream)") == ["/run/buildkit/buildkitd.sock"]
    assert bc.listen_paths("127.0.0.1:1234 (Stream)") == []


# --- TOML ---------------------------------------------------------------------------------------------------------

TOML = """\
# written by hand
debug = true
root = "/srv/from-toml"

[grpc]
  address = [
    "unix:///run/bk/a.sock",
    "tcp://127.0.0.1:1234",
  ]

[worker.oci]
  enabled = true
  snapshotter = "overlayfs"  # forced
  binary = '/usr/local/sbin/runc-noseccomp'

[registry."docker.io"]
  mirrors = ["mirror.example:5000"]
"""


def test_scan_toml_finds_each_key_with_its_line():
    found = bc.scan_toml(TOML)
    assert found[((), "root")] == ("/srv/from-toml", 3, 'root = "/srv/from-toml"')
    assert found[(("worker", "oci"), "snapshotter")] == ("overlayfs", 13, 'snapshotter = "overlayfs"  # forced')
    assert found[(("worker", "oci"), "binary")][:2] == ("/usr/local/sbin/runc-noseccomp", 14)
    assert found[(("grpc",), "address")][:2] == (["unix:///run/bk/a.sock", "tcp://127.0.0.1:1234"], 6)
    assert found[(("registry", "docker.io"), "mirrors")][0] == ["mirror.example:5000"]


def test_scan_toml_reads_dotted_keys():
    assert bc.scan_toml('worker.oci.snapshotter = "native"\n')[(("worker", "oci"), "snapshotter")][0] == "native"


def test_parse_toml_agrees_with_the_line_reader():
    values, error = bc.parse_toml(TOML)
    assert error == ""
    assert values[(("worker", "oci"), "snapshotter")] == "overlayfs"
    assert values[((), "root")] == "/srv/from-toml"


def test_parse_toml_reports_what_buildkitd_would_refuse():
    values, error = bc.parse_toml('[worker.oci]\nsnapshotter = "overlayfs\n')
    assert values == {}
    assert "line 2" in error


# --- the effective settings ---------------------------------------------------------------------------------------


def test_flags_win_over_the_toml_and_name_the_command_line():
    argv = ["/usr/local/bin/buildkitd", "--root", "/srv/flag", "--oci-worker-snapshotter=native"]
    eff = bc.effective(argv, ORIGIN, "/etc/bk/custom.toml", TOML)
    assert eff["root"] == {"value": "/srv/flag", "source": "cmdline: --root /srv/flag (/proc/812/cmdline)"}
    assert eff["snapshotter"]["value"] == "native"


def test_the_toml_wins_over_defaults_and_names_file_and_line():
    eff = bc.effective(["/usr/local/bin/buildkitd"], ORIGIN, "/etc/bk/custom.toml", TOML)
    assert eff["snapshotter"] == {
        "value": "overlayfs",
        "source": '/etc/bk/custom.toml:13: snapshotter = "overlayfs"  # forced',
    }
    assert eff["runtime"]["value"] == "/usr/local/sbin/runc-noseccomp"
    assert eff["addr"]["value"] == ["unix:///run/bk/a.sock", "tcp://127.0.0.1:1234"]
    assert eff["toml_error"] == ""


def test_defaults_say_what_was_looked_at():
    eff = bc.effective(["/usr/local/bin/buildkitd"], ORIGIN, "/etc/buildkit/buildkitd.toml", None)
    assert eff["root"] == {"value": "/var/lib/buildkit", "source": "default (no --root flag)"}
    eff = bc.effective(["/usr/local/bin/buildkitd"], ORIGIN, "/etc/buildkit/buildkitd.toml", "debug = true\n")
    assert eff["snapshotter"]["source"] == (
        "default (no --oci-worker-snapshotter flag, no worker.oci.snapshotter in /etc/buildkit/buildkitd.toml)"
    )


def test_flags_from_systemctl_name_the_unit_and_the_drop_in_line():
    eff = bc.effective(DROP_IN_ARGV.split(), SYSTEMCTL, "/etc/bk/custom.toml", None)
    assert eff["snapshotter"]["source"] == (
        "systemctl show buildkit.service: ExecStart … --oci-worker-snapshotter=overlayfs"
        " (/etc/systemd/system/buildkit.service.d/override.conf:3)"
    )
    assert eff["addr"] == {
        "value": ["fd://"],
        "source": "systemctl show buildkit.service: ExecStart … --addr fd://"
        " (/etc/systemd/system/buildkit.service.d/override.conf:3)",
    }


def test_repeated_addr_flags_are_all_kept():
    argv = ["buildkitd", "--addr", "unix:///run/a.sock", "--addr", "tcp://0.0.0.0:1234"]
    assert bc.effective(argv, ORIGIN, "/x.toml", None)["addr"]["value"] == ["unix:///run/a.sock", "tcp://0.0.0.0:1234"]


def test_config_setting():
    assert bc.config_setting(DROP_IN_ARGV.split(), SYSTEMCTL)["value"] == "/etc/bk/custom.toml"
    assert bc.config_setting(["buildkitd"], ORIGIN) == {
        "value": "/etc/buildkit/buildkitd.toml",
        "source": "default (no --config flag)",
    }


def test_a_toml_buildkitd_cannot_parse_is_reported():
    eff = bc.effective(["buildkitd"], ORIGIN, "/etc/bk.toml", "root = \n")
    assert eff["toml_error"]
    assert eff["root"]["value"] == "/var/lib/buildkit"


@pytest.mark.parametrize(
    ("addresses", "listen", "expected"),
    [
        (["unix:///run/buildkit/buildkitd.sock"], [], "/run/buildkit/buildkitd.sock"),
        (["fd://"], ["/run/buildkit/buildkitd.sock"], "/run/buildkit/buildkitd.sock"),
        (["tcp://0.0.0.0:1234", "unix:///run/bk.sock"], [], "/run/bk.sock"),
        (["fd://"], [], ""),
        (["tcp://0.0.0.0:1234"], [], ""),
    ],
)
def test_unix_socket(addresses, listen, expected):
    path, how = bc.unix_socket(addresses, listen)
    assert path == expected
    if not expected:
        assert how.startswith("no unix socket")
