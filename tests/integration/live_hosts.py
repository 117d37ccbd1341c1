"""Two test "hosts" for a live move, and a peer: three network namespaces.

- an underlay bridge in the root namespace joins host A and host B (their daemons reach
  each other there: a daemon per namespace, started with nsenter --net, FIELD-NOTES);
- a user-defined bridge network `lmnet` with the same subnet on both daemons, whose two
  bridges (one per namespace, the same name in each) the test joins with a veth pair: one
  L2 segment, so a container keeps its IP and MAC on either side. A's gateway is .1,
  B's .254: no address is on the segment twice;
- a peer namespace C on A's side of that segment (.200), where a client runs.

`close()` removes all of it: daemons (and their containers), namespaces, veths, bridge.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import destroy_daemon, import_busybox, write_daemon_json
from tests.integration.overlay_hosts import Host, _free_subnet, _spawn_in, sh


@dataclass
class LiveHosts:
    tag: str
    underlay: str
    subnet: ipaddress.IPv4Network
    tmp: Path
    hosts: list[Host] = field(default_factory=list)
    network: str = "lmnet"

    @property
    def bridge(self) -> str:
        return f"lmc{self.tag}"

    @property
    def peer_ns(self) -> str:
        return f"lmp{self.tag}"

    @property
    def peer_ip(self) -> str:
        return str(self.subnet.network_address + 200)

    def in_peer(self, *argv: str) -> list[str]:
        return ["nsenter", f"--net=/var/run/netns/{self.peer_ns}", *argv]

    def close(self) -> None:
        for h in self.hosts:
            try:
                destroy_daemon(h.daemon)
            except Exception:  # noqa: BLE001 - the rest must still go
                pass
        for i in range(2):
            subprocess.run(["ip", "link", "del", f"lmu{self.tag}{i}"], capture_output=True, check=False)
        for ns in [h.name for h in self.hosts] + [self.peer_ns]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.underlay], capture_output=True, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


def start_live_hosts() -> LiveHosts:
    tag = secrets.token_hex(3)
    under = _free_subnet()
    gw = str(under.network_address + 1)
    tmp = Path(tempfile.mkdtemp(prefix="lmv-", dir="/tmp"))
    lh = LiveHosts(tag, f"lmu{tag}", ipaddress.IPv4Network("0.0.0.0/32"), tmp)
    try:
        sh("ip", "link", "add", lh.underlay, "type", "bridge")
        sh("ip", "addr", "add", f"{gw}/24", "dev", lh.underlay)
        sh("ip", "link", "set", lh.underlay, "up")
        lh.subnet = _free_subnet()
        while lh.subnet.overlaps(under):
            lh.subnet = _free_subnet()
        for i in range(2):
            name = f"lmh{tag}{i}"
            addr = str(under.network_address + 10 + i)
            sh("ip", "netns", "add", name)
            lh.hosts.append(Host(name, addr, None))  # type: ignore[arg-type] - the daemon follows
            sh("ip", "link", "add", f"lmu{tag}{i}", "type", "veth", "peer", "name", "ul0", "netns", name)
            sh("ip", "link", "set", f"lmu{tag}{i}", "master", lh.underlay, "up")
            sh("ip", "-n", name, "addr", "add", f"{addr}/24", "dev", "ul0")
            sh("ip", "-n", name, "link", "set", "ul0", "up")
            sh("ip", "-n", name, "link", "set", "lo", "up")
            sh("ip", "-n", name, "route", "add", "default", "via", gw)
            root = Path(tempfile.mkdtemp(prefix="dy-", dir="/tmp"))
            write_daemon_json(root, {})
            lh.hosts[i].daemon = _spawn_in(name, root)
            import_busybox(lh.hosts[i].daemon.host)
        a, b = lh.hosts
        for h, gateway in ((a, 1), (b, 254)):
            h.docker(
                "network", "create", "--subnet", str(lh.subnet), "--gateway", str(lh.subnet.network_address + gateway),
                "-o", f"com.docker.network.bridge.name={lh.bridge}", lh.network,
            )  # fmt: skip
        # one L2 segment: A's and B's bridges joined by a veth pair
        sh("ip", "link", "add", "lmja", "netns", a.name, "type", "veth", "peer", "name", "lmjb", "netns", b.name)
        sh("ip", "-n", a.name, "link", "set", "lmja", "master", lh.bridge, "up")
        sh("ip", "-n", b.name, "link", "set", "lmjb", "master", lh.bridge, "up")
        # the peer: a namespace on A's side of the segment
        sh("ip", "netns", "add", lh.peer_ns)
        sh("ip", "link", "add", "lmk", "netns", a.name, "type", "veth", "peer", "name", "eth0", "netns", lh.peer_ns)
        sh("ip", "-n", a.name, "link", "set", "lmk", "master", lh.bridge, "up")
        sh("ip", "-n", lh.peer_ns, "addr", "add", f"{lh.peer_ip}/{lh.subnet.prefixlen}", "dev", "eth0")
        sh("ip", "-n", lh.peer_ns, "link", "set", "eth0", "up")
        sh("ip", "-n", lh.peer_ns, "link", "set", "lo", "up")
    except BaseException:
        lh.close()
        raise
    return lh


def dockyard_move(src: Host, dst: Host | str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`dockyard container move ARGS --to DST` from the source host's daemon."""
    from tests.conftest import BIN

    to = dst if isinstance(dst, str) else dst.daemon.host
    return subprocess.run(
        [str(BIN / "dockyard"), "-H", src.daemon.host, "container", "move", *args, "--to", to],
        capture_output=True, text=True, timeout=timeout, check=False, env=dict(os.environ),
    )  # fmt: skip
