"""Live restore: containers and exec processes outlive the daemon (conmon owns them) and
are adopted on restart.

Each test runs its own daemon (make_daemon) so stopping it does not disturb other tests:
SIGTERM with streams open must stop promptly and leave containers running; after a
restart (or a `kill -9`), running containers are adopted with their logs, and one that
exited while the daemon was away gets its real exit code.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.conftest import Daemon, destroy_daemon, import_busybox, make_daemon, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlayfs, runc)")


@pytest.fixture
def own_daemon() -> Iterator[Daemon]:
    d = make_daemon()
    import_busybox(d.host)
    yield d
    if d.proc.poll() is not None:
        d.start()
    destroy_daemon(d)
    assert conmons(d) == [], "conmon left behind"
    with open("/proc/mounts") as f:
        assert not [line for line in f if str(d.root) in line]


def conmons(d: Daemon) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                argv = (p / "cmdline").read_bytes()
            except OSError:
                continue
            if argv.startswith(b"conmon\0") and str(d.root).encode() in argv:
                out.append(int(p.name))
    return out


def cli(d: Daemon, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": d.host}
    r = subprocess.run(
        ["docker", *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if check and r.returncode:
        raise AssertionError(f"docker {args} exited {r.returncode}: {r.stderr}")
    return r


def state(d: Daemon, name: str) -> dict[str, Any]:
    return json.loads(cli(d, "inspect", name).stdout)[0]["State"]


def served(d: Daemon) -> int:
    """How many connections the daemon has accepted and not closed."""
    out = subprocess.run(["ss", "-xH", "state", "connected"], capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if str(d.socket) in line.split())


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start_workload(d: Daemon) -> None:
    cli(d, "run", "-d", "--name", "ticker", "busybox", "sh", "-c",
        "i=0; while true; do echo tick$i; echo tock$i >&2; i=$((i+1)); sleep 0.1; done")  # fmt: skip
    cli(d, "run", "-d", "--name", "doomed", "busybox", "sh", "-c", "sleep 1.5; exit 7")
    cli(d, "run", "-d", "--name", "frozen", "busybox", "sleep", "1000")
    cli(d, "pause", "frozen")
    wait_for(lambda: "tick3" in cli(d, "logs", "ticker").stdout, what="ticker output")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_restart_adopts_containers(own_daemon: Daemon, sig: int):
    d = own_daemon
    start_workload(d)
    pids = {n: state(d, n)["Pid"] for n in ("ticker", "doomed", "frozen")}
    # long-lived streams open while the daemon goes away
    env = {**os.environ, "DOCKER_HOST": d.host}
    streams = [
        subprocess.Popen(["docker", *a], stdout=out, stderr=subprocess.DEVNULL, env=env)
        for a, out in (
            (["events"], subprocess.DEVNULL),
            (["logs", "-f", "ticker"], subprocess.PIPE),
            (["attach", "--no-stdin", "ticker"], subprocess.PIPE),
            (["wait", "doomed"], subprocess.DEVNULL),
        )
    ]
    # every stream is being served: its connection accepted (ss lists an accepted socket
    # under the daemon's socket path), and the two that print have printed
    wait_for(lambda: served(d) >= len(streams), what="the four streams to connect")
    wait_for(lambda: all(p.stdout is None or select.select([p.stdout], [], [], 0)[0] for p in streams),
             what="the streams' output")  # fmt: skip
    t0 = time.monotonic()
    d.stop(sig)
    assert time.monotonic() - t0 < 3, "daemon shutdown was not prompt"
    for p in streams:
        p.communicate(timeout=10)  # each ends with the daemon
    assert len(conmons(d)) == 3 or not alive(pids["doomed"])
    assert alive(pids["ticker"]) and alive(pids["frozen"])
    # "doomed" exits while nobody watches
    wait_for(lambda: not alive(pids["doomed"]), timeout=10, what="doomed to exit")
    wait_for(lambda: len(conmons(d)) == 2, what="doomed's conmon to go")
    d.start()
    t = state(d, "ticker")
    assert (t["Status"], t["Running"], t["Pid"]) == ("running", True, pids["ticker"])
    f = state(d, "frozen")
    assert (f["Status"], f["Paused"]) == ("paused", True)
    dm = state(d, "doomed")
    assert (dm["Status"], dm["Running"], dm["ExitCode"]) == ("exited", False, 7)
    assert dm["FinishedAt"] > dm["StartedAt"]
    assert cli(d, "wait", "doomed").stdout.strip() == "7"
    # logs are intact across the restart and keep coming
    before = cli(d, "logs", "ticker")
    lines = before.stdout.splitlines()
    assert lines == [f"tick{i}" for i in range(len(lines))]
    assert before.stderr.splitlines()[:3] == ["tock0", "tock1", "tock2"]
    wait_for(lambda: len(cli(d, "logs", "ticker").stdout.splitlines()) > len(lines) + 2, what="more ticks")
    # adopted containers are fully manageable
    assert cli(d, "exec", "ticker", "echo", "hi").stdout == "hi\n"
    cli(d, "unpause", "frozen")
    assert state(d, "frozen")["Status"] == "running"
    since = str(time.time() - 0.5)
    cli(d, "stop", "-t", "1", "ticker")
    t = state(d, "ticker")
    assert (t["Status"], t["ExitCode"]) == ("exited", 137)  # sh as PID 1 ignores TERM
    assert not alive(pids["ticker"])
    ev = cli(d, "events", "--since", since, "--until", str(time.time()), "--filter", "container=ticker",
             "--format", "{{.Action}}").stdout.split()  # fmt: skip
    assert "die" in ev and "stop" in ev
    cli(d, "kill", "frozen")
    assert state(d, "frozen")["ExitCode"] == 137
    assert conmons(d) == []
    for n in ("ticker", "doomed", "frozen"):
        cli(d, "rm", n)
    assert not list((d.data_root / "containers").iterdir())


def test_restart_with_docker_py_wait_and_rm(own_daemon: Daemon):
    d = own_daemon
    client = docker.DockerClient(base_url=d.host, version="auto", timeout=30)
    try:
        c = client.containers.run("busybox", ["sh", "-c", "sleep 1; echo bye; exit 3"], detach=True)
        eid = client.api.exec_create(c.id, ["sleep", "0.5"])["Id"]
        client.api.exec_start(eid, detach=True)
        pids = client.api.inspect_container(c.id)["State"]["Pid"], client.api.exec_inspect(eid)["Pid"]
        assert client.api.exec_inspect(eid)["Running"]
        d.stop()
        # both end while the daemon is down
        wait_for(lambda: not any(alive(p) for p in pids), what="the container and exec to exit")
        d.start()
        assert c.wait(timeout=10)["StatusCode"] == 3
        info = client.api.exec_inspect(eid)
        assert (info["Running"], info["ExitCode"]) == (False, 0)  # conmon's exit file, not "running" forever
        assert c.logs() == b"bye\n"
        c.remove()
    finally:
        client.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_restart_keeps_exec_processes(own_daemon: Daemon, sig: int):
    """Exec processes belong to their conmon, as Docker's belong to the containerd shim: a
    stop or a `kill -9` of the daemon leaves them running, attached or not, and the next
    daemon records how they end (or ended meanwhile) from conmon's exit files."""
    d = own_daemon
    api = docker.APIClient(base_url=d.host, version="1.47", timeout=30)
    try:
        cli(d, "run", "-d", "--name", "host", "busybox", "sleep", "1000")
        cli(d, "exec", "-d", "host", "sh", "-c", "sleep 3; exit 7")
        cli(d, "exec", "-d", "host", "sh", "-c", "sleep 0.5; exit 5")  # ends while no daemon runs
        env = {**os.environ, "DOCKER_HOST": d.host}
        attached = subprocess.Popen(
            ["docker", "exec", "host", "sh", "-c", "trap 'exit 9' TERM; while true; do echo tick; sleep 0.1; done"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        assert attached.stdout is not None and attached.stdout.readline() == b"tick\n"
        ids = json.loads(cli(d, "inspect", "host").stdout)[0]["ExecIDs"]
        by_cmd = {" ".join(api.exec_inspect(e)["ProcessConfig"]["arguments"]): e for e in ids}
        slow, quick = by_cmd["-c sleep 3; exit 7"], by_cmd["-c sleep 0.5; exit 5"]
        ticker = next(e for c, e in by_cmd.items() if "tick" in c)
        pids = {e: api.exec_inspect(e)["Pid"] for e in (slow, quick, ticker)}
        assert all(api.exec_inspect(e)["Running"] for e in (slow, ticker))

        since = str(time.time())
        d.stop(sig)
        attached.wait(timeout=10)  # its client lost the daemon; the process did not
        wait_for(lambda: not alive(pids[quick]), timeout=5, what="the quick exec to end")
        assert alive(pids[slow]) and alive(pids[ticker])
        d.start()

        # still running under the new daemon, and known to it
        assert alive(pids[slow]) and alive(pids[ticker])
        info = api.exec_inspect(slow)
        assert (info["Running"], info["Pid"]) == (True, pids[slow])
        assert str(pids[slow]) in cli(d, "top", "host").stdout
        # the one that ended meanwhile has the code conmon wrote
        info = api.exec_inspect(quick)
        assert (info["Running"], info["ExitCode"]) == (False, 5)
        # adopted ones end with their real codes
        wait_for(lambda: not api.exec_inspect(slow)["Running"], timeout=10, what="the detached exec to end")
        assert api.exec_inspect(slow)["ExitCode"] == 7
        assert api.exec_inspect(ticker)["Running"]
        os.kill(pids[ticker], signal.SIGTERM)
        wait_for(lambda: not api.exec_inspect(ticker)["Running"], what="the attached exec to end")
        assert api.exec_inspect(ticker)["ExitCode"] == 9
        ev = cli(d, "events", "--since", since, "--until", str(time.time()), "--filter", "container=host",
                 "--filter", "event=exec_die", "--format", "{{.Actor.Attributes.exitCode}}").stdout.split()  # fmt: skip
        assert sorted(ev) == ["5", "7", "9"]
        assert not list((d.exec_root / "execs").iterdir())
        cli(d, "rm", "-f", "host")
        wait_for(lambda: conmons(d) == [], what="every conmon to go")
    finally:
        api.close()


def test_kill_9_during_a_build_leaves_no_build_container(own_daemon: Daemon, tmp_path: Path) -> None:
    """A build ends with its request; the RUN container it was running is adopted like any
    container by the next daemon, which must then remove it (nothing a user made is lost,
    nothing the dead build made is left)."""
    d = own_daemon
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN sleep 30\n")
    env = {**os.environ, "DOCKER_HOST": d.host, "DOCKER_BUILDKIT": "0"}
    build = subprocess.Popen(["docker", "build", "--no-cache", str(tmp_path)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        cid = wait_for(lambda: cli(d, "ps", "-q").stdout.strip(), timeout=30, what="the RUN container")
        cli(d, "run", "-d", "--name", "users-own", "busybox", "sleep", "60")
        d.stop(signal.SIGKILL)
        build.wait(timeout=30)
        d.start()
        assert cli(d, "ps", "-aq", "--filter", f"id={cid}").stdout.strip() == ""
        assert state(d, "users-own")["Running"], "a user's container is never touched"
        assert list((d.data_root / "build-runs").iterdir()) == []
    finally:
        if build.poll() is None:
            build.kill()
            build.wait()
        cli(d, "rm", "-f", "users-own", check=False)
