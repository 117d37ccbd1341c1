"""The etcd member a manager runs and supervises.

Owns the etcd process of this node: its argv (mutual TLS on the client and peer ports when
the node has certificates), its data dir (`<data-root>/swarm/etcd`), its pidfile
(`<exec-root>/swarm/etcd.pid`) and its log. Like conmon, the member outlives a daemon that
is killed: a restarted daemon adopts it by pidfile (checking the pid still runs etcd on our
data dir) instead of starting a second one. If the member dies, the supervisor starts it
again (`--initial-cluster-state existing`: the data dir knows the cluster).

It must not know what the cluster stores; `kv.py` talks to the member.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from dockyard import errdefs
from dockyard.cluster.ca import NodeFiles

log = logging.getLogger(__name__)

ETCD = "etcd"
CLIENT_PORT = 2379
PEER_PORT = 2380


@dataclass
class MemberConfig:
    name: str  # the node ID
    address: str  # the advertise address
    data_dir: Path
    run_dir: Path
    tls: NodeFiles | None
    cluster_token: str  # the cluster ID: members of other clusters refuse us
    client_port: int = CLIENT_PORT
    peer_port: int = PEER_PORT

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://{self.address}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.scheme}://{self.address}:{self.peer_port}"


class EtcdMember:
    def __init__(self, cfg: MemberConfig) -> None:
        self.cfg = cfg
        self.pid: int | None = None
        self._initial_cluster = ""
        self._state = "new"
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self.restarts = 0

    def __repr__(self) -> str:
        return f"<EtcdMember {self.cfg.name} {self.cfg.client_url} pid={self.pid}>"

    @property
    def pidfile(self) -> Path:
        return self.cfg.run_dir / "etcd.pid"

    def argv(self) -> list[str]:
        c = self.cfg
        argv = [
            ETCD, "--name", c.name, "--data-dir", str(c.data_dir),
            "--listen-client-urls", c.client_url, "--advertise-client-urls", c.client_url,
            "--listen-peer-urls", c.peer_url, "--initial-advertise-peer-urls", c.peer_url,
            "--initial-cluster", self._initial_cluster or f"{c.name}={c.peer_url}",
            "--initial-cluster-state", self._state, "--initial-cluster-token", c.cluster_token,
            "--logger", "zap", "--log-outputs", "stderr",
            "--auto-compaction-mode", "revision", "--auto-compaction-retention", "20000",
        ]  # fmt: skip
        if c.tls:
            t = c.tls
            argv += [
                "--cert-file", str(t.cert), "--key-file", str(t.key), "--trusted-ca-file", str(t.ca_cert),
                "--client-cert-auth",
                "--peer-cert-file", str(t.cert), "--peer-key-file", str(t.key),
                "--peer-trusted-ca-file", str(t.ca_cert), "--peer-client-cert-auth",
            ]  # fmt: skip
        return argv

    def _adoptable(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text())
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if cmd and os.path.basename(cmd[0].decode()) == ETCD and str(self.cfg.data_dir).encode() in cmd:
            return pid
        return None

    async def start(self, initial_cluster: str = "", state: str = "new") -> None:
        """Start (or adopt) the member and supervise it until `stop()`."""
        if shutil.which(ETCD) is None:
            raise errdefs.Unavailable("etcd is not installed (apt-get install etcd-server)")
        self._initial_cluster, self._state = initial_cluster, state
        self.cfg.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.cfg.data_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._stopping = False
        adopted = self._adoptable()
        if adopted:
            log.info("adopting etcd member pid %d", adopted)
            self.pid = adopted
        else:
            await self._spawn()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(), name="etcd-member")

    async def _spawn(self) -> None:
        with open(self.cfg.data_dir.parent / "etcd.log", "ab") as logf:  # the child keeps its own copy
            p = await asyncio.create_subprocess_exec(
                *self.argv(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=logf,
                stderr=logf,
                start_new_session=True,
            )
        self.pid = p.pid
        self.pidfile.write_text(f"{p.pid}\n")
        # the child is reaped by asyncio's child watcher; we poll /proc like for an adopted one
        self._proc = p
        log.info("started etcd member %s pid %d", self.cfg.name, p.pid)

    def alive(self) -> bool:
        if self.pid is None:
            return False
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().split(") ", 1)[1][0] != "Z"
        except OSError:
            return False

    async def _supervise(self) -> None:
        while not self._stopping:
            await asyncio.sleep(0.5)
            if self._stopping or self.alive():
                continue
            log.warning("etcd member %s (pid %s) died; restarting it", self.cfg.name, self.pid)
            self.restarts += 1
            await asyncio.sleep(1.0)  # a crash loop must not spin
            if self._stopping:
                break
            self._state = "existing"
            with contextlib.suppress(Exception):
                await self._spawn()

    async def stop(self, remove_data: bool = False) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        if self.pid is not None and self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while self.alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if self.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
        proc = getattr(self, "_proc", None)
        if proc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
        self.pid = None
        self.pidfile.unlink(missing_ok=True)
        if remove_data:
            shutil.rmtree(self.cfg.data_dir, ignore_errors=True)
