"""The host's network state reconciled, not assumed: a bridge, the nft table or a running
container's veth deleted by someone else (an admin, another program) is rebuilt by the daemon,
and a client that goes away in the middle of a stream ends it without a traceback."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Daemon, destroy_daemon, import_busybox, make_daemon, wait_for


@pytest.fixture(scope="module")
def own() -> Iterator[Daemon]:
    d = make_daemon()
    import_busybox(d.host)
    yield d
    destroy_daemon(d)


def _cli(d: Daemon, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["docker", "-H", d.host, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert res.returncode == 0, (args, res.stdout, res.stderr)
    return res


def _bridge(d: Daemon) -> str:
    return str(json.loads((d.root / "daemon.json").read_text())["bridge"])


def _exists(dev: str) -> bool:
    return subprocess.run(["ip", "link", "show", dev], capture_output=True, check=False).returncode == 0


def _table(d: Daemon) -> str:
    return "dockyard-" + hashlib.sha256(str(d.data_root).encode()).hexdigest()[:8]


def _pings(d: Daemon, ip: str) -> bool:
    return _cli(d, "run", "--rm", "busybox", "ping", "-c", "1", "-W", "2", ip, check=False).returncode == 0


def test_deleted_bridge_rebuilt_at_the_next_run(own: Daemon):
    """Before: every `run` on the default network failed with "bridge ... does not exist"
    until the daemon restarted; the containers already running lost their network."""
    cid = _cli(own, "run", "-d", "busybox", "sleep", "300").stdout.strip()
    try:
        ip = _cli(own, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", cid).stdout.strip()
        subprocess.run(["ip", "link", "del", _bridge(own)], check=True)
        assert not _exists(_bridge(own))
        res = _cli(own, "run", "--rm", "busybox", "true", check=False)
        assert res.returncode == 0, res.stderr
        assert _exists(_bridge(own))
        assert _pings(own, ip)  # the running one was plugged back into the new bridge
        assert "re-created" in own.log.read_text()
    finally:
        _cli(own, "rm", "-f", cid)


def test_deleted_table_and_veth_rebuilt(own: Daemon):
    cid = _cli(own, "run", "-d", "busybox", "sleep", "300").stdout.strip()
    try:
        ip = _cli(own, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", cid).stdout.strip()
        eid = _cli(own, "inspect", "-f", "{{.NetworkSettings.EndpointID}}", cid).stdout.strip()
        veth = "veth" + eid[:7]
        assert _exists(veth)
        subprocess.run(["ip", "link", "del", veth], check=True)
        subprocess.run(["nft", "delete", "table", "ip", _table(own)], check=True)

        def table() -> bool:
            return subprocess.run(["nft", "list", "table", "ip", _table(own)], capture_output=True).returncode == 0

        wait_for(lambda: table() and _exists(veth), timeout=20, what="the table and the veth back")
        assert _pings(own, ip)
    finally:
        _cli(own, "rm", "-f", cid)


def _hang_up_on(d: Daemon, path: str, body: bytes = b"", method: str = "GET", upgrade: bool = False) -> None:
    """Open a stream, read a little, and go away (RST, as a killed client does)."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(d.socket))
    headers = f"{method} {path} HTTP/1.1\r\nHost: d\r\nContent-Length: {len(body)}\r\n"
    if upgrade:
        headers += "Connection: Upgrade\r\nUpgrade: tcp\r\n"
    s.sendall(headers.encode() + b"\r\n" + body)
    s.settimeout(5)
    try:
        s.recv(4096)
    except TimeoutError:
        pass
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()


def test_client_gone_mid_stream_ends_it_quietly(own: Daemon):
    cid = _cli(own, "run", "-d", "busybox", "sh", "-c", "while true; do echo tick; sleep 0.1; done").stdout.strip()
    try:
        start = len(own.log.read_bytes())
        for path, upgrade in (
            (f"/v1.47/containers/{cid}/stats", False),
            (f"/v1.47/containers/{cid}/logs?follow=1&stdout=1", False),
            ("/v1.47/events", False),
            (f"/v1.47/containers/{cid}/attach?stream=1&stdout=1", True),
        ):
            _hang_up_on(own, path, method="POST" if "attach" in path else "GET", upgrade=upgrade)
        time.sleep(3)  # stats' next sample, logs' next line, events' next event
        _cli(own, "pause", cid)
        _cli(own, "unpause", cid)
        time.sleep(1)
        tail = own.log.read_bytes()[start:].decode(errors="replace")
        assert "Traceback" not in tail, tail[tail.find("Traceback") - 300 :][:5000]
        assert _cli(own, "inspect", "-f", "{{.State.Running}}", cid).stdout.strip() == "true"
    finally:
        _cli(own, "rm", "-f", cid)
