# Copyright: bkprov developers
# Apache-2.0
"""Run stdlib-only module_utils code on a host as one piped ``python3 -c`` command, without AnsiballZ.

An AnsiballZ module costs about a second per task on a container (zip, base64, unpacking and importing
ansible's module_utils on the host) and tens of seconds on an emulated VM. The bkprov actions (converge,
host_facts) instead send their module_utils sources, the entry point and the JSON parameters on the
stdin of ONE connection command, ``<interpreter> -c BOOTSTRAP``; become wraps that command as it wraps
any other (``_low_level_execute_command``). Their modules stay for connections without pipelining.

stdin, in order::

    <n>\\n<LOADER>          read and run by BOOTSTRAP
    <n>\\n<header JSON>     {"modules": [[name, size], ...], "entry": [module, function], "call": ...}
    <sources>              the modules' sources, sizes as in the header
    <n>\\n<params JSON>     read by the loader (call "params") or by the entry itself (call "main")
    [tail]                 anything after, read by the entry (converge's artifact)

The loader registers the sources under their real names (``ansible_collections.<ns>.<name>.plugins.
module_utils.X``, with empty parent packages) so their ``from ansible_collections... import`` lines work
unchanged, imports the entry's module and calls it: with the parameters, printing the returned dict as
one JSON line ("params"), or without arguments for an entry that reads the parameters and the tail from
stdin and prints its own JSON line ("main", converge's ``main()``). Which sources go is read from the
entry module's imports of sibling module_utils, transitively; one that imports anything beyond Python's
standard library (``ansible``, ``yaml``) would fail on the host, so the controller refuses to send it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from ansible import constants as C
from ansible.module_utils.common.text.converters import to_text

# The loader arrives on stdin, so the command line stays short whatever become wraps around it.
BOOTSTRAP = "import sys;b=sys.stdin.buffer;exec(compile(b.read(int(b.readline())),'bkprov-piped','exec'))"
AUTO_INTERPRETERS = ("", "auto", "auto_legacy", "auto_silent", "auto_legacy_silent")
MODULE_UTILS = Path(__file__).resolve().parents[1] / "module_utils"
# This collection's module_utils package (ansible_collections.<namespace>.<name>.plugins.module_utils).
PACKAGE = __name__.rsplit(".", 2)[0] + ".module_utils"

# Runs on the host (Python 3.6+, stdlib only), in __main__ of ``python3 -c BOOTSTRAP``.
LOADER = r'''
import importlib, importlib.abc, importlib.util, json, sys, traceback

STDIN = sys.stdin.buffer


def chunk():
    return STDIN.read(int(STDIN.readline()))


HEADER = json.loads(chunk().decode("utf-8"))
SOURCES = dict((name, STDIN.read(size)) for name, size in HEADER["modules"])
PACKAGES = set(name.rsplit(".", i)[0] for name in SOURCES for i in range(1, name.count(".") + 1))


class Sources(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """The sources above, under their real names; their parent packages empty."""

    def find_spec(self, name, path=None, target=None):
        if name in SOURCES or name in PACKAGES:
            origin = name.replace(".", "/") + ".py"
            return importlib.util.spec_from_loader(name, self, origin=origin, is_package=name in PACKAGES)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if module.__name__ in SOURCES:
            code = compile(SOURCES[module.__name__], module.__spec__.origin, "exec", dont_inherit=True)
            exec(code, module.__dict__)


sys.meta_path.insert(0, Sources())
try:
    ENTRY = getattr(importlib.import_module(HEADER["entry"][0]), HEADER["entry"][1])
    if HEADER["call"] == "params":
        sys.stdout.write(json.dumps(ENTRY(json.loads(chunk().decode("utf-8")))) + "\n")
    else:
        ENTRY()
except Exception as exc:
    sys.stdout.write(
        json.dumps(
            {
                "failed": True,
                "msg": "%s failed on the host: %s: %s" % (HEADER["entry"][0].rsplit(".", 1)[-1], type(exc).__name__, exc),
                "exception": traceback.format_exc(),
            }
        )
        + "\n"
    )
'''

# Imports of this collection's module_utils: ``from PACKAGE import a, b as c``, ``from PACKAGE.x import ...``,
# ``import PACKAGE.x`` and the relative ``from .x import ...``, ``from . import x``.
_FROM_PACKAGE = re.compile(
    r"^[ \t]*from[ \t]+(?:%s|\.)[ \t]+import[ \t]+(\([^)]*\)|[^\n#]*)" % re.escape(PACKAGE), re.M
)
_FROM_MODULE = re.compile(r"^[ \t]*(?:(?:from|import)[ \t]+%s\.|from[ \t]+\.)(\w+)" % re.escape(PACKAGE), re.M)
# Every import statement, to refuse code that needs more than the standard library on the host.
_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import\b|import[ \t]+([\w. \t,]+))", re.M)
HOST_IMPORTABLE = frozenset(sys.stdlib_module_names) | {"__future__"}


class PipedError(Exception):
    """The code cannot be sent: a source is missing or needs more than the standard library."""


def imported_module_utils(source: str) -> list[str]:
    """Names of this collection's module_utils that ``source`` imports (at any depth of the file)."""
    names = _FROM_MODULE.findall(source)
    for group in _FROM_PACKAGE.findall(source):
        for item in group.strip("()").split(","):
            name = item.split(" as ")[0].strip()
            if name:
                names.append(name)
    return names


def foreign_imports(source: str) -> list[str]:
    """Modules ``source`` imports that a bare Python on the host lacks (not stdlib, not this module_utils)."""
    names = []
    for module, listed in _IMPORT.findall(source):
        for name in [module] if module else [item.split(" as ")[0].strip() for item in listed.split(",")]:
            if name.startswith((PACKAGE + ".", ".")) or name == PACKAGE:
                continue
            if name.split(".")[0] not in HOST_IMPORTABLE and name not in names:
                names.append(name)
    return names


def sources(entry_module: str) -> list[tuple[str, bytes]]:
    """(full module name, source) of ``entry_module`` and every module_utils it imports, transitively."""
    found: dict[str, bytes] = {}
    todo = [entry_module]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        path = MODULE_UTILS / (name + ".py")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PipedError("cannot read %s to send it to the host: %s" % (path, exc)) from exc
        text = data.decode("utf-8")
        foreign = foreign_imports(text)
        if foreign:
            raise PipedError(
                "module_utils/%s.py imports %s, beyond Python's standard library: it cannot be piped to a host"
                % (name, ", ".join(foreign))
            )
        found[name] = data
        todo.extend(imported_module_utils(text))
    return [("%s.%s" % (PACKAGE, name), data) for name, data in sorted(found.items())]


def frame(data: bytes) -> bytes:
    return b"%d\n%s" % (len(data), data)


def stdin_for(entry: str, params: dict, call: str = "params", tail: bytes = b"") -> bytes:
    """What the host's ``python3 -c BOOTSTRAP`` reads: loader, header, sources, parameters, tail.

    ``entry`` is ``"module:function"`` in module_utils; ``call`` is "params" (``function(params)`` returns
    the result dict) or "main" (``function()`` reads the framed parameters and the tail itself and prints
    one JSON line).
    """
    if call not in ("params", "main"):
        raise ValueError("call must be 'params' or 'main', not %r" % call)
    module, function = entry.split(":")
    modules = sources(module)
    header = {
        "modules": [[name, len(data)] for name, data in modules],
        "entry": ["%s.%s" % (PACKAGE, module), function],
        "call": call,
    }
    parts = [frame(LOADER.encode("utf-8")), frame(json.dumps(header).encode("utf-8"))]
    parts += [data for _name, data in modules]
    parts += [frame(json.dumps(params).encode("utf-8")), tail]
    return b"".join(parts)


def interpreter(action, task_vars: dict) -> str:
    """The host's Python as Ansible would run a module with: ansible_python_interpreter, else discovery's answer."""
    try:
        configured = C.config.get_config_value("INTERPRETER_PYTHON", variables=task_vars)
        configured = to_text(action._templar.template(configured) or "").strip()
    except Exception:  # an unusual setting: fall back to discovery's answer or python3
        configured = ""
    if configured not in AUTO_INTERPRETERS:
        return configured
    return (task_vars.get("ansible_facts") or {}).get("discovered_interpreter_python") or "python3"


def result_of(res: dict, what: str, python: str = "python3") -> dict:
    """The entry's JSON line from a ``_low_level_execute_command`` result; when there is none, a failed
    result shaped like Ansible's own module failure (``module_stderr``, ``module_stdout``, ``rc``)."""
    stdout, stderr = res.get("stdout") or "", res.get("stderr") or ""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                out = json.loads(line)
            except ValueError:
                break
            if isinstance(out, dict):
                return out
            break
    said = (stderr or stdout).strip()
    hint = ""
    # Silence, or the shell's "python3: not found" (126, 127): the interpreter never ran.
    if not said or (res.get("rc") in (126, 127) and python.rsplit("/", 1)[-1] in said):
        hint = " (is %s on the host? set ansible_python_interpreter)" % python
    return {
        "failed": True,
        "msg": "%s did not report a result (exit %s): %s%s" % (what, res.get("rc"), said[-2000:] or "no output", hint),
        "rc": res.get("rc"),
        "module_stdout": stdout,
        "module_stderr": stderr,
    }


def run(action, task_vars: dict, entry: str, params: dict, call: str = "params", tail: bytes = b"", what: str = ""):
    """Run ``entry`` on the action's host in one connection command; its result dict (``failed`` when none came).

    The command is what a pipelined module's would be: the task's ``environment``, the interpreter, and
    become around it where the task asks for it.
    """
    python = interpreter(action, task_vars)
    try:
        data = stdin_for(entry, params, call, tail)
    except PipedError as exc:
        return {"failed": True, "msg": str(exc)}
    env = action._compute_environment_string().strip()
    command = "%s%s -c %s" % (env + " " if env else "", python, action._connection._shell.quote(BOOTSTRAP))
    res = action._low_level_execute_command(command, in_data=data)
    return result_of(res, what or entry, python)
