"""N "hosts" on one machine, for the cluster and overlay tests.

Each host is a network namespace (``dyh<k>-<i>``) joined to an underlay bridge
(``dyul<k>``) by a veth pair; the underlay has its own /24 in 10.213.<k>.0/24, picked
free (a lock file per k, so test sessions side by side never share one). The bridge
holds ``.1``; host i holds ``.(10+i)`` on its ``eth0``. Each host runs its own dockyardd,
started with ``nsenter --net=/var/run/netns/NAME`` (not ``ip netns exec``: that remounts
/sys in a new mount namespace and hides the cgroup mounts runc needs), with its own data
root, exec root, socket and default bridge name.

Use the ``cluster_hosts`` fixture factory::

    from tests.cluster_hosts import cluster_hosts  # noqa: F401  (the fixture)

    def test_x(cluster_hosts):
        a, b, c = cluster_hosts(3)
        a.cli("swarm", "init", "--advertise-addr", a.address)
        ...

Teardown removes every container, stops each daemon by PID (SIGKILL if it does not stop),
stops any process still inside a host's namespace (only processes our daemons started
live there: etcd members, conmon), deletes the namespaces, veths and the underlay bridge,
unmounts what is left under the roots, and asserts that nothing is left.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import docker
import pytest

from tests.conftest import LOOPBACK_REGISTRIES, REPO, Daemon, _wait_for_socket, import_busybox

SUBNET_PREFIX = "10.213"  # 10.213.<k>.0/24 per cluster; only addresses this fixture makes
NETNS_DIR = Path("/var/run/netns")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _ns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def pids_in_netns(netns: str) -> list[int]:
    """Processes whose network namespace is netns (by inode)."""
    ino = _ns_inode(str(NETNS_DIR / netns))
    if ino is None:
        return []
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if os.stat(d / "ns" / "net").st_ino == ino:
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


@dataclass
class HostDaemon(Daemon):
    """A dockyardd inside a network namespace (the conftest Daemon, spawned by nsenter)."""

    netns: str = ""

    hostname: str = ""

    def start(self) -> None:
        self.proc = _spawn_in(self.netns, self.hostname, self.root, self.socket, self.log, self.extra_args)
        _wait_for_socket(self, timeout=30)


def _spawn_in(
    netns: str, hostname: str, root: Path, sock: Path, log: Path, extra: tuple[str, ...]
) -> subprocess.Popen[bytes]:
    # its own UTS namespace too, so each "host" has its own hostname (node.hostname placement)
    argv = [
        "nsenter", f"--net={NETNS_DIR / netns}", "--", "unshare", "--uts", "--",
        "sh", "-c", 'hostname "$0" && exec "$@"', hostname,
        sys.executable, "-m", "dockyard.daemon.main",
        "-H", f"unix://{sock}",
        "--data-root", str(root / "data"),
        "--exec-root", str(root / "run"),
        "--config-file", str(root / "daemon.json"),
        "--log-level", "debug",
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "ab") as out:  # the daemon keeps its own copy of the descriptor
        return subprocess.Popen(argv, stdout=out, stderr=out, cwd=REPO, env=env)


@dataclass
class ClusterHost:
    """One "host": its namespace, its underlay address and its daemon."""

    index: int
    name: str  # the hostname-like name: node<i>
    netns: str
    address: str  # on the underlay
    daemon: HostDaemon
    _clients: list[docker.DockerClient] = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.daemon.host

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The real docker CLI against this host's daemon."""
        env = {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0"}
        res = subprocess.run(["docker", *args], capture_output=True, text=True, env=env, timeout=timeout,
                             input=input)  # fmt: skip
        if check and res.returncode != 0:
            raise AssertionError(
                f"[{self.name}] docker {args} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
            )
        return res

    def client(self, timeout: int = 60) -> docker.DockerClient:
        """A docker-py client of this host's daemon (closed at teardown)."""
        c = docker.DockerClient(base_url=self.host, version="auto", timeout=timeout)
        self._clients.append(c)
        return c

    def ns_run(self, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a command inside this host's network namespace."""
        res = subprocess.run(["nsenter", f"--net={NETNS_DIR / self.netns}", "--", *argv],
                             capture_output=True, text=True, timeout=timeout)  # fmt: skip
        if check and res.returncode != 0:
            raise AssertionError(f"[{self.name}] {argv} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res

    def kill(self) -> None:
        """SIGKILL this host's daemon (its containers, conmons and children stay)."""
        if self.daemon.proc.poll() is None:
            self.daemon.proc.send_signal(signal.SIGKILL)
            self.daemon.proc.wait(timeout=30)

    def stop(self) -> None:
        self.daemon.stop()

    def start(self) -> None:
        """(Re)start the daemon on the same roots, namespace and socket."""
        self.daemon.start()

    def import_busybox(self, ref: str = "busybox:latest") -> str:
        import_busybox(self.host, ref)
        return ref

    def __repr__(self) -> str:
        return f"<ClusterHost {self.name} {self.address} pid={self.daemon.proc.pid}>"


class Cluster:
    """The underlay and its hosts; `add()` makes one more host, `close()` removes them all."""

    def __init__(self) -> None:
        self.k, self._lock = _claim_subnet()
        self.bridge = f"dyul{self.k}"
        self.tag = f"dyh{self.k}"
        self.subnet = f"{SUBNET_PREFIX}.{self.k}.0/24"
        self.gateway = f"{SUBNET_PREFIX}.{self.k}.1"
        self.hosts: list[ClusterHost] = []
        self._netns: list[str] = []
        self._veths: list[str] = []
        self._roots: list[Path] = []
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add(self, daemon_json: dict[str, object] | None = None, extra: tuple[str, ...] = ()) -> ClusterHost:
        i = len(self.hosts) + 1
        netns = f"{self.tag}-{i}"
        veth = f"{self.tag}v{i}"  # host side, in the root namespace
        address = f"{SUBNET_PREFIX}.{self.k}.{10 + i}"
        _ip("netns", "add", netns)
        self._netns.append(netns)
        _ip("link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")
        self._veths.append(veth)
        _ip("link", "set", f"{veth}p", "netns", netns)
        _ip("link", "set", veth, "master", self.bridge)
        _ip("link", "set", veth, "up")
        ns = ("-n", netns)
        _ip(*ns, "link", "set", f"{veth}p", "name", "eth0")
        _ip(*ns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip(*ns, "link", "set", "eth0", "up")
        _ip(*ns, "link", "set", "lo", "up")
        _ip(*ns, "route", "add", "default", "via", self.gateway)

        root = Path(tempfile.mkdtemp(prefix=f"dy-{self.tag}-{i}-", dir="/tmp"))
        self._roots.append(root)
        settings: dict[str, object] = {
            "bridge": f"{self.tag}b{i}",  # own default bridge device (in its own namespace anyway)
            "allowed-registries": LOOPBACK_REGISTRIES,
            **(daemon_json or {}),
        }
        (root / "daemon.json").write_text(json.dumps(settings))
        sock, log = root / "d.sock", root / "daemon.log"
        d = HostDaemon(
            root,
            sock,
            _spawn_in(netns, f"node{i}", root, sock, log, extra),
            log,
            extra,
            netns=netns,
            hostname=f"node{i}",
        )
        _wait_for_socket(d, timeout=30)
        host = ClusterHost(i, f"node{i}", netns, address, d)
        self.hosts.append(host)
        return host

    def close(self) -> None:
        problems: list[str] = []
        for h in self.hosts:
            for c in h._clients:
                with contextlib.suppress(Exception):
                    c.close()
            d = h.daemon
            if d.proc.poll() is None:
                with contextlib.suppress(Exception):
                    api = docker.APIClient(base_url=d.host, version="1.47", timeout=60)
                    with contextlib.suppress(Exception):
                        api.leave_swarm(force=True)
                    for c in api.containers(all=True):
                        with contextlib.suppress(Exception):
                            api.remove_container(c["Id"], force=True)
                d.proc.send_signal(signal.SIGTERM)
                try:
                    d.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    problems.append(f"{h.name}: daemon ignored SIGTERM")
                    d.proc.kill()
                    d.proc.wait()
        # Whatever still runs in a host's namespace was started by its daemon (an etcd
        # member, a conmon of a container the daemon could not remove): stop it by PID.
        for ns in self._netns:
            left = pids_in_netns(ns)
            if left:
                problems.append(f"{ns}: processes left {[_comm(p) for p in left]}")
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _wait_gone(left)
        # container processes live in namespaces of their own; find the conmons left by
        # our roots (their argv names our exec roots) and stop them by PID
        for pid in _pids_mentioning([str(r) for r in self._roots]):
            problems.append(f"process left: {_comm(pid)}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for ns in self._netns:
            _ip("netns", "del", ns, check=False)
        for veth in self._veths:
            _ip("link", "del", veth, check=False)
        _ip("link", "del", self.bridge, check=False)
        keep = os.environ.get("DY_CLUSTER_LOGS")  # a folder to keep the daemons' logs in
        for i, root in enumerate(self._roots, start=1):
            if keep:
                Path(keep).mkdir(parents=True, exist_ok=True)
                for src in (root / "daemon.log", root / "data" / "swarm" / "etcd.log"):
                    if src.exists():
                        shutil.copy(src, Path(keep) / f"node{i}-{src.name}")
        for root in self._roots:
            with open("/proc/self/mountinfo") as f:
                mounts = [line.split()[4] for line in f if line.split()[4].startswith(str(root))]
            for m in sorted(mounts, key=len, reverse=True):
                subprocess.run(["umount", "-l", m], check=False)
            shutil.rmtree(root, ignore_errors=True)
        # nothing may be left: namespaces, links, roots
        for ns in self._netns:
            if (NETNS_DIR / ns).exists():
                problems.append(f"netns {ns} left")
        for dev in [self.bridge, *self._veths]:
            if Path("/sys/class/net", dev).exists():
                problems.append(f"link {dev} left")
        for root in self._roots:
            if root.exists():
                problems.append(f"root {root} left")
        self._lock.close()
        self.hosts.clear()
        assert not problems, "cluster teardown: " + "; ".join(problems)


def _comm(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        return f"{pid}:{cmd[:120]}"
    except OSError:
        return str(pid)


def _pids_mentioning(needles: list[str]) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if any(n in cmd for n in needles) and int(d.name) != os.getpid():
            out.append(int(d.name))
    return out


def _wait_gone(pids: list[int], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    for pid in pids:
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def _claim_subnet() -> tuple[int, IO[str]]:
    """A free k in 10.213.<k>.0/24: its lock file held for the cluster's life, and no link
    of that name on the host (a crashed session's leftovers are not reused)."""
    for k in range(1, 250):
        lock = open(f"/tmp/dockyard-cluster-{k}.lock", "w")  # noqa: SIM115  (held for the cluster's life)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        if Path(f"/sys/class/net/dyul{k}").exists():
            lock.close()
            continue
        return k, lock
    raise RuntimeError("no free underlay subnet in 10.213.0.0/16")


Factory = Callable[..., list[ClusterHost]]


@pytest.fixture
def cluster_hosts() -> Iterator[Factory]:
    """cluster_hosts(n, daemon_json=None) -> n fresh hosts on one underlay (more calls add
    more hosts to the same underlay); everything is torn down after the test."""
    if os.geteuid() != 0:
        pytest.skip("cluster hosts need root (network namespaces)")
    cluster: Cluster | None = None

    def make(
        n: int, daemon_json: dict[str, object] | None = None, extra: tuple[str, ...] = ()
    ) -> list[ClusterHost]:
        nonlocal cluster
        if cluster is None:
            cluster = Cluster()
        return [cluster.add(daemon_json, extra) for _ in range(n)]

    def gateway() -> str:
        """The underlay bridge's own address (in the root namespace): where a test may run
        a service every host reaches, such as an external etcd."""
        make(0)
        assert cluster is not None
        return cluster.gateway

    make.gateway = gateway  # type: ignore[attr-defined]
    try:
        yield make
    finally:
        if cluster is not None:
            cluster.close()


def underlay(hosts: list[ClusterHost]) -> dict[str, Any]:
    """A small summary for messages: name -> address."""
    return {h.name: h.address for h in hosts}
