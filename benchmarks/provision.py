"""Time bkprov against a plain shell baseline doing the same steps by hand.

    python benchmarks/provision.py [--version v0.10.6] [--runs 3] [--vm] [--matrix v0.10.6,v0.12.5,v0.21.1,v0.4.0]

Needs the real artifacts in the bkprov cache and a Docker engine. Prints a Markdown table:
fresh container to a verified build, the idempotent re-run, the baseline (docker run + copy +
extract + a unit + systemctl start + one build) and the ratio; with --vm, a fresh VM too; with
--matrix, `bkprov matrix` over those versions with --jobs 1 and --jobs 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid

from bkprov import artifacts, catalog
from bkprov.paths import cache_dir
from bkprov.targets import container as ct
from bkprov.targets import container_image as images

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
        [sys.executable, "-m", "bkprov.cli", *args, "--json"], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def timed(fn) -> float:  # noqa: ANN001
    started = time.monotonic()
    fn()
    return time.monotonic() - started


def bkprov_fresh(version: str) -> tuple[float, float]:
    cli = ct.client()
    name = f"bench-{uuid.uuid4().hex[:6]}"
    try:
        fresh = timed(lambda: bkprov("provision", version, "--name", name))
        rerun_summary: dict = {}
        rerun = timed(lambda: rerun_summary.update(bkprov("provision", version, "--name", name)))
        assert rerun_summary["changed"] == 0, rerun_summary
        return fresh, rerun
    finally:
        ct.destroy(cli, name)


def baseline(version: str, image: str) -> float:
    """The same outcome by hand: container, copy, extract, unit, start, build."""
    cli = ct.client()
    tarball = cache_dir() / artifacts.needed(version, with_runc=False)[0].relpath
    name = f"bench-base-{uuid.uuid4().hex[:6]}"

    def steps() -> None:
        ct.create(cli, name, image, version, lambda _m: None)
        subprocess.run(["docker", "cp", str(tarball), f"{name}:/root/bk.tar.gz"], check=True)
        script = (
            f"tar -C /usr/local -xzf /root/bk.tar.gz && mkdir -p /run/buildkit && cat > /etc/systemd/system/"
            f"buildkit.service <<'EOF'\n{UNIT}EOF\nsystemctl daemon-reload && systemctl start buildkit && "
            f"for i in $(seq 100); do buildctl debug workers >/dev/null 2>&1 && break; sleep 0.2; done && {BUILD}"
        )
        subprocess.run(["docker", "exec", name, "bash", "-c", script], check=True, capture_output=True)

    try:
        return timed(steps)
    finally:
        ct.destroy(cli, name)


def vm_fresh(version: str) -> float:
    name = f"bench-vm-{uuid.uuid4().hex[:6]}"
    try:
        return timed(lambda: bkprov("provision", version, "--target", "vm", "--name", name))
    finally:
        subprocess.run([sys.executable, "-m", "bkprov.cli", "destroy", name], capture_output=True, check=False)


def matrix(versions: list[str], jobs: int, report: str) -> float:
    argv = [sys.executable, "-m", "bkprov.cli", "matrix", *versions, "--jobs", str(jobs), "--report", report]
    return timed(lambda: subprocess.run(argv, capture_output=True, check=True))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--version", default="v0.10.6")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--vm", action="store_true")
    parser.add_argument("--matrix", default="", help="comma-separated versions for bkprov matrix timings")
    args = parser.parse_args()
    version = catalog.get(args.version).version
    image = images.ensure_image(ct.client(), print)
    fresh, rerun, base = [], [], []
    for _ in range(args.runs):
        f, r = bkprov_fresh(version)
        fresh.append(f)
        rerun.append(r)
        base.append(baseline(version, image))
    med = statistics.median
    print(f"\n| {version}, {args.runs} runs, median | seconds |\n|---|---|")
    print(f"| bkprov provision, fresh container to verified build | {med(fresh):.1f} |")
    print(f"| bkprov provision, idempotent re-run (changed=0) | {med(rerun):.1f} |")
    print(f"| shell baseline: docker run + copy + extract + unit + start + build | {med(base):.1f} |")
    print(f"| ratio fresh / baseline | {med(fresh) / med(base):.2f} |")
    if args.vm:
        print(f"| bkprov provision --target vm, fresh VM to verified build | {vm_fresh(version):.1f} |")
    if args.matrix:
        versions = args.matrix.split(",")
        for jobs in (1, 2):
            seconds = matrix(versions, jobs, f"/tmp/bkprov-bench-matrix-{jobs}")
            print(f"| bkprov matrix {' '.join(versions)} --jobs {jobs} | {seconds:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
