"""Supervision benchmarks (issue 11), dockyardd against Debian's dockerd, one engine at a time:

- first restart under on-failure: a container's `die` to its next `start`, from each daemon's
  own event times (timeNano), median of N;
- CPU time of the daemon over one minute with 50 containers probed every second
  (`--health-interval 1s`): utime+stime of the daemon and the children it reaped (dockerd:
  with its containerd), from /proc;
- the daemon's RSS before and after 1,000 probes (20 s of those 50 containers).

Both engines run containers with `--network none` (the real dockerd runs with `--bridge none`
as conftest's real_docker does, serialised on the same lock file). Run as root from the
repository root: `PYTHONPATH=$PWD python scripts/bench_supervision.py [restarts]`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import DOCKERD, destroy_daemon, import_busybox, make_daemon, wait_for

Cli = Callable[..., str]


def _cli(host: str) -> Cli:
    def run(*args: str) -> str:
        res = subprocess.run(["docker", "-H", host, *args], capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            raise RuntimeError(f"{args}: {res.stderr}")
        return res.stdout

    return run


def _cpu(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / tick


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def first_restart_ms(cli: Cli, n: int) -> list[float]:
    out = []
    for i in range(n):
        since = time.time()
        name = f"rs{i}"
        cli("run", "-d", "--name", name, "--network", "none", "--restart", "on-failure:1", "busybox",
            "sh", "-c", "sleep 0.5; exit 1")  # fmt: skip

        def restarted(name: str = name) -> bool:
            return cli("inspect", "-f", "{{.RestartCount}}", name).strip() == "1"

        wait_for(restarted, timeout=30, what="the first restart")
        evs = [json.loads(line) for line in cli(
            "events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}", "--filter", f"container={name}",
            "--format", "{{json .}}").splitlines()]  # fmt: skip
        die = next(e["timeNano"] for e in evs if e["Action"] == "die")
        start = next(e["timeNano"] for e in evs if e["Action"] == "start" and e["timeNano"] > die)
        out.append((start - die) / 1e6)
        cli("rm", "-f", name)
    return out


def probes(cli: Cli, pids: list[int], rss_pid: int) -> dict[str, float]:
    for i in range(50):
        cli("run", "-d", "--name", f"hc{i}", "--network", "none", "--health-cmd", "true",
            "--health-interval", "1s", "busybox", "sleep", "100000")  # fmt: skip
    time.sleep(10)  # every container probed a few times: the daemon at its steady state
    rss0, cpu0, t0 = _rss_mib(rss_pid), _cpu(pids), time.monotonic()
    time.sleep(20)
    rss1000 = _rss_mib(rss_pid)
    time.sleep(40)
    cpu1, t1 = _cpu(pids), time.monotonic()
    rss3000 = _rss_mib(rss_pid)
    healthy = cli("ps", "--filter", "health=healthy", "-q").split()
    cli("rm", "-f", *[f"hc{i}" for i in range(50)])
    return {"cpu_s_per_min": (cpu1 - cpu0) * 60 / (t1 - t0), "rss_before_mib": rss0, "rss_after_1000_mib": rss1000,
            "rss_after_3000_mib": rss3000, "healthy": len(healthy)}  # fmt: skip


def ours(n: int) -> dict[str, object]:
    d = make_daemon()
    try:
        import_busybox(d.host)
        cli = _cli(d.host)
        return {"restart_ms": first_restart_ms(cli, n), **probes(cli, [d.proc.pid], d.proc.pid)}
    finally:
        destroy_daemon(d)


def theirs(n: int) -> dict[str, object]:
    lock = open("/tmp/dockyard-real-dockerd.lock", "w")  # noqa: SIM115 - held for the run
    fcntl.flock(lock, fcntl.LOCK_EX)
    root = Path(tempfile.mkdtemp(prefix="dy-real-", dir="/tmp"))
    host = f"unix://{root}/docker.sock"
    log = open(root / "dockerd.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([DOCKERD, "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
                             "-H", host, "--pidfile", str(root / "docker.pid"), "--bridge", "none",
                             "--iptables=false"], stdout=log, stderr=log)  # fmt: skip
    try:
        cli = _cli(host)
        wait_for(lambda: subprocess.run(["docker", "-H", host, "version"], capture_output=True).returncode == 0,
                 timeout=60, what="dockerd")  # fmt: skip
        import_busybox(host)
        containerd = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid), "containerd"],
                                                     capture_output=True, text=True).stdout.split()]  # fmt: skip
        return {"restart_ms": first_restart_ms(cli, n), **probes(cli, [proc.pid, *containerd], proc.pid)}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if line.split()[4].startswith(str(root))]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        shutil.rmtree(root, ignore_errors=True)
        fcntl.flock(lock, fcntl.LOCK_UN)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    for name, fn in (("dockyardd", ours), ("dockerd", theirs)):
        r = fn(n)
        ms = r.pop("restart_ms")
        assert isinstance(ms, list)
        print(f"{name}: first restart median {statistics.median(ms):.0f} ms (min {min(ms):.0f}, max {max(ms):.0f}, n={n}); "
              + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()), flush=True)


if __name__ == "__main__":
    main()
