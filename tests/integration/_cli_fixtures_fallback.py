"""TEMPORARY fixtures for running test_cli.py against a real dockerd before dockyardd is ready.

Enabled only when DOCKYARD_CLI_TEST_HOST is set (e.g. unix:///run/cli-dockerd.sock); otherwise
test_cli.py uses the shared fixtures from tests/conftest.py. Delete once dockyardd passes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

BIN = Path(sys.executable).parent


@dataclass
class _Daemon:
    host: str


def _runner(argv0: list[str], host: str):  # type: ignore[no-untyped-def]
    def run(*args: str, input: str | None = None, check: bool = True, timeout: float = 60):
        env = {**os.environ, "DOCKER_HOST": host}
        res = subprocess.run(
            [*argv0, *args], input=input, capture_output=True, text=True, timeout=timeout, env=env
        )
        if check and res.returncode != 0:
            raise AssertionError(f"{argv0} {args} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res

    return run


@pytest.fixture(scope="session")
def daemon() -> _Daemon:
    return _Daemon(os.environ["DOCKYARD_CLI_TEST_HOST"])


@pytest.fixture(scope="session")
def busybox(daemon: _Daemon) -> str:
    return "busybox:latest"


@pytest.fixture(scope="session")
def dockyard_cli(daemon: _Daemon):  # type: ignore[no-untyped-def]
    return _runner([str(BIN / "dockyard"), "-H", daemon.host], daemon.host)


@pytest.fixture(scope="session")
def docker_cli(daemon: _Daemon):  # type: ignore[no-untyped-def]
    return _runner(["docker"], daemon.host)


@pytest.fixture(scope="session")
def docker_py(daemon: _Daemon) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=daemon.host, version="auto", timeout=60)
    yield client
    client.close()


FIXTURES = {
    "daemon": daemon,
    "busybox": busybox,
    "dockyard_cli": dockyard_cli,
    "docker_cli": docker_cli,
    "docker_py": docker_py,
}
