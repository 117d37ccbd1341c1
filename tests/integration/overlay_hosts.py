"""Test "hosts" for the overlay: network namespaces on an underlay bridge, one etcd on the
bridge's address, and a dockyardd per namespace (started with nsenter --net, FIELD-NOTES),
each given the etcd as its cluster store.

The overlay's own helper until the cluster branch's tests/cluster_hosts.py (swarm init/join)
is merged: here the daemons share the store through `cluster-store` in daemon.json, which
is what the overlay data plane needs. Everything it makes (namespaces, bridge, etcd, daemons,
their roots) is removed by `close()`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import REPO, Daemon, _wait_for_socket, destroy_daemon, import_busybox, write_daemon_json


def _free_subnet() -> ipaddress.IPv4Network:
    routes = Path("/proc/net/route").read_text().splitlines()[1:]
    taken = []
    for line in routes:
        f = line.split()
        dst, mask = int(f[1], 16), int(f[7], 16)
        if mask:
            taken.append(ipaddress.IPv4Network((socket.inet_ntoa(dst.to_bytes(4, "little")),
                                                bin(mask).count("1")), strict=False))  # fmt: skip
    for _ in range(100):
        net = ipaddress.IPv4Network(f"10.250.{secrets.randbelow(250) + 1}.0/24")
        if not any(net.overlaps(t) for t in taken):
            return net
    raise RuntimeError("no free underlay subnet")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@dataclass
class Host:
    name: str  # the netns name under /var/run/netns
    address: str  # underlay address
    daemon: Daemon

    @property
    def docker_host(self) -> str:
        return self.daemon.host

    def docker(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKER_HOST": self.daemon.host}
        res = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, env=env)
        if check and res.returncode != 0:
            raise AssertionError(f"docker {args} on {self.name} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res


@dataclass
class Cluster:
    tag: str
    subnet: ipaddress.IPv4Network
    bridge: str
    etcd_url: str
    etcd: subprocess.Popen[bytes]
    tmp: Path
    hosts: list[Host] = field(default_factory=list)

    def close(self) -> None:
        for h in self.hosts:
            try:
                destroy_daemon(h.daemon)
            finally:
                # the namespace may outlive its name for a while (TCP TIME_WAIT to the etcd
                # holds it): delete our end of its veth now, which takes both ends
                subprocess.run(["ip", "link", "del", f"ovu{self.tag}{self.hosts.index(h)}"], capture_output=True, check=False)
                subprocess.run(["ip", "netns", "del", h.name], capture_output=True, check=False)
        if self.etcd.poll() is None:
            self.etcd.send_signal(signal.SIGTERM)
            self.etcd.wait(timeout=20)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _spawn_in(netns: str, root: Path, extra: tuple[str, ...] = ()) -> Daemon:
    sock, log = root / "d.sock", root / "daemon.log"
    argv = [
        "nsenter", f"--net=/var/run/netns/{netns}",
        sys.executable, "-m", "dockyard.daemon.main", "-H", f"unix://{sock}",
        "--data-root", str(root / "data"), "--exec-root", str(root / "run"),
        "--config-file", str(root / "daemon.json"), "--log-level", "debug", *extra,
    ]  # fmt: skip
    out = open(log, "ab")  # noqa: SIM115 - the daemon process writes it for its whole life
    proc = subprocess.Popen(argv, stdout=out, stderr=out, cwd=REPO)
    d = Daemon(root, sock, proc, log, extra)
    _wait_for_socket(d, timeout=30)
    return d


def restart(h: Host, sig: int = signal.SIGKILL) -> None:
    """Kill the host's daemon (containers keep running) and start it again in its namespace."""
    h.daemon.stop(sig)
    h.daemon = _spawn_in(h.name, h.daemon.root, h.daemon.extra_args)


def start_cluster(n: int = 2, busybox: bool = True) -> Cluster:
    tag = secrets.token_hex(3)
    subnet = _free_subnet()
    gw = str(subnet.network_address + 1)
    bridge = f"ovu{tag}"
    tmp = Path(tempfile.mkdtemp(prefix="ovc-", dir="/tmp"))
    sh("ip", "link", "add", bridge, "type", "bridge")
    sh("ip", "addr", "add", f"{gw}/24", "dev", bridge)
    sh("ip", "link", "set", bridge, "up")
    cport, pport = _free_port(), _free_port()
    etcd_log = open(tmp / "etcd.log", "ab")  # noqa: SIM115 - etcd writes it for its whole life
    etcd = subprocess.Popen(
        ["etcd", "--name", "ov", "--data-dir", str(tmp / "etcd"),
         "--listen-client-urls", f"http://{gw}:{cport}", "--advertise-client-urls", f"http://{gw}:{cport}",
         "--listen-peer-urls", f"http://127.0.0.1:{pport}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
         "--initial-cluster", f"ov=http://127.0.0.1:{pport}"],
        stdout=etcd_log, stderr=etcd_log,
    )  # fmt: skip
    c = Cluster(tag, subnet, bridge, f"etcd://{gw}:{cport}", etcd, tmp)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection((gw, cport), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or etcd.poll() is not None:
                    raise RuntimeError(f"etcd did not start:\n{(tmp / 'etcd.log').read_text()[-2000:]}") from None
                time.sleep(0.1)
        for i in range(n):
            name = f"ovh{tag}{i}"
            addr = str(subnet.network_address + 10 + i)
            sh("ip", "netns", "add", name)
            sh("ip", "link", "add", f"ovu{tag}{i}", "type", "veth", "peer", "name", "ul0", "netns", name)
            sh("ip", "link", "set", f"ovu{tag}{i}", "master", bridge, "up")
            sh("ip", "-n", name, "addr", "add", f"{addr}/24", "dev", "ul0")
            sh("ip", "-n", name, "link", "set", "ul0", "up")
            sh("ip", "-n", name, "link", "set", "lo", "up")
            sh("ip", "-n", name, "route", "add", "default", "via", gw)
            root = Path(tempfile.mkdtemp(prefix="dy-", dir="/tmp"))
            write_daemon_json(root, {"cluster-store": c.etcd_url})
            d = _spawn_in(name, root)
            c.hosts.append(Host(name, addr, d))
            if busybox:
                import_busybox(d.host)
    except BaseException:
        c.close()
        raise
    return c


def daemon_config(h: Host) -> dict[str, object]:
    return json.loads((h.daemon.root / "daemon.json").read_text())  # type: ignore[no-any-return]
