"""Engine API conformance: the corners that real clients reach, driven by the docker CLI,
docker-py and dockyard, and compared with Debian's real dockerd where Docker's behaviour is
the question (issue 12)."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.conftest import Daemon, RealDocker, Runner

NOT_A_MANAGER = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node '
    "to swarm and try again."
)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


def raw(sock: str | Path, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    conn = _UnixConnection(str(sock))
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        try:
            return resp.status, json.loads(data)
        except ValueError:
            return resp.status, data
    finally:
        conn.close()


# -- 1. every route: swarm-mode and plugin paths answered as dockerd answers ----------------


def test_swarm_leave_is_503_not_part_of_a_swarm(docker_cli: Runner, docker_py: docker.DockerClient) -> None:
    res = docker_cli("swarm", "leave", "--force", check=False)
    assert res.returncode != 0
    assert "This node is not part of a swarm" in res.stderr
    # docker-py's clean-up path: a forced leave is done when the daemon answers 503 (a 404 raised)
    assert docker_py.swarm.leave(force=True) is True
    with pytest.raises(docker.errors.APIError) as err:
        docker_py.api.leave_swarm()
    assert err.value.status_code == 503
    assert err.value.explanation == "This node is not part of a swarm"


def test_swarm_objects_are_503_not_a_manager(docker_cli: Runner, docker_py: docker.DockerClient) -> None:
    for args in (("node", "ls"), ("service", "ls"), ("secret", "ls"), ("config", "ls")):
        res = docker_cli(*args, check=False)
        assert res.returncode != 0, args
        assert "This node is not a swarm manager" in res.stderr, (args, res.stderr)
    for call in (docker_py.nodes.list, docker_py.services.list, docker_py.secrets.list, docker_py.configs.list,
                 docker_py.swarm.reload):  # fmt: skip
        with pytest.raises(docker.errors.APIError) as err:
            call()
        assert err.value.status_code == 503
        assert err.value.explanation == NOT_A_MANAGER


def test_plugins_are_an_empty_set(docker_cli: Runner, docker_py: docker.DockerClient) -> None:
    assert docker_cli("plugin", "ls", "-q").stdout.strip() == ""
    assert docker_py.plugins.list() == []
    with pytest.raises(docker.errors.NotFound) as err:
        docker_py.plugins.get("nosuch")
    assert err.value.explanation == 'plugin "nosuch" not found'
    res = docker_cli("plugin", "rm", "nosuch", check=False)
    assert res.returncode != 0 and 'plugin "nosuch" not found' in res.stderr


# The requests compared with dockerd: (method, path, body). Its API is 1.41, so no 1.42+ path.
_COMPARED = [
    ("GET", "/swarm", None),
    ("POST", "/swarm/leave?force=1", None),
    ("POST", "/swarm/update?version=1", b"{}"),
    ("GET", "/swarm/unlockkey", None),
    ("POST", "/swarm/unlock", b'{"UnlockKey":"x"}'),
    ("GET", "/nodes", None),
    ("GET", "/nodes/x", None),
    ("DELETE", "/nodes/x", None),
    ("GET", "/services", None),
    ("POST", "/services/create", b"{}"),
    ("GET", "/services/x/logs?stdout=1", None),
    ("GET", "/tasks", None),
    ("GET", "/tasks/x", None),
    ("GET", "/secrets", None),
    ("DELETE", "/secrets/x", None),
    ("GET", "/configs", None),
    ("POST", "/configs/x/update?version=1", b"{}"),
    ("GET", "/plugins", None),
    ("GET", "/plugins/foo/json", None),
    ("DELETE", "/plugins/foo", None),
    ("POST", "/plugins/foo/disable", None),
    ("POST", "/plugins/foo/set", b"[]"),
    ("POST", "/plugins/foo/upgrade?remote=localhost:1/foo", b"[]"),
    ("POST", "/session", None),
    ("GET", "/v1.41/swarm", None),
]


def test_unavailable_features_answer_as_dockerd(daemon: Daemon, real_docker: RealDocker) -> None:
    for method, path, body in _COMPARED:
        ours = raw(daemon.socket, method, path, body)
        theirs = raw(real_docker.socket, method, path, body)
        assert ours == theirs, (method, path)
