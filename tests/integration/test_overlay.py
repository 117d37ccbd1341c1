"""Overlay networks across hosts: VXLAN between daemons in their own network namespaces,
forwarding entries from the etcd peer table, names resolved across hosts.

Driven by the docker CLI and docker-py against daemons on `overlay_hosts` hosts. Traffic
goes only between the containers and namespaces the fixture made.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.conftest import wait_for
from tests.integration.overlay_hosts import Cluster, Host, restart, start_cluster

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, VXLAN)")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = start_cluster(2)
    yield c
    c.close()


def _sees(h: Host, net: str) -> bool:
    return h.docker("network", "inspect", net, check=False).returncode == 0


def _sandboxes(h: Host) -> list[str]:
    d = h.daemon.exec_root / "netns"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def test_overlay_is_refused_without_a_cluster_store(docker_cli, unique) -> None:
    res = docker_cli("network", "create", "-d", "overlay", unique("ov"), check=False)
    assert res.returncode != 0
    assert "not a swarm manager" in res.stderr


def test_encrypted_overlay_is_refused_not_ignored(cluster: Cluster, unique) -> None:
    h1 = cluster.hosts[0]
    name = unique("ovenc")
    res = h1.docker("network", "create", "-d", "overlay", "-o", "encrypted", name, check=False)
    assert res.returncode != 0 and "encrypted overlay networks" in res.stderr
    assert not _sees(h1, name)


def test_containers_on_two_hosts_ping_talk_tcp_and_resolve_names(cluster: Cluster, unique) -> None:
    h1, h2 = cluster.hosts[:2]
    net, a, b = unique("ovnet"), unique("a"), unique("b")
    h1.docker("network", "create", "-d", "overlay", "--attachable", "--subnet", "10.0.77.0/24", net)
    try:
        wait_for(lambda: _sees(h2, net), timeout=10, what="the network on the second host")
        view = h2.docker("network", "inspect", "-f", "{{.Driver}} {{.Scope}} {{.Attachable}}", net).stdout.split()
        assert view == ["overlay", "swarm", "true"]
        h1.docker("run", "-d", "--name", a, "--network", net, "busybox", "sleep", "300")
        h2.docker("run", "-d", "--name", b, "--network", net, "busybox",
                  "nc", "-ll", "-p", "7000", "-e", "echo", "hello-from-b")  # fmt: skip
        ip_b = h2.docker("inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}", b).stdout.strip()
        ip_a = h1.docker("inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}", a).stdout.strip()
        assert ip_b.startswith("10.0.77.") and ip_a.startswith("10.0.77.")
        assert ip_a != ip_b  # addresses are allocated cluster-wide, not per node
        # names of containers on the other host resolve through the embedded DNS
        ping = wait_for(lambda: h1.docker("exec", a, "ping", "-c", "1", "-W", "2", b, check=False).returncode == 0,
                        timeout=10, what=f"{a} pinging {b} across hosts")  # fmt: skip
        assert ping
        out = h1.docker("exec", a, "nslookup", b, "127.0.0.11").stdout
        assert ip_b in out
        got = wait_for(lambda: "hello-from-b" in h1.docker("exec", a, "sh", "-c", f"nc {b} 7000 </dev/null",
                                                           check=False).stdout, timeout=10, what="tcp across hosts")  # fmt: skip
        assert got
        # and back: b pings a by name
        assert h2.docker("exec", b, "ping", "-c", "1", "-W", "2", a, check=False).returncode == 0
        # the segment is in a sandbox namespace of its own: nothing of the host on it
        links = subprocess.run(["ip", "-n", h1.name, "-o", "link"], capture_output=True, text=True).stdout
        assert "vxlan" not in links and _sandboxes(h1)
    finally:
        h1.docker("rm", "-f", a, check=False)
        h2.docker("rm", "-f", b, check=False)
        h1.docker("network", "rm", net, check=False)
    wait_for(lambda: not _sees(h2, net), timeout=10, what="the network gone from the second host")
    wait_for(lambda: not _sandboxes(h1) and not _sandboxes(h2), timeout=10, what="sandboxes removed")


def test_non_attachable_overlay_refuses_plain_containers(cluster: Cluster, unique) -> None:
    h1 = cluster.hosts[0]
    net = unique("ovna")
    h1.docker("network", "create", "-d", "overlay", net)
    try:
        res = h1.docker("run", "--rm", "--network", net, "busybox", "true", check=False)
        assert res.returncode != 0 and "not manually attachable" in res.stderr
    finally:
        h1.docker("network", "rm", net)


def test_docker_py_sees_remote_endpoints_and_cannot_remove_a_network_in_use(cluster: Cluster, unique) -> None:
    h1, h2 = cluster.hosts[:2]
    c1 = docker.DockerClient(base_url=h1.docker_host, version="auto")
    c2 = docker.DockerClient(base_url=h2.docker_host, version="auto")
    name = unique("ovpy")
    net = c1.networks.create(name, driver="overlay", attachable=True)
    ctr = None
    try:
        assert net.attrs["Scope"] == "swarm" and net.attrs["Driver"] == "overlay"
        assert int(net.attrs["Options"]["com.docker.network.driver.overlay.vxlanid_list"]) >= 4096
        wait_for(lambda: any(n.name == name for n in c2.networks.list()), timeout=10, what="network on h2")
        ctr = c2.containers.run("busybox", ["sleep", "300"], network=name, detach=True)
        # the endpoint lives on h2; h1 must still refuse to remove the network
        def refused() -> bool:
            try:
                c1.networks.get(name).remove()
            except docker.errors.APIError as err:
                assert err.status_code == 409 and "active endpoints" in str(err)
                return True
            return False

        assert wait_for(refused, timeout=10, what="removal refused while h2 has an endpoint")
        # a second network with the same name is refused on the other host too
        with pytest.raises(docker.errors.APIError) as info:
            c2.networks.create(name, driver="overlay")
        assert info.value.status_code == 409
    finally:
        if ctr is not None:
            ctr.remove(force=True)
        c1.networks.get(name).remove()
        c1.close()
        c2.close()


def test_kill_9_of_a_daemon_keeps_its_overlay_containers_reachable(cluster: Cluster, unique) -> None:
    h1, h2 = cluster.hosts[:2]
    net, a, b = unique("ovkill"), unique("a"), unique("b")
    h1.docker("network", "create", "-d", "overlay", "--attachable", net)
    try:
        wait_for(lambda: _sees(h2, net), timeout=10, what="the network on the second host")
        h1.docker("run", "-d", "--name", a, "--network", net, "busybox", "sleep", "300")
        h2.docker("run", "-d", "--name", b, "--network", net, "busybox", "sleep", "300")
        wait_for(lambda: h2.docker("exec", b, "ping", "-c", "1", "-W", "1", a, check=False).returncode == 0,
                 timeout=10, what="b reaching a")  # fmt: skip
        restart(h1)  # kill -9: the sandbox, its entries and a's interface must survive
        assert h2.docker("exec", b, "ping", "-c", "1", "-W", "2", a, check=False).returncode == 0
        assert h1.docker("exec", a, "ping", "-c", "1", "-W", "2", b, check=False).returncode == 0
        # the restarted daemon still follows the table: a container started now is reachable
        c = unique("c")
        h2.docker("run", "-d", "--name", c, "--network", net, "busybox", "sleep", "300")
        wait_for(lambda: h1.docker("exec", a, "ping", "-c", "1", "-W", "1", c, check=False).returncode == 0,
                 timeout=10, what="a reaching a container started after the restart")  # fmt: skip
        h2.docker("rm", "-f", c)
    finally:
        h1.docker("rm", "-f", a, check=False)
        h2.docker("rm", "-f", b, check=False)
        h1.docker("network", "rm", net, check=False)


def test_no_leftovers_in_underlay_namespaces(cluster: Cluster) -> None:
    for h in cluster.hosts:
        links = subprocess.run(["ip", "-n", h.name, "-o", "link"], capture_output=True, text=True).stdout
        assert "vx-" not in links
        assert not Path(h.daemon.exec_root / "netns").exists() or not _sandboxes(h)
