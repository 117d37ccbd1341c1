"""Live move (`dockyard container move --live`) between two daemons in two network
namespaces whose container bridges are one L2 segment (tests/integration/live_hosts.py).

The container serves a TCP stream of numbered lines (busybox nc running a counter). A
client in a third namespace connects once and reads while the container moves: every
number arrives, none twice, over the same connection, and the container answers from B
with the same IP and MAC afterwards. Refusals: a container with a TTY, a target without
a working criu.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.live_hosts import LiveHosts, dockyard_move, start_live_hosts

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, runc, CRIU)")

COUNTER = "i=0; while true; do echo $i; i=$((i+1)); usleep 10000; done"

# connects once, then appends every line it reads to the file; "EOF" when the peer closes
READER = r"""
import socket, sys
host, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((host, port), timeout=5)
s.settimeout(None)
with open(out, "a", buffering=1) as f:
    f.write("CONNECTED %s:%d\n" % s.getsockname())
    buf = b""
    while True:
        data = s.recv(65536)
        if not data:
            f.write("EOF\n")
            break
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            f.write(line.decode() + "\n")
"""


@pytest.fixture(scope="module")
def hosts() -> Iterator[LiveHosts]:
    lh = start_live_hosts()
    yield lh
    lh.close()


def _numbers(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _wait_lines(path: Path, n: int, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = _numbers(path) if path.exists() else []
        if len([x for x in lines if x.isdigit()]) >= n:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} lines after {timeout}s: {(_numbers(path) if path.exists() else [])[-5:]}")


def test_live_move_keeps_a_tcp_stream_without_gap_or_duplicate(hosts: LiveHosts, tmp_path: Path) -> None:
    a, b = hosts.hosts
    name = "lmsrv"
    a.docker("run", "-d", "--name", name, "--network", hosts.network, "-p", "7100:7000", "busybox",
             "nc", "-l", "-p", "7000", "-e", "sh", "-c", COUNTER)  # fmt: skip
    before = json.loads(a.docker("inspect", name).stdout)[0]["NetworkSettings"]["Networks"][hosts.network]
    ip, mac = before["IPAddress"], before["MacAddress"]
    out = tmp_path / "lines"
    reader = subprocess.Popen(hosts.in_peer(sys.executable, "-c", READER, ip, "7000", str(out)))
    try:
        _wait_lines(out, 50)
        res = dockyard_move(a, b, "--live", name)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "frozen" in res.stdout
        moved_at = len([x for x in _numbers(out) if x.isdigit()])
        _wait_lines(out, moved_at + 100)
    finally:
        reader.terminate()
        reader.wait(timeout=10)
    lines = _numbers(out)
    assert lines[0].startswith("CONNECTED"), lines[:3]
    assert "EOF" not in lines, "the connection was closed during the move"
    got = [int(x) for x in lines[1:] if x.isdigit()]
    assert got == list(range(got[0], got[0] + len(got))), "a gap or a duplicate in the stream"
    assert got[0] == 0
    # it runs on B only, with the same address, and no longer exists on A
    assert a.docker("inspect", name, check=False).returncode != 0
    after = json.loads(b.docker("inspect", name).stdout)[0]
    assert after["State"]["Running"]
    ep = after["NetworkSettings"]["Networks"][hosts.network]
    assert (ep["IPAddress"], ep["MacAddress"]) == (ip, mac)
    assert after["HostConfig"]["PortBindings"] == {"7000/tcp": [{"HostIp": "", "HostPort": "7100"}]}
    b.docker("rm", "-f", name)


def test_live_move_refuses_a_tty(hosts: LiveHosts) -> None:
    a, b = hosts.hosts
    a.docker("run", "-d", "-t", "--name", "lmtty", "busybox", "sleep", "600")
    try:
        res = dockyard_move(a, b, "--live", "lmtty")
        assert res.returncode != 0
        assert "cannot move container lmtty: it has a TTY" in res.stderr
        assert json.loads(a.docker("inspect", "lmtty").stdout)[0]["State"]["Running"]
        assert b.docker("inspect", "lmtty", check=False).returncode != 0
    finally:
        a.docker("rm", "-f", "lmtty")


def test_a_failed_restore_on_the_target_resumes_on_the_source_without_a_gap(
    hosts: LiveHosts, tmp_path: Path
) -> None:
    """B's host port 7101 is taken, so B cannot start the container: the move fails after
    the freeze, and A restores the very checkpoint it took, connection and all."""
    a, b = hosts.hosts
    name = "lmback"
    b.docker("run", "-d", "--name", "lmport", "-p", "7101:1", "busybox", "sleep", "600")
    a.docker("run", "-d", "--name", name, "--network", hosts.network, "-p", "7101:7000", "busybox",
             "nc", "-l", "-p", "7000", "-e", "sh", "-c", COUNTER)  # fmt: skip
    ip = json.loads(a.docker("inspect", name).stdout)[0]["NetworkSettings"]["Networks"][hosts.network]["IPAddress"]
    out = tmp_path / "lines"
    reader = subprocess.Popen(hosts.in_peer(sys.executable, "-c", READER, ip, "7000", str(out)))
    try:
        _wait_lines(out, 50)
        res = dockyard_move(a, b, "--live", name)
        assert res.returncode != 0, res.stdout + res.stderr
        assert "resuming lmback on the source" in res.stderr
        moved_at = len([x for x in _numbers(out) if x.isdigit()])
        _wait_lines(out, moved_at + 100)
    finally:
        reader.terminate()
        reader.wait(timeout=10)
        b.docker("rm", "-f", "lmport")
    lines = _numbers(out)
    assert "EOF" not in lines
    got = [int(x) for x in lines[1:] if x.isdigit()]
    assert got == list(range(0, len(got))), "a gap or a duplicate in the stream"
    doc = json.loads(a.docker("inspect", name).stdout)[0]
    assert doc["State"]["Running"]
    assert b.docker("inspect", name, check=False).returncode != 0
    assert a.docker("checkpoint", "ls", name).stdout.strip() == "CHECKPOINT NAME"  # the move's is gone
    a.docker("rm", "-f", name)


def test_live_move_refuses_a_target_without_criu(hosts: LiveHosts) -> None:
    from tests.conftest import destroy_daemon, make_daemon, write_daemon_json

    a, _ = hosts.hosts
    target = make_daemon()
    try:
        target.stop()
        write_daemon_json(target.root, {"criu-path": "/bin/true"})
        target.start()
        a.docker("run", "-d", "--name", "lmnocriu", "busybox", "sleep", "600")
        res = dockyard_move(a, target.host, "--live", "lmnocriu")
        assert res.returncode != 0
        assert f"cannot move container lmnocriu: {target.host} cannot restore a live move" in res.stderr
        assert "criu at /bin/true is older than 4.1" in res.stderr
        assert json.loads(a.docker("inspect", "lmnocriu").stdout)[0]["State"]["Running"]
    finally:
        a.docker("rm", "-f", "lmnocriu", check=False)
        destroy_daemon(target)
