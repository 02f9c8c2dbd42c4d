"""Time bkprov against a plain shell baseline doing the same steps by hand, all in one run.

    python benchmarks/provision.py [--version v0.10.6] [--runs 5] [--vm] [--fleet 4]
                                   [--matrix v0.4.0,v0.10.6,v0.12.5,v0.16.0] [--json FILE]

Needs the real artifacts in the bkprov cache and a Docker engine. Every row is the median of
``--runs`` runs made in this one invocation (the shell baseline too, interleaved with bkprov's
runs so both see the same machine load):

- fresh container to a verified build: ``bkprov provision`` on a name that does not exist yet;
- the idempotent re-run of the same command (it must report changed=0), with its proof build: the
  target is as the first run left it, so bkprov re-runs only the recorded proof build (``ran: proof``);
- the same re-run with ``--full``: the whole playbook (what a host bkprov has no record of gets);
- the shell baseline: docker run + copy + extract + a unit + systemctl start + one build;
- the Ansible floor: those same steps as ONE ``raw`` task through bkprov's runner (ansible-runner, the
  inventory served while the container is made): what any provision through ansible-playbook costs here;
- with ``--vm``: a fresh VM under software emulation (``--accel tcg``), boot included, with its
  parts (boot to SSH, the playbook) from bkprov's own timings, and the VM's idempotent re-run;
  and the floor under emulation: the shell baseline's steps over SSH on a fresh VM bkprov booted;
- with ``--fleet N``: N fresh containers provisioned in one run (``--inventory``), against one;
- with ``--matrix``: ``bkprov matrix`` over those versions with ``--jobs 2`` (once: it is long),
  extrapolated linearly to the 27 versions of the reference table.

Prints a Markdown table (the README's) headed by the command that produced it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from bkprov import artifacts, catalog
from bkprov.paths import cache_dir
from bkprov.targets import container as ct
from bkprov.targets import container_image as images

REFERENCE_VERSIONS = 27  # the versions of reference/buildkit-versions.md's table (issue 12's matrix target)
UNIT = """[Unit]
Description=BuildKit (baseline)
[Service]
ExecStart=/usr/local/bin/buildkitd --addr unix:///run/buildkit/buildkitd.sock
[Install]
WantedBy=multi-user.target
"""
BUILD = (
    "d=$(mktemp -d) && cp /usr/local/bin/buildctl $d/x"
    ' && printf \'FROM scratch\\nCOPY x /x\\nRUN ["/x", "--version"]\\n\' > $d/Dockerfile'
    " && buildctl build --progress=plain --frontend dockerfile.v0 --local context=$d --local dockerfile=$d"
)


def bkprov(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bkprov.cli", *args, "--json"], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(
            f"bkprov {' '.join(args)} failed (exit {out.returncode}):\n{out.stdout[-2000:]}{out.stderr[-2000:]}"
        )
    return json.loads(out.stdout)


CPU: dict[str, list[float]] = {}  # controller CPU seconds (bkprov, ansible-playbook and its workers) per row


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(fn: Callable[[], object], row: str = "") -> float:
    """Wall seconds of fn; with ``row``, also the CPU its child processes used (less load-dependent)."""
    started, cpu = time.monotonic(), children_cpu()
    fn()
    if row:
        CPU.setdefault(row, []).append(children_cpu() - cpu)
    return time.monotonic() - started


def destroy(name: str) -> None:
    subprocess.run([sys.executable, "-m", "bkprov.cli", "destroy", name], capture_output=True, check=False)


def bkprov_fresh(version: str) -> tuple[float, float, float]:
    """A fresh provision, the re-run (the host is as that run left it: the proof build only), and the
    same re-run through the whole playbook (--full)."""
    name = f"bench-{uuid.uuid4().hex[:6]}"
    try:
        fresh = timed(lambda: bkprov("provision", version, "--name", name), "fresh")
        summary: dict = {}
        rerun = timed(lambda: summary.update(bkprov("provision", version, "--name", name)), "rerun")
        if summary.get("changed") != 0 or not summary.get("build_output") or summary.get("ran") != "proof":
            raise RuntimeError(f"the re-run was not idempotent, did not build or ran the playbook: {summary}")
        full = timed(lambda: summary.update(bkprov("provision", version, "--name", name, "--full")), "rerun_full")
        if summary.get("changed") != 0 or summary.get("ran") != "playbook":
            raise RuntimeError(f"the --full re-run was not idempotent or did not run the playbook: {summary}")
        return fresh, rerun, full
    finally:
        destroy(name)


# The baseline's steps in the container, once its tarball was copied to /root/bk.tar.gz.
SHELL_STEPS = (
    f"tar -C /usr/local -xzf /root/bk.tar.gz && mkdir -p /run/buildkit && cat > /etc/systemd/system/"
    f"buildkit.service <<'EOF'\n{UNIT}EOF\nsystemctl daemon-reload && systemctl start buildkit && "
    f"for i in $(seq 100); do buildctl debug workers >/dev/null 2>&1 && break; sleep 0.2; done && {BUILD}"
)


def baseline(version: str, image: str) -> float:
    """The same outcome by hand: container, copy, extract, unit, start, build."""
    cli = ct.client()
    tarball = cache_dir() / artifacts.needed(version, with_runc=False)[0].relpath
    name = f"bench-base-{uuid.uuid4().hex[:6]}"

    def steps() -> None:
        ct.create(cli, name, image, version, lambda _m: None)
        subprocess.run(["docker", "cp", str(tarball), f"{name}:/root/bk.tar.gz"], check=True)
        subprocess.run(["docker", "exec", name, "bash", "-c", SHELL_STEPS], check=True, capture_output=True)

    try:
        return timed(steps)
    finally:
        ct.destroy(cli, name)


def ansible_floor(version: str, image: str) -> float:
    """The least a provision through ansible-playbook costs here: bkprov's own runner (run_playbook, the
    inventory served while the container is made and the tarball copied) running the shell baseline's steps
    as ONE raw task. What bkprov adds above this row is its structure: the roles' tasks."""
    from bkprov.runner import PendingInventory, run_playbook

    cli = ct.client()
    tarball = cache_dir() / artifacts.needed(version, with_runc=False)[0].relpath
    name = f"bench-floor-{uuid.uuid4().hex[:6]}"
    task = {"name": "The shell baseline's steps", "ansible.builtin.raw": f"bash -c {shlex.quote(SHELL_STEPS)}"}
    play = [{"name": "Floor", "hosts": "all", "gather_facts": False, "tasks": [task]}]

    def make(pending: PendingInventory) -> None:
        try:
            ct.create(cli, name, image, version, lambda _m: None)
            subprocess.run(["docker", "cp", str(tarball), f"{name}:/root/bk.tar.gz"], check=True)
            pending.give(ct.inventory(name))
        finally:
            pending.give(None)

    def steps() -> None:
        pending = PendingInventory()
        with tempfile.TemporaryDirectory(prefix="bkprov-bench-floor-") as tmp:
            playbook = Path(tmp, "floor.yml")
            playbook.write_text(json.dumps(play))
            maker = threading.Thread(target=make, args=(pending,))
            maker.start()
            result = run_playbook(str(playbook), pending, {})
            maker.join()
            if result.rc != 0:
                raise RuntimeError(f"the Ansible floor play failed (rc {result.rc}): {result.output_tail[-10:]}")

    try:
        return timed(steps)
    finally:
        ct.destroy(cli, name)


def vm_baseline(version: str) -> dict[str, float]:
    """The floor under emulation: a fresh VM (bkprov's boot), then the shell baseline's steps over its SSH."""
    from bkprov.targets import vm

    tarball = cache_dir() / artifacts.needed(version, with_runc=False)[0].relpath
    name = f"bench-vm-base-{uuid.uuid4().hex[:6]}"
    parts: dict[str, float] = {}

    def steps() -> None:
        parts["vm_base_boot"] = timed(lambda: vm.create(name, version, lambda _m: None, accel="tcg"))
        machine = vm.get(name)
        assert machine is not None
        script = (
            f"tar -C /usr/local -xz && mkdir -p /run/buildkit && cat > /etc/systemd/system/"
            f"buildkit.service <<'EOF'\n{UNIT}EOF\nsystemctl daemon-reload && systemctl start buildkit && "
            f"for i in $(seq 300); do buildctl debug workers >/dev/null 2>&1 && break; sleep 0.2; done && {BUILD}"
        )
        with tarball.open("rb") as stdin:
            done = machine.ssh(["bash", "-c", script], stdin=stdin, capture_output=True, text=True)
        output = done.stdout + done.stderr  # buildctl's progress, the RUN step's output with it, is on stderr
        if done.returncode != 0 or "buildctl github.com/moby/buildkit" not in output:
            raise RuntimeError(f"the VM shell baseline failed (exit {done.returncode}): {output[-2000:]}")

    try:
        return {"vm_base": timed(steps), **parts}
    finally:
        destroy(name)


def vm_fresh(version: str) -> dict[str, float]:
    """A fresh VM under TCG to a verified build; its boot and playbook parts; then its idempotent re-run."""
    name = f"bench-vm-{uuid.uuid4().hex[:6]}"
    argv = ["provision", version, "--target", "vm", "--accel", "tcg", "--name", name]
    summary: dict = {}
    try:
        fresh = timed(lambda: summary.update(bkprov(*argv)), "vm")
        if not summary.get("build_output"):
            raise RuntimeError(f"the fresh VM did not build: {summary}")
        parts = summary["seconds"]
        summary.clear()
        rerun = timed(lambda: summary.update(bkprov(*argv)), "vm_rerun")
        if summary.get("changed") != 0 or not summary.get("build_output"):
            raise RuntimeError(f"the VM re-run was not idempotent or did not build: {summary}")
        # ansible-playbook starts while the VM boots: what follows the boot is the playbook's part.
        return {"vm": fresh, "vm_boot": parts["target"], "vm_play": fresh - parts["target"], "vm_rerun": rerun}
    finally:
        destroy(name)


def fleet(version: str, hosts: int) -> tuple[float, float]:
    """Seconds to provision ``hosts`` fresh containers in one run, and one fresh container the same way."""

    def run(count: int) -> float:
        names = [f"bench-fleet-{uuid.uuid4().hex[:6]}" for _ in range(count)]
        try:
            for name in names:
                subprocess.run([sys.executable, "-m", "bkprov.cli", "create", name], capture_output=True, check=True)
            with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as inventory:
                inventory.write("all:\n  hosts:\n")
                for name in names:
                    inventory.write(
                        f"    {name}:\n      ansible_connection: community.docker.docker\n"
                        "      ansible_python_interpreter: /usr/bin/python3\n"
                    )
            return timed(lambda: bkprov("provision", version, "--inventory", inventory.name))
        finally:
            for name in names:
                destroy(name)

    return run(hosts), run(1)


def matrix(versions: list[str], jobs: int, report: str) -> float:
    argv = [sys.executable, "-m", "bkprov.cli", "matrix", *versions, "--jobs", str(jobs), "--report", report]
    return timed(lambda: subprocess.run(argv, capture_output=True, check=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", default="v0.10.6")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--vm", action="store_true", help="also a fresh VM under software emulation")
    parser.add_argument("--fleet", type=int, default=0, help="also N hosts in one run against one host")
    parser.add_argument("--matrix", default="", help="comma-separated versions for bkprov matrix --jobs 2")
    parser.add_argument("--json", default="", help="also write every measurement to this file")
    args = parser.parse_args()
    version = catalog.get(args.version).version
    image = images.ensure_image(ct.client(), print)
    raw: dict[str, list[float]] = {
        "fresh": [],
        "rerun": [],
        "rerun_full": [],
        "baseline": [],
        "floor": [],
        "vm": [],
        "vm_boot": [],
        "vm_play": [],
        "vm_rerun": [],
        "vm_base": [],
        "vm_base_boot": [],
        "fleet": [],
        "single": [],
    }
    for run in range(args.runs):
        fresh, rerun, full = bkprov_fresh(version)
        raw["fresh"].append(fresh)
        raw["rerun"].append(rerun)
        raw["rerun_full"].append(full)
        raw["baseline"].append(baseline(version, image))
        raw["floor"].append(ansible_floor(version, image))
        if args.vm:
            for key, seconds in {**vm_fresh(version), **vm_baseline(version)}.items():
                raw[key].append(seconds)
        if args.fleet:
            many, one = fleet(version, args.fleet)
            raw["fleet"].append(many)
            raw["single"].append(one)
        print(
            f"run {run + 1}/{args.runs}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in raw.items() if v),
            file=sys.stderr,
        )

    med = {key: statistics.median(values) for key, values in raw.items() if values}
    command = shlex.join(["python", "benchmarks/provision.py", *sys.argv[1:]])
    print(f"\n`{command}` ({version}, medians of {args.runs})")
    # Wall time follows the machine's load; the CPU the controller spent much less so.
    cpu = ", ".join(f"{row} {statistics.median(values):.1f}" for row, values in CPU.items())
    print(
        f"15-min load average at the end: {os.getloadavg()[2]:.1f} on {os.cpu_count()} CPUs; controller CPU s: {cpu}\n"
    )
    print("| what | seconds | target |\n|---|---|---|")
    ratio = med["fresh"] / med["baseline"]
    print(f"| shell baseline: docker run + copy + extract + unit + start + build | {med['baseline']:.1f} | |")
    floor = "the baseline's steps as one `raw` task through bkprov's runner (ansible-runner, served inventory)"
    print(f"| Ansible floor: {floor} | {med['floor']:.1f} ({med['floor'] / med['baseline']:.2f}x baseline) | |")
    fresh = f"{med['fresh']:.1f} ({ratio:.2f}x baseline)"
    print(f"| `bkprov provision`, fresh container to verified build | {fresh} | ≤ 1.5x |")
    print(f"| `bkprov provision` again, idempotent (changed=0), with its proof build | {med['rerun']:.1f} | ≤ 3 |")
    print(f"| the same re-run through the whole playbook (`--full`) | {med['rerun_full']:.1f} | |")
    if args.vm:
        what = "`bkprov provision --target vm --accel tcg`, fresh VM to verified build, boot included"
        floor = "shell baseline on a fresh VM (bkprov's boot, then copy + extract + unit + start + build over SSH)"
        print(f"| {floor} | {med['vm_base']:.1f} (boot {med['vm_base_boot']:.1f}) | |")
        print(f"| {what} | {med['vm']:.1f} ({med['vm'] / med['vm_base']:.2f}x its baseline) | ≤ 60 |")
        print(f"| … of which QEMU start to SSH answering (bkprov's `target` time) | {med['vm_boot']:.1f} | |")
        after = "… of which the rest, once SSH answered (the playbook and its verify build; Ansible started at boot)"
        print(f"| {after} | {med['vm_play']:.1f} | |")
        again = "`bkprov provision` again on that VM, idempotent (changed=0), with its proof build"
        print(f"| {again} | {med['vm_rerun']:.1f} | |")
    if args.fleet:
        scale = med["fleet"] / med["single"]
        print(
            f"| `bkprov provision --inventory` with {args.fleet} fresh containers (one: {med['single']:.1f}) "
            f"| {med['fleet']:.1f} ({scale:.2f}x one) | ≤ 1.5x |"
        )
    if args.matrix:
        versions = [catalog.get(v).version for v in args.matrix.split(",")]
        seconds = matrix(versions, 2, tempfile.mkdtemp(prefix="bkprov-bench-matrix-"))
        raw["matrix"] = [seconds]
        whole = seconds / len(versions) * REFERENCE_VERSIONS
        print(
            f"| `bkprov matrix {' '.join(versions)} --jobs 2` (once) | {seconds:.1f} "
            f"(≈ {whole / 60:.1f} min for {REFERENCE_VERSIONS} versions) | ≤ 8 min for {REFERENCE_VERSIONS} |"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"version": version, "runs": args.runs, "seconds": raw, "controller_cpu": CPU}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
