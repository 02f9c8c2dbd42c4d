# Copyright: bkprov developers
# Apache-2.0
"""The configuration a buildkitd really runs with, read from what the host shows.

Pure functions: the ``host_facts`` module reads the texts (``/proc/PID/cmdline``, ``systemctl show``,
unit files, the TOML file) and these turn them into settings. Each setting is a dict
``{"value": ..., "source": "..."}`` whose source says where the value came from, in words a
finding can quote: ``cmdline: --root=/srv/bk (/proc/812/cmdline)``, ``/etc/buildkit/x.toml:4:
snapshotter = "overlayfs"``, ``systemctl show buildkit.service: ExecStart …`` or ``default``.

Precedence is buildkitd's own (every tag): a flag given on the command line wins over the
``--config`` TOML, the TOML over the built-in default. A missing config file is silently empty to
buildkitd, and an unparseable one stops it (reference §6).
"""

from __future__ import annotations

import re
import shlex

try:  # Python 3.11+ (Debian bookworm); older targets fall back to the line reader below
    import tomllib
except ImportError:  # pragma: no cover - depends on the target's Python
    tomllib = None

DEFAULT_CONFIG = "/etc/buildkit/buildkitd.toml"
DEFAULTS = {
    "config": DEFAULT_CONFIG,
    "root": "/var/lib/buildkit",
    "addr": ["unix:///run/buildkit/buildkitd.sock"],
    "snapshotter": "auto",
    # Empty: buildkitd looks up buildkit-runc, then runc, in its PATH (executor/runcexecutor, every tag).
    "runtime": "",
}
DEFAULT_RUNTIMES = ("buildkit-runc", "runc")
# systemd's PATH for system services, which buildkitd inherits when its unit sets none.
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

FLAGS = {
    "config": "config",
    "root": "root",
    "addr": "addr",
    "snapshotter": "oci-worker-snapshotter",
    "runtime": "oci-worker-binary",
}
REPEATED = ("addr",)
# (table path, key) of each setting in buildkitd.toml (docs/buildkitd.toml.md).
TOML_KEYS = {
    "root": ((), "root"),
    "addr": (("grpc",), "address"),
    "snapshotter": (("worker", "oci"), "snapshotter"),
    "runtime": (("worker", "oci"), "binary"),
}
# buildkitd's boolean flags (urfave/cli BoolFlag/BoolTFlag): they never take the next word as value.
BOOL_FLAGS = frozenset(
    (
        "debug",
        "trace",
        "rootless",
        "oci-worker-rootless",
        "oci-worker-no-process-sandbox",
        "oci-worker-selinux",
        "oci-worker-gc",
        "containerd-worker-rootless",
        "containerd-worker-selinux",
        "containerd-worker-gc",
        "cdi-disabled",
        "save-cache-debug",
        "help",
        "h",
        "version",
        "v",
    )
)


def setting(value, source):
    return {"value": value, "source": source}


# ---------------------------------------------------------------- the command line


def parse_flags(argv):
    """[(name, value, token)] of buildkitd's flags in ``argv`` (argv[0] is the binary).

    Go's flag syntax, as urfave/cli uses it: ``-name``/``--name``, ``=value`` or the next word
    as value (not for boolean flags); parsing stops at ``--`` or the first non-flag word.
    """
    found = []
    i = 1
    while i < len(argv):
        token = argv[i]
        if token == "--" or not token.startswith("-") or token == "-":
            break
        name = token.lstrip("-")
        if "=" in name:
            name, value = name.split("=", 1)
            found.append((name, value, token))
        elif name in BOOL_FLAGS:
            found.append((name, "true", token))
        elif i + 1 < len(argv):
            found.append((name, argv[i + 1], token + " " + argv[i + 1]))
            i += 1
        else:
            found.append((name, "", token))
        i += 1
    return found


def flag_values(argv, flag):
    """[(value, token)] of every occurrence of ``flag`` (no dashes)."""
    return [(value, token) for name, value, token in parse_flags(argv) if name == flag]


# ---------------------------------------------------------------- systemd


def parse_show(text):
    """``systemctl show`` output as {property: value} (a repeated property keeps its last value)."""
    props = {}
    for line in text.splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            props[key] = value
    return props


def exec_start_text(value):
    """The argv text of the (last) command in a ``systemctl show`` ExecStart value:
    ``{ path=/usr/local/bin/buildkitd ; argv[]=/usr/local/bin/buildkitd --addr fd:// ; ignore_errors=no ; … }``.
    systemd (252) joins argv with spaces and no quoting."""
    commands = re.findall(r"argv\[\]=(.*?) ; (?:ignore_errors|start_time|flags)=", value)
    return commands[-1] if commands else ""


def split_words(text):
    try:
        return shlex.split(text)
    except ValueError:  # an unbalanced quote in a value: words are still better than nothing
        return text.split()


def exec_start_argv(value, unit_line=""):
    """The argv of the service's command. ``systemctl show`` loses the quoting of words with spaces;
    the unit file's own line (``unit_line``, from exec_start_location) keeps it, so it is used when it
    is the same command (no specifiers or variables to expand)."""
    text = exec_start_text(value)
    if unit_line and "=" in unit_line:
        written = split_words(unit_line.split("=", 1)[1].strip().lstrip("-@:+!"))
        if written and " ".join(written) == text:
            return written
    return split_words(text)


def unit_lines(text):
    """[(line number, logical line)] of a unit file, continuation lines joined."""
    lines = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        lines.append((start, pending + line))
        pending = ""
    if pending:
        lines.append((start, pending))
    return lines


def exec_start_location(files):
    """Where the effective ExecStart is written: (path, line number, line) of the last non-empty
    ``ExecStart=`` after the last empty one, over ``files`` [(path, text)] in systemd's order
    (fragment, then drop-ins). ("", 0, "") when none is found."""
    found = ("", 0, "")
    for path, text in files:
        section = ""
        for number, line in unit_lines(text):
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            if section != "Service" or not re.match(r"ExecStart\s*=", line):
                continue
            # An empty `ExecStart=` resets the list: an earlier command no longer counts.
            found = (path, number, line) if line.split("=", 1)[1].strip() else ("", 0, "")
    return found


def listen_paths(value):
    """Socket paths of a ``systemctl show -p Listen`` value: ``/run/buildkit/buildkitd.sock (Stream)``."""
    return [m.group(1) for m in re.finditer(r"(/\S+) \(Stream\)", value)]


# ---------------------------------------------------------------- TOML


def _toml_key_path(text):
    """Dotted key or table header words, quotes removed: a."b.c".d -> ("a", "b.c", "d")."""
    parts = re.findall(r'\s*(?:"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([A-Za-z0-9_-]+))\s*(?:\.|$)', text)
    return tuple(a or b or c for a, b, c in parts)


def _toml_value(text):
    """A single-line TOML value the settings use: strings, arrays of strings, booleans, numbers."""
    text = text.strip()
    if text.startswith("["):
        return [_toml_value(item) for item in re.findall(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', text)]
    if text.startswith('"'):
        match = re.match(r'"((?:[^"\\]|\\.)*)"', text)
        return match.group(1).replace('\\"', '"').replace("\\\\", "\\") if match else text
    if text.startswith("'"):
        match = re.match(r"'([^']*)'", text)
        return match.group(1) if match else text
    word = re.split(r"\s+#", text)[0].strip()
    if word in ("true", "false"):
        return word == "true"
    try:
        return int(word)
    except ValueError:
        return word


def scan_toml(text):
    """{(table path, key): (value, line number, line)} for each key = value line of a TOML file.

    A line reader, not a full TOML parser: it finds where keys are written (for evidence), and
    gives the values on Pythons without tomllib. Tables of arrays ([[…]]) count as their table.
    """
    found = {}
    table = ()
    open_value = None  # (key path, start line, text so far) of a multi-line array
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if open_value:
            path, start, first, so_far = open_value  # pylint: disable=unpacking-non-sequence  # a tuple here
            so_far += " " + line
            if so_far.count("[") <= so_far.count("]"):
                found[path] = (_toml_value(so_far), start, first)
                open_value = None
            else:
                open_value = (path, start, first, so_far)
            continue
        if not line or line.startswith("#"):
            continue
        header = re.match(r"^\[\[?\s*(.+?)\s*\]\]?\s*(#.*)?$", line)
        if header:
            table = _toml_key_path(header.group(1))
            continue
        pair = re.match(r'^((?:"(?:[^"\\]|\\.)*"|\'[^\']*\'|[A-Za-z0-9_.\s-])+?)\s*=\s*(.*)$', line)
        if not pair:
            continue
        key = _toml_key_path(pair.group(1))
        if not key:
            continue
        path = (table + key[:-1], key[-1])
        value = pair.group(2)
        if value.startswith("[") and value.count("[") > value.count("]"):
            open_value = (path, number, line, value)
            continue
        found[path] = (_toml_value(value), number, line)
    return found


def parse_toml(text):
    """(values {(table, key): value}, error): tomllib where the Python has it, else the line reader.

    ``error`` is "" when the file parses; buildkitd refuses to start on a file tomllib refuses.
    """
    scanned = scan_toml(text)
    if tomllib is None:
        return {path: value for path, (value, _n, _l) in scanned.items()}, ""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return {}, str(exc)
    values = {}
    for _name, (table, key) in TOML_KEYS.items():
        node = doc
        for part in table:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict) and key in node:
            values[(table, key)] = node[key]
    return values, ""


# ---------------------------------------------------------------- the effective settings


def argv_source(origin, token):
    """Source text of a flag. ``origin`` is ("cmdline", "/proc/812/cmdline"[, unit line]) or
    ("systemctl", "buildkit.service"[, unit line]); the unit line ("FILE:LINE") says where ExecStart is written."""
    kind, where = origin[0], origin[1]
    written = origin[2] if len(origin) > 2 and origin[2] else ""
    if kind == "cmdline":
        return "cmdline: %s (%s%s)" % (token, where, "; ExecStart at " + written if written else "")
    return "systemctl show %s: ExecStart … %s%s" % (where, token, " (" + written + ")" if written else "")


def config_setting(argv, origin):
    """The --config file buildkitd reads: the flag's value, else the default path."""
    given = flag_values(argv, FLAGS["config"])
    if given:
        value, token = given[-1]
        return setting(value, argv_source(origin, token))
    return setting(DEFAULT_CONFIG, "default (no --config flag)")


def effective(argv, origin, config_path, toml_text):
    """{setting name: setting} for root, addr, snapshotter, runtime, plus ``toml_error``.

    ``argv``: buildkitd's command line ([] when nothing shows one); ``origin`` names where argv was read
    (see ``argv_source``); ``toml_text``: the config file's text, None when it does not exist.
    """
    values, error = parse_toml(toml_text) if toml_text else ({}, "")
    lines = scan_toml(toml_text) if toml_text else {}
    result = {"toml_error": error}
    for name in ("root", "addr", "snapshotter", "runtime"):
        given = flag_values(argv, FLAGS[name])
        if given:
            if name in REPEATED:
                result[name] = setting(
                    [value for value, _t in given], "; ".join(argv_source(origin, t) for _v, t in given)
                )
            else:
                value, token = given[-1]
                result[name] = setting(value, argv_source(origin, token))
            continue
        path = TOML_KEYS[name]
        if path in values and values[path] not in ("", []):
            value = values[path]
            if name in REPEATED and not isinstance(value, list):
                value = [value]
            where = lines.get(path)
            source = "%s:%d: %s" % (config_path, where[1], where[2]) if where else "%s: %s" % (config_path, path[1])
            result[name] = setting(value, source)
            continue
        key = ".".join(path[0] + (path[1],))
        in_toml = ", no %s in %s" % (key, config_path) if toml_text is not None else ""
        result[name] = setting(DEFAULTS[name], "default (no --%s flag%s)" % (FLAGS[name], in_toml))
    return result


def unix_socket(addresses, socket_paths=()):
    """(unix socket path, how it was found) buildctl can reach, from --addr values; fd:// uses the
    systemd socket unit's listen paths. ("", why not) when none is usable."""
    reasons = []
    for addr in addresses:
        if addr.startswith("unix://"):
            return addr[len("unix://") :], addr
        if addr.startswith("fd://"):
            if socket_paths:
                return socket_paths[0], "%s (socket unit ListenStream %s)" % (addr, socket_paths[0])
            reasons.append("%s without a socket unit listening on a path" % addr)
        else:
            reasons.append(addr)
    return "", "no unix socket among the addresses: %s" % (", ".join(reasons) or "none")
