"""Shared fixtures: the real Docker engine, bkprov's base image, targets, real artifacts.

Docker-backed tests skip (with the reason) when no engine is reachable, except in CI,
where .ci/run starts dockerd and a missing engine is a failure. Tests that need real
BuildKit binaries take them from the bkprov cache (BKPROV_CACHE, default ~/.cache/bkprov)
and skip loudly when absent.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support
# ansible_collections.bkprov.buildkit, as plugins loaded by file path import their module_utils
sys.path.insert(0, str(ROOT / "playbooks" / "collections"))

from bkprov.paths import cache_dir  # noqa: E402

IN_CI = os.environ.get("CI") == "true"


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"bkprov cache (real artifacts): {cache_dir()}"]


@pytest.fixture(scope="session")
def docker_client():
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        if IN_CI:
            pytest.fail(f"CI must have a Docker engine (.ci/run starts dockerd): {exc}")
        pytest.skip(f"no Docker engine reachable: {exc}")
    return client


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    from bkprov.targets import container_image

    return container_image.ensure_image(docker_client, lambda m: print(f"[base image] {m}"))


@pytest.fixture
def make_target(docker_client, base_image) -> Iterator[Callable[..., str]]:
    """Create systemd containers through bkprov's container target; destroyed afterwards."""
    from bkprov.targets import container as ct

    made: list[str] = []

    def make(version: str = "v0.10.6", network: str = "none", name: str | None = None) -> str:
        name = name or f"bkprov-test-{uuid.uuid4().hex[:8]}"
        made.append(name)
        ct.create(docker_client, name, base_image, version, print, network=network)
        return name

    yield make
    for name in made:
        ct.destroy(docker_client, name)


@pytest.fixture
def registry_tools() -> None:
    """Debian's docker-registry and busybox-static, needed for a local registry with a COPY helper."""
    from tests.support.registry import registry_available

    why = registry_available()
    if why:
        if IN_CI:
            pytest.fail(f"CI must provide a local registry: {why}")
        pytest.skip(why)


@pytest.fixture
def registry(docker_client, registry_tools):
    """A real registry (Debian's docker-registry) on 127.0.0.1 with the COPY helper image."""
    from tests.support.registry import Registry

    reg = Registry().start()
    try:
        reg.seed_copy_helper(docker_client)
        yield reg
    finally:
        reg.stop()
