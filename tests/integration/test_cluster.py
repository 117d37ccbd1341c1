"""Swarm mode across three "hosts" (network namespaces, each with its own dockyardd), driven
by the docker CLI and docker-py: init/join/leave, tokens, nodes, services and tasks,
failure of a node, of an etcd member, and of quorum."""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

import docker
import pytest

from tests.cluster_hosts import ClusterHost, cluster_hosts  # noqa: F401  (fixture)
from tests.conftest import wait_for

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd-server is not installed")


def _swarm(hosts: list[ClusterHost], managers: int = 1) -> dict[str, str]:
    """init on hosts[0]; hosts[1:managers] join as managers, the rest as workers."""
    lead = hosts[0]
    lead.cli("swarm", "init", "--advertise-addr", lead.address)
    tokens = {r: lead.cli("swarm", "join-token", "-q", r).stdout.strip() for r in ("worker", "manager")}
    for i, h in enumerate(hosts[1:], start=1):
        role = "manager" if i < managers else "worker"
        h.cli("swarm", "join", "--token", tokens[role], "--advertise-addr", h.address, f"{lead.address}:2377")
    return tokens


def _nodes(h: ClusterHost) -> list[dict[str, Any]]:
    out = h.cli("node", "ls", "--format", "{{json .}}").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_init_join_tokens_and_leave(cluster_hosts) -> None:  # type: ignore[no-untyped-def]
    a, b, c = cluster_hosts(3)
    assert a.cli("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip() == "inactive"
    res = a.cli("swarm", "leave", check=False)
    assert res.returncode != 0 and "This node is not part of a swarm" in res.stderr
    out = a.cli("swarm", "init", "--advertise-addr", a.address).stdout
    assert "docker swarm join --token SWMTKN-1-" in out and f"{a.address}:2377" in out
    worker = a.cli("swarm", "join-token", "-q", "worker").stdout.strip()
    # a wrong token (right CA, wrong secret) is refused, and the node stays out
    bad = worker[:-25] + "0" * 25
    res = b.cli("swarm", "join", "--token", bad, f"{a.address}:2377", check=False)
    assert res.returncode != 0 and "A valid join token is necessary" in res.stderr, res.stderr
    assert b.cli("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip() == "inactive"
    b.cli("swarm", "join", "--token", worker, "--advertise-addr", b.address, f"{a.address}:2377")
    assert b.cli("info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}").stdout.split() == [
        "active", "false"]
    # rotation revokes the old token
    a.cli("swarm", "join-token", "--rotate", "worker")
    res = c.cli("swarm", "join", "--token", worker, f"{a.address}:2377", check=False)
    assert res.returncode != 0 and "A valid join token is necessary" in res.stderr
    c.cli("swarm", "join", "--token", a.cli("swarm", "join-token", "-q", "worker").stdout.strip(),
          "--advertise-addr", c.address, f"{a.address}:2377")
    nodes = wait_for(lambda: (n := _nodes(a)) and len(n) == 3 and all(x["Status"] == "Ready" for x in n) and n,
                     what="3 ready nodes")
    assert {n["Hostname"] for n in nodes} == {"node1", "node2", "node3"}
    assert [n["ManagerStatus"] for n in nodes if n["Hostname"] == "node1"] == ["Leader"]
    # a worker cannot see cluster state; the _ping header says what this node is
    res = b.cli("node", "ls", check=False)
    assert res.returncode != 0 and "This node is not a swarm manager" in res.stderr
    api = docker.APIClient(base_url=b.host, version="1.47")
    assert api._get(api._url("/_ping")).headers["Swarm"] == "active/worker"
    # docker-py: inspect and update a node (labels, availability)
    dc = a.client()
    node = dc.nodes.get("node2")
    assert node.attrs["Spec"]["Role"] == "worker"
    node.update({"Availability": "pause", "Role": "worker", "Labels": {"zone": "b"}})
    node.reload()
    assert node.attrs["Spec"]["Availability"] == "pause" and node.attrs["Spec"]["Labels"] == {"zone": "b"}
    # leave: the node goes down, then can be removed
    b.cli("swarm", "leave")
    assert b.cli("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip() == "inactive"
    wait_for(lambda: any(n["Hostname"] == "node2" and n["Status"] == "Down" for n in _nodes(a)), what="node2 down")
    a.cli("node", "rm", "node2")
    assert len(_nodes(a)) == 2
    res = a.cli("swarm", "leave", check=False)
    assert res.returncode != 0 and "--force" in res.stderr
