"""Hardening at the API edge: bounded bodies and nesting, type-checked JSON, a bounded DNS
relay and bounded event subscribers. Each test is an attack that worked before and must fail now."""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from tests.conftest import Daemon, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a real daemon)")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def request(d: Daemon, method: str, path: str, body: bytes | None = None, *,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:  # fmt: skip
    conn = UnixHTTPConnection(str(d.socket))
    try:
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        try:
            parsed = json.loads(data) if data else {}
        except ValueError:
            parsed = {"raw": data.decode(errors="replace")}
        return resp.status, parsed if isinstance(parsed, dict) else {"list": parsed}
    finally:
        conn.close()


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# -- 1. bounded request bodies and nesting ----------------------------------------------


def test_a_30mib_create_body_is_refused_with_413(daemon: Daemon, busybox: str) -> None:
    before = len(docker.APIClient(base_url=daemon.host, version="1.47").containers(all=True))
    pad = "x" * (30 << 20)
    body = json.dumps({"Image": busybox, "Cmd": ["true"], "Labels": {"pad": pad}}).encode()
    status, out = request(daemon, "POST", "/v1.47/containers/create", body)
    assert status == 413, out
    assert "request body is too large" in out["message"] and "4 MiB" in out["message"]
    # chunked (no Content-Length): refused once 4 MiB have arrived
    conn = UnixHTTPConnection(str(daemon.socket))
    try:
        conn.request("POST", "/v1.47/containers/create", body=iter([body[i : i + (1 << 20)] for i in range(0, len(body), 1 << 20)]),
                     headers={"Content-Type": "application/json"}, encode_chunked=True)  # fmt: skip
        resp = conn.getresponse()
        assert resp.status == 413, resp.read()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the daemon may close before the whole upload was sent; the container count shows the outcome
    finally:
        conn.close()
    assert len(docker.APIClient(base_url=daemon.host, version="1.47").containers(all=True)) == before
    assert request(daemon, "GET", "/_ping")[0] == 200


def test_deeply_nested_json_is_a_400_not_a_500(daemon: Daemon) -> None:
    for depth in (65, 5000, 200_000):
        body = ("[" * depth + "]" * depth).encode()
        status, out = request(daemon, "POST", "/v1.47/containers/create", body)
        assert status == 400, (depth, out)
        assert "nested deeper than 64 levels" in out["message"]
        nested = ('{"Labels":' * depth + "1" + "}" * depth).encode()
        assert request(daemon, "POST", "/v1.47/networks/create", nested)[0] == 400
    deep_filter = json.dumps({"label": ["x"]}).replace('["x"]', "[" * 2000 + "]" * 2000)
    status, out = request(daemon, "GET", "/v1.47/containers/json?filters=" + urllib.parse.quote(deep_filter, safe="[]{}:,"))
    assert status == 400 and "nested deeper" in out["message"], out
    # strings full of brackets do not count
    label = "[" * 500
    status, out = request(daemon, "POST", "/v1.47/volumes/create",
                          json.dumps({"Name": "nest-ok", "Labels": {"l": label}}).encode())  # fmt: skip
    assert status == 201, out
    assert request(daemon, "DELETE", "/v1.47/volumes/nest-ok")[0] == 204


# -- 2. JSON types checked at the edge --------------------------------------------------

BAD_TYPES = [
    ("/containers/create", {"Image": "busybox", "HostConfig": "x"},
     "json: cannot unmarshal string into Go struct field ContainerCreateRequest.HostConfig of type container.HostConfig"),
    ("/containers/create", {"Image": "busybox", "Cmd": 5},
     "json: cannot unmarshal number into Go struct field ContainerCreateRequest.Cmd of type strslice.StrSlice"),
    ("/containers/create", {"Image": "busybox", "Env": {"A": "b"}},
     "json: cannot unmarshal object into Go struct field ContainerCreateRequest.Env of type []string"),
    ("/containers/create", {"Image": "busybox", "ExposedPorts": ["80/tcp"]},
     "json: cannot unmarshal array into Go struct field ContainerCreateRequest.ExposedPorts of type nat.PortSet"),
    ("/containers/create", {"Image": "busybox", "HostConfig": {"Binds": "/a:/b"}},
     "json: cannot unmarshal string into Go struct field HostConfig.HostConfig.Binds of type []string"),
    ("/containers/create", {"Image": "busybox", "HostConfig": {"Memory": 1.5}},
     "json: cannot unmarshal number 1.5 into Go struct field HostConfig.HostConfig.Memory of type int64"),
    ("/containers/create", {"Image": "busybox", "HostConfig": {"BlkioWeight": 70000}},
     "json: cannot unmarshal number 70000 into Go struct field HostConfig.HostConfig.BlkioWeight of type uint16"),
    ("/containers/create", {"Image": "busybox", "Labels": {"a": 1}},
     "json: cannot unmarshal number into Go struct field ContainerCreateRequest.Labels of type string"),
    ("/containers/create", {"Image": "busybox", "Tty": "yes"},
     "json: cannot unmarshal string into Go struct field ContainerCreateRequest.Tty of type bool"),
    ("/containers/create", [1, 2], "json: cannot unmarshal array into Go value of type container.CreateRequest"),
    ("/networks/create", {"Name": "n", "IPAM": 5},
     "json: cannot unmarshal number into Go struct field CreateRequest.IPAM of type network.IPAM"),
    ("/networks/create", {"Name": "n", "IPAM": {"Config": [{"Subnet": 10}]}},
     "json: cannot unmarshal number into Go struct field IPAMConfig.IPAM.Config.Subnet of type string"),
    ("/volumes/create", {"Name": "v", "Labels": ["a"]},
     "json: cannot unmarshal array into Go struct field CreateOptions.Labels of type map[string]string"),
    ("/containers/nope/exec", {"Cmd": {"a": 1}},
     "json: cannot unmarshal object into Go struct field ExecOptions.Cmd of type strslice.StrSlice"),
    ("/networks/x/connect", {"Container": 7},
     "json: cannot unmarshal number into Go struct field ConnectOptions.Container of type string"),
    ("/containers/nope/update", {"RestartPolicy": "always"},
     "json: cannot unmarshal string into Go struct field UpdateConfig.RestartPolicy of type container.RestartPolicy"),
    ("/auth", {"username": 1},
     "json: cannot unmarshal number into Go struct field AuthConfig.username of type string"),
]  # fmt: skip


@pytest.mark.parametrize("path,body,message", BAD_TYPES, ids=[f"{p}:{m.split(' field ')[-1][:40]}" for p, _, m in BAD_TYPES])
def test_wrong_json_types_are_a_400_naming_the_field(daemon: Daemon, path: str, body: Any, message: str) -> None:
    status, out = request(daemon, "POST", "/v1.47" + path, json.dumps(body).encode())
    assert (status, out.get("message")) == (400, message)


def test_wrong_types_through_the_docker_cli_and_nulls_still_accepted(daemon: Daemon, busybox: str, docker_py: docker.DockerClient) -> None:
    # docker-py sends null for every field it does not set: Go accepts null anywhere
    body = {"Image": busybox, "Cmd": None, "Env": None, "HostConfig": {"Binds": None, "Memory": None},
            "NetworkingConfig": None, "Labels": None}  # fmt: skip
    status, out = request(daemon, "POST", "/v1.47/containers/create", json.dumps(body).encode())
    assert status == 201, out
    docker_py.api.remove_container(out["Id"], force=True)
    # a string Cmd is a StrSlice, as in dockerd
    c = docker_py.api.create_container(busybox, command="true")
    docker_py.api.remove_container(c["Id"], force=True)


# -- 4. event subscribers are bounded ---------------------------------------------------


def test_a_subscriber_that_never_reads_is_dropped_not_buffered(daemon: Daemon, busybox: str, unique: Any) -> None:
    api = docker.APIClient(base_url=daemon.host, version="1.47", timeout=60)
    # every event of this container carries its labels: 256 KiB per event
    labels = {f"l{i}": f"{i:02d}" * 4096 for i in range(32)}
    cid = api.create_container(busybox, command="true", labels=labels, name=unique("ev"))["Id"]
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(str(daemon.socket))
        stuck.sendall(b"GET /v1.47/events HTTP/1.1\r\nHost: docker\r\n\r\n")  # and never read
        for _i in range(5):  # warm up: the record cache, sqlite pages, allocator arenas
            api.rename(cid, unique("ev"))
        time.sleep(0.5)
        base = rss_kib(daemon.proc.pid)
        for _i in range(300):  # 75 MiB of events
            api.rename(cid, unique("ev"))
        grown = rss_kib(daemon.proc.pid) - base
        print(f"daemon RSS grew {grown} KiB over 300 events of 256 KiB")
        assert grown < 24 * 1024, f"daemon RSS grew {grown} KiB for one stuck subscriber"
        # its connection was ended: what was buffered drains, then EOF (or a reset)
        stuck.settimeout(15)
        deadline = time.monotonic() + 15
        received = 0
        while True:
            assert time.monotonic() < deadline, "the stuck subscriber's connection stayed open"
            try:
                chunk = stuck.recv(1 << 20)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += len(chunk)
        assert received < 20 << 20
        assert "events subscriber dropped" in daemon.log.read_text()
        # the bus still serves others
        assert request(daemon, "GET", "/_ping")[0] == 200
        ev_since = api.events(since=int(time.time()) - 60, until=int(time.time()) + 1, decode=True,
                              filters={"container": cid, "event": "rename"})  # fmt: skip
        assert sum(1 for _ in ev_since) >= 1
    finally:
        stuck.close()
        api.remove_container(cid, force=True)


# -- 3. the embedded DNS resolver's relay is bounded ------------------------------------


@pytest.fixture
def blackhole_dns() -> Iterator[tuple[str, list[int]]]:
    """An upstream resolver on loopback that takes every query and never answers (the worst
    upstream: each relayed query waits its whole timeout). Yields its address and a counter."""
    import threading

    addr = "127.66.0.1"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((addr, 53))
    sock.settimeout(0.2)
    seen = [0]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                sock.recvfrom(4096)
                seen[0] += 1
            except TimeoutError:
                continue

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield addr, seen
    stop.set()
    t.join()
    sock.close()


def test_a_dns_flood_from_one_container_keeps_the_daemons_fds_bounded(
    daemon: Daemon, busybox: str, docker_cli: Any, unique: Any, blackhole_dns: tuple[str, list[int]]
) -> None:
    import threading

    upstream, seen = blackhole_dns
    net, other, flood = unique("dnsnet"), unique("peer"), unique("flood")
    docker_cli("network", "create", net)
    try:
        docker_cli("run", "-d", "--name", other, "--network", net, busybox, "sleep", "300")
        pid = daemon.proc.pid
        start = fd_count(pid)
        peak = [start]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], fd_count(pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # 400 lookups at once: unknown names are relayed to the silent upstream; the peer's
        # name is answered locally
        script = (
            "for i in $(seq 400); do nslookup unknown-$i.example >/dev/null 2>&1 & done; "
            f"for i in $(seq 20); do nslookup {other} >/dev/null 2>&1 & done; wait; "
            f"nslookup {other}"
        )
        t0 = time.monotonic()
        res = docker_cli("run", "--name", flood, "--network", net, "--dns", upstream, busybox, "sh", "-c", script,
                         check=False, timeout=180)  # fmt: skip
        elapsed = time.monotonic() - t0
        done.set()
        sampler.join()
        print(f"fds {start} -> peak {peak[0]}, {seen[0]} queries upstream, {elapsed:.1f}s")
        assert seen[0] > 0, "no query was relayed upstream"
        assert peak[0] - start <= 100, f"daemon fds went from {start} to {peak[0]} during the flood"
        # under the flood the resolver still answers the peer's name
        assert res.returncode == 0 and other in res.stdout, (res.stdout, res.stderr, elapsed)
        docker_cli("rm", "-f", flood)
        wait_for(lambda: fd_count(pid) <= start + 5, timeout=20, what=f"daemon fds back near {start}")
    finally:
        docker_cli("rm", "-f", flood, other, check=False)
        docker_cli("network", "rm", net, check=False)


def test_abandoned_waiting_streams_release_their_connections(daemon: Daemon, busybox: str, unique: Any) -> None:
    """`/events` with a filter nothing matches, `wait` on a container that never exits and
    `logs -f` of a silent one write nothing; a client that leaves must not keep its socket."""
    api = docker.APIClient(base_url=daemon.host, version="1.47", timeout=60)
    cid = api.create_container(busybox, command=["sleep", "300"], name=unique("quiet"))["Id"]
    api.start(cid)
    try:
        pid = daemon.proc.pid
        time.sleep(0.5)
        start = fd_count(pid)
        flt = urllib.parse.quote(json.dumps({"type": ["plugin"]}))
        reqs = [f"GET /v1.47/events?filters={flt}", f"POST /v1.47/containers/{cid}/wait",
                f"GET /v1.47/containers/{cid}/logs?follow=1&stdout=1"] * 10  # fmt: skip
        socks = []
        for r in reqs:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(daemon.socket))
            s.sendall(f"{r} HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\n\r\n".encode())
            socks.append(s)
        wait_for(lambda: fd_count(pid) >= start + len(reqs), timeout=10, what="the streams to be open")
        for s in socks:
            s.close()
        wait_for(lambda: fd_count(pid) <= start + 2, timeout=10, what=f"daemon fds back near {start}")
    finally:
        api.remove_container(cid, force=True)


def test_fuzz_findings_are_client_errors(daemon: Daemon, busybox: str, unique: Any) -> None:
    """Requests the fuzz test found answered with 500; each is the caller's mistake."""
    api = docker.APIClient(base_url=daemon.host, version="1.47")
    cid = api.create_container(busybox, command="true")["Id"]
    try:
        for method in ("GET", "HEAD"):
            status, out = request(daemon, method, f"/v1.47/containers/{cid}/archive?path={'a' * 300}")
            assert status == 400, (method, status, out)
    finally:
        api.remove_container(cid, force=True)
    status, out = request(daemon, "POST", "/v1.47/auth", json.dumps({"auth": "busybox"}).encode())
    assert (status, out["message"]) == (400, "invalid auth configuration: 'auth' is not base64")
    body = {"Name": unique("n"), "IPAM": {"Config": [{"Gateway": "172.31.9.1"}]}}
    status, out = request(daemon, "POST", "/v1.47/networks/create", json.dumps(body).encode())
    assert status == 400 and "needs a subnet" in out["message"], out
    name = unique("n")  # an empty entry asks for an automatic subnet
    status, out = request(daemon, "POST", "/v1.47/networks/create", json.dumps({"Name": name, "IPAM": {"Config": [{}]}}).encode())
    assert status == 201, out
    assert request(daemon, "DELETE", f"/v1.47/networks/{name}")[0] == 204
