"""The crash harness: SIGKILL the daemon at random points during its operations, restart it,
and check what the next daemon finds.

Each round starts one operation with the docker CLI (create, start, stop, a restart-policy
restart, rm, commit, build, volume and network create/rm), kills the daemon after a random
delay (0-400 ms: before, during or after the operation), waits for the CLI (its exit status
says whether the operation was acknowledged), starts the daemon again and checks:

- every acknowledged operation is there (a created container, volume, network, image;
  a removed one is gone);
- an unacknowledged one is done or cleanly undone: every container inspects, and is
  running exactly when its process is;
- containers still run: an `--restart always` anchor is running after every restart;
- nothing is orphaned: no mount under the daemon's root, cgroup, tagged veth or conmon
  belongs to anything but a running container, and the daemon's tmp/ holds no file.

`run_series(kills)` returns the rounds' outcomes; a failed check raises with the round's
operation, delay and what was found.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import Daemon, destroy_daemon, import_busybox, make_daemon, wait_for


@dataclass
class Outcome:
    op: str
    delay_ms: int
    acked: bool
    detail: str = ""


@dataclass
class World:
    """What the driver knows was acknowledged."""

    containers: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    volumes: set[str] = field(default_factory=set)
    networks: set[str] = field(default_factory=set)
    images: set[str] = field(default_factory=set)
    seen_ids: set[str] = field(default_factory=set)
    n: int = 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"


def _cli(d: Daemon, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "-H", d.host, *args], capture_output=True, text=True, timeout=timeout)


def _ok(d: Daemon, *args: str) -> str:
    res = _cli(d, *args)
    assert res.returncode == 0, (args, res.stdout, res.stderr)
    return res.stdout


class Harness:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.world = World()
        self.d: Daemon = make_daemon()
        import_busybox(self.d.host)
        self.build_ctx = self.d.root / "ctx"
        self.build_ctx.mkdir()
        (self.build_ctx / "Dockerfile").write_text("FROM busybox\nRUN echo built > /built\n")
        _ok(self.d, "run", "-d", "--name", "anchor", "--restart", "always", "busybox", "sleep", "100000")
        self.world.containers.add("anchor")

    def close(self) -> None:
        destroy_daemon(self.d)

    # -- operations: (argv, what an acknowledgement means) ------------------------------------

    def _pick(self) -> tuple[str, list[str], str]:
        w, rng = self.world, self.rng
        alive = sorted(w.containers - {"anchor"})
        ops = ["create", "run", "volume_create", "network_create", "commit", "build", "restart_policy"]
        if alive:
            ops += ["start", "stop", "rm", "rm"]
        if w.volumes:
            ops.append("volume_rm")
        if w.networks:
            ops.append("network_rm")
        op = rng.choice(ops)
        if op == "create":
            n = w.name("c")
            return op, ["create", "--name", n, "busybox", "sleep", "100000"], n
        if op == "run":
            n = w.name("r")
            net = ["--network", rng.choice(sorted(w.networks))] if w.networks and rng.random() < 0.5 else []
            vol = ["-v", f"{rng.choice(sorted(w.volumes))}:/data"] if w.volumes and rng.random() < 0.5 else []
            return op, ["run", "-d", "--name", n, *net, *vol, "busybox", "sleep", "100000"], n
        if op == "restart_policy":
            n = w.name("p")
            return op, ["run", "-d", "--name", n, "--restart", "on-failure:2", "busybox", "sh", "-c", "sleep 0.2; exit 3"], n
        if op in ("start", "stop", "rm"):
            n = rng.choice(alive)
            return op, {"start": ["start", n], "stop": ["stop", "-t", "1", n], "rm": ["rm", "-f", n]}[op], n
        if op == "volume_create":
            n = w.name("v")
            return op, ["volume", "create", n], n
        if op == "volume_rm":
            n = rng.choice(sorted(w.volumes))
            return op, ["volume", "rm", n], n
        if op == "network_create":
            n = w.name("n")
            return op, ["network", "create", n], n
        if op == "network_rm":
            n = rng.choice(sorted(w.networks))
            return op, ["network", "rm", n], n
        if op == "commit":
            n = w.name("img")
            return op, ["commit", "anchor", f"{n}:c"], f"{n}:c"
        n = w.name("b")
        return op, ["build", "-q", "-t", f"{n}:b", str(self.build_ctx)], f"{n}:b"

    def _record(self, op: str, target: str, acked: bool) -> None:
        w = self.world
        if op in ("create", "run", "restart_policy"):
            if acked:
                w.containers.add(target)
        # a removal not acknowledged may have happened: the item is no longer promised
        elif op == "rm":
            w.containers.discard(target)
            if acked:
                w.removed.add(target)
        elif op == "volume_create" and acked:
            w.volumes.add(target)
        elif op == "volume_rm":
            w.volumes.discard(target)
        elif op == "network_create" and acked:
            w.networks.add(target)
        elif op == "network_rm":
            w.networks.discard(target)
        elif op in ("commit", "build") and acked:
            w.images.add(target)

    def round(self) -> Outcome:
        op, argv, target = self._pick()
        delay = self.rng.randint(0, 400)
        env = {**os.environ, "DOCKER_HOST": self.d.host, "DOCKER_BUILDKIT": "0"}
        proc = subprocess.Popen(["docker", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay / 1000)
        self.d.proc.send_signal(signal.SIGKILL)
        self.d.proc.wait(timeout=30)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        acked = proc.returncode == 0
        self._record(op, target, acked)
        self.d.start()
        try:
            self.check()
        except AssertionError as e:
            raise AssertionError(f"after {op} {argv} killed at {delay} ms (acked: {acked}): {e}\n{err}") from None
        return Outcome(op, delay, acked, err.strip()[-200:])

    # -- checks ----------------------------------------------------------------------------------

    def check(self) -> None:
        d, w = self.d, self.world
        rows = [json.loads(line) for line in _ok(d, "ps", "-a", "--no-trunc", "--format", "{{json .}}").splitlines()]
        names = {r["Names"] for r in rows}
        assert w.containers <= names, f"acknowledged containers missing: {w.containers - names}"
        assert not (w.removed & names), f"removed containers back: {w.removed & names}"
        vols = set(_ok(d, "volume", "ls", "-q").split())
        assert w.volumes <= vols, f"acknowledged volumes missing: {w.volumes - vols}"
        nets = set(_ok(d, "network", "ls", "--format", "{{.Name}}").split())
        assert w.networks <= nets, f"acknowledged networks missing: {w.networks - nets}"
        imgs = set(_ok(d, "images", "--format", "{{.Repository}}:{{.Tag}}").split())
        assert w.images <= imgs, f"acknowledged images missing: {w.images - imgs}"

        def anchor_running() -> bool:
            return _ok(d, "inspect", "-f", "{{.State.Running}}", "anchor").strip() == "true"

        wait_for(anchor_running, timeout=20, what="the --restart always anchor running again")
        flapping = [r["ID"] for r in rows if r["Names"].startswith("p")]

        def settled() -> bool:  # the on-failure:2 ones have given up again (their checks race otherwise)
            return not flapping or all(
                s in ("exited", "created", "dead") for s in _ok(d, "inspect", "-f", "{{.State.Status}}", *flapping).split()
            )

        try:
            wait_for(settled, timeout=30, what="the restart-policy containers settled")
        except AssertionError as err:
            states = _ok(d, "inspect", "-f", "{{.Name}} {{.State.Status}} {{.RestartCount}} {{.State.Pid}}", *flapping)
            raise AssertionError(f"{err}: {states}") from None
        running: set[str] = set()
        endpoints: set[str] = set()
        # a restart-policy container may be between two runs: let it settle for a moment
        for r in rows:
            st = json.loads(_ok(d, "inspect", r["ID"]))[0]
            w.seen_ids.add(st["Id"])
            pid = st["State"]["Pid"]
            if st["State"]["Running"] and not st["State"]["Restarting"]:
                assert pid and Path(f"/proc/{pid}").exists(), f"{r['Names']} running with no process {pid}"
                running.add(st["Id"])
                for ep in (st["NetworkSettings"]["Networks"] or {}).values():
                    if ep.get("EndpointID"):
                        endpoints.add("veth" + ep["EndpointID"][:7])
            elif st["State"]["Status"] == "exited":
                assert not pid, f"{r['Names']} exited with Pid {pid}"
        self._check_orphans(running, endpoints)

    def _check_orphans(self, running: set[str], endpoints: set[str]) -> None:
        d = self.d
        root = str(d.root)
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if line.split()[4].startswith(root + "/")]
        for m in mounts:
            cid = next((c for c in self.world.seen_ids if c in m), None)
            if cid is not None:
                assert cid in running, f"mount {m} of a container that is not running"
        for cid in self.world.seen_ids - running:
            assert not Path(f"/sys/fs/cgroup/dockyard/{cid}").exists(), f"cgroup of stopped {cid[:12]} left"
        conmons = []
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                argv = (p / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"conmon") and any(root.encode() in a for a in argv):
                conmons.append(b" ".join(argv).decode(errors="replace"))
        for line in conmons:
            cid = next((c for c in self.world.seen_ids if c in line), None)
            assert cid is None or cid in running, f"conmon of a container that is not running: {line[:200]}"
        table = _table(d)
        tagged = []
        for alias in Path("/sys/class/net").glob("*/ifalias"):
            try:
                if alias.read_text().strip() == table and alias.parent.name.startswith("veth"):
                    tagged.append(alias.parent.name)
            except OSError:
                continue
        # veths of stopped containers: a round later they must be gone (the driver wait is short)
        extra = set(tagged) - endpoints
        if extra:
            time.sleep(1)
            extra = {v for v in extra if Path(f"/sys/class/net/{v}").exists()}
        assert not extra, f"veths with no running endpoint: {extra}"
        tmp = d.data_root / "tmp"
        left = [p for p in tmp.rglob("*") if not p.is_dir()] if tmp.exists() else []
        assert not left, f"temp files left: {left[:5]}"


def _table(d: Daemon) -> str:
    import hashlib

    return "dockyard-" + hashlib.sha256(str(d.data_root).encode()).hexdigest()[:8]


def run_series(kills: int, seed: int) -> list[Outcome]:
    h = Harness(seed)
    out: list[Outcome] = []
    try:
        for _ in range(kills):
            out.append(h.round())
    finally:
        h.close()
    return out
