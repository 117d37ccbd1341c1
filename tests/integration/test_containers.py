"""The container lifecycle through real clients: the docker CLI, docker-py and the dockyard CLI.

Covers create fields (round trip through inspect, and their effect inside the container),
start/stop/restart/kill/pause/unpause/wait/rm/rename/update, inspect's State, ps filters,
logs, events, commit, OOM kill and bad input, and checks that failed creates and starts
leave no mount, cgroup, conmon or bundle behind.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.conftest import Daemon, Runner, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlayfs, runc, cgroups)")

Make = Callable[..., str]
CG = Path("/sys/fs/cgroup")


@pytest.fixture
def made(docker_cli: Runner) -> Iterator[list[str]]:
    """Names or ids appended here are force-removed after the test."""
    names: list[str] = []
    yield names
    for n in reversed(names):
        docker_cli("rm", "-f", n, check=False)


@pytest.fixture
def run_d(docker_cli: Runner, busybox: str, unique: Callable[[str], str], made: list[str]) -> Make:
    """run_d(*flags, cmd=(...)) -> name of a detached, running busybox container."""

    def run(*flags: str, cmd: tuple[str, ...] = ("sleep", "1000")) -> str:
        name = unique("ct")
        made.append(name)
        docker_cli("run", "-d", "--name", name, *flags, busybox, *cmd)
        return name

    return run


def trapping(sig: str, code: int) -> tuple[str, ...]:
    """A PID 1 that exits with `code` on `sig` and says "ready" once the trap is set (before
    that, the kernel drops signals to a namespace's init that has no handler)."""
    return (
        "sh",
        "-c",
        f"trap 'echo got-{sig.lower()}; exit {code}' {sig}; echo ready; while true; do sleep 0.1; done",
    )


def wait_ready(docker_cli: Runner, name: str) -> None:
    wait_for(lambda: "ready" in docker_cli("logs", name).stdout, what=f"{name} ready")


def inspect(docker_cli: Runner, ref: str) -> dict[str, Any]:
    return json.loads(docker_cli("inspect", "--type", "container", ref).stdout)[0]



def conmon_pids(cid: str) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"conmon") and cid.encode() in argv:
            out.append(int(p.name))
    return out


def assert_no_leftovers(daemon: Daemon, cid: str, bundle_too: bool = True) -> None:
    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f if cid in line and str(daemon.root) in line]
    assert mounts == [], mounts
    for ctl in ("memory", "pids", "cpu", "freezer"):
        assert not (CG / ctl / "dockyard" / cid).exists(), f"cgroup {ctl} left for {cid}"
    assert conmon_pids(cid) == []
    if bundle_too:
        assert not (daemon.data_root / "containers" / cid).exists()


def bundles(daemon: Daemon) -> set[str]:
    return {p.name for p in (daemon.data_root / "containers").iterdir()}


# -- create fields --------------------------------------------------------------------------


def test_create_fields_round_trip_docker_py(
    docker_py: docker.DockerClient, busybox: str, unique, made, tmp_path
):
    name = unique("fields")
    made.append(name)
    api = docker_py.api
    hc = api.create_host_config(
        init=True, auto_remove=False, read_only=True, mem_limit="64m", memswap_limit="128m",
        nano_cpus=500_000_000, cpu_shares=512, cpuset_cpus="0", pids_limit=50,
        ulimits=[docker.types.Ulimit(name="nofile", soft=1024, hard=2048)],
        cap_add=["NET_ADMIN"], cap_drop=["CHOWN"], privileged=False,
        extra_hosts={"db.example": "10.1.2.3"}, sysctls={"net.ipv4.ip_forward": "1"},
        shm_size="32m", tmpfs={"/scratch": "size=8m"}, binds=[f"{tmp_path}:/host:ro"],
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 3}, network_mode="none",
    )  # fmt: skip
    c = api.create_container(
        busybox, command=["-c", "sleep 1000"], entrypoint=["/bin/sh"], environment={"FOO": "bar"},
        working_dir="/work", user="nobody", labels={"tier": "test"}, hostname="box", domainname="example.org",
        tty=True, stdin_open=True, stop_signal="SIGUSR1", stop_timeout=3, ports=[8080, (53, "udp")],
        host_config=hc, name=name,
    )  # fmt: skip
    i = api.inspect_container(c["Id"])
    cfg, h = i["Config"], i["HostConfig"]
    assert cfg["Cmd"] == ["-c", "sleep 1000"] and cfg["Entrypoint"] == ["/bin/sh"]
    assert "FOO=bar" in cfg["Env"] and any(e.startswith("PATH=") for e in cfg["Env"])
    assert (cfg["WorkingDir"], cfg["User"], cfg["Hostname"], cfg["Domainname"]) == (
        "/work",
        "nobody",
        "box",
        "example.org",
    )
    assert cfg["Labels"] == {"tier": "test"}
    assert (
        cfg["Tty"] is True and cfg["OpenStdin"] is True and cfg["StdinOnce"] is True
    )  # docker-py sets it with stdin_open
    assert cfg["StopSignal"] == "SIGUSR1" and cfg["StopTimeout"] == 3
    assert set(cfg["ExposedPorts"]) == {"8080/tcp", "53/udp"}
    assert h["Init"] is True and h["AutoRemove"] is False and h["ReadonlyRootfs"] is True
    assert (h["Memory"], h["MemorySwap"], h["NanoCpus"], h["CpuShares"]) == (
        64 << 20,
        128 << 20,
        500_000_000,
        512,
    )
    assert (h["CpusetCpus"], h["PidsLimit"]) == ("0", 50)
    assert h["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert h["CapAdd"] == ["NET_ADMIN"] and h["CapDrop"] == ["CHOWN"] and h["Privileged"] is False
    assert h["ExtraHosts"] == ["db.example:10.1.2.3"]
    assert h["Sysctls"] == {"net.ipv4.ip_forward": "1"}
    assert h["ShmSize"] == 32 << 20 and h["Tmpfs"] == {"/scratch": "size=8m"}
    assert h["Binds"] == [f"{tmp_path}:/host:ro"]
    assert h["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert h["NetworkMode"] == "none"
    assert i["State"]["Status"] == "created" and i["State"]["StartedAt"].startswith("0001")
    # and the container runs with them
    api.start(c["Id"])
    cid = c["Id"]
    mem = (CG / "memory/dockyard" / cid / "memory.limit_in_bytes").read_text().strip()
    assert int(mem) == 64 << 20
    assert (CG / "pids/dockyard" / cid / "pids.max").read_text().strip() == "50"
    assert (CG / "cpu/dockyard" / cid / "cpu.shares").read_text().strip() == "512"
    assert (CG / "cpu/dockyard" / cid / "cpu.cfs_quota_us").read_text().strip() == "50000"

    def ex(cmd: str, **kw: Any) -> str:
        r = api.exec_create(cid, ["sh", "-c", cmd], **kw)
        return api.exec_start(r["Id"]).decode()

    assert ex("id -u; pwd; echo $FOO; hostname; hostname -d 2>/dev/null || true").split()[:4] == [
        "65534",
        "/work",
        "bar",
        "box",
    ]
    assert "10.1.2.3\tdb.example" in ex("cat /etc/hosts")
    # the container's own processes; runc 1.1.5's exec leaks Go's raised soft NOFILE into
    # exec'd processes, so look at PID 1 rather than at the exec itself
    assert ex("grep 'open files' /proc/1/limits").split()[3:5] == ["1024", "2048"]
    assert ex("cat /proc/sys/net/ipv4/ip_forward").strip() == "1"
    assert "/scratch" in ex("grep -E ' /scratch | /dev/shm ' /proc/mounts")
    assert "size=32768k" in ex("grep ' /dev/shm ' /proc/mounts")
    assert ex("touch /x 2>&1; echo rc=$?").strip().endswith("rc=1")  # read-only root
    assert ex("touch /scratch/ok && echo ok").strip() == "ok"
    assert ex("touch /host/x 2>&1; echo rc=$?").strip().endswith("rc=1")  # :ro bind
    assert ex("ip link 2>/dev/null | grep -c ': ' ").strip() == "1"  # only lo: NetworkMode none
    assert ex("cat /proc/1/cmdline | tr '\\0' ' '").startswith("/sbin/docker-init")


def test_run_isolation_and_caps(docker_cli: Runner, busybox: str):
    def run(*args: str) -> str:
        return docker_cli("run", "--rm", *args).stdout

    eff_default = int(run(busybox, "sh", "-c", "grep CapEff /proc/self/status | cut -f2").strip(), 16)
    eff_admin = int(
        run(
            "--cap-add",
            "NET_ADMIN",
            "--cap-drop",
            "CHOWN",
            busybox,
            "sh",
            "-c",
            "grep CapEff /proc/self/status | cut -f2",
        ).strip(),
        16,
    )
    eff_priv = int(
        run("--privileged", busybox, "sh", "-c", "grep CapEff /proc/self/status | cut -f2").strip(), 16
    )
    CHOWN, NET_ADMIN, SYS_ADMIN = 1 << 0, 1 << 12, 1 << 21
    assert eff_default == 0xA80425FB  # Docker's default set
    assert eff_admin == (eff_default | NET_ADMIN) & ~CHOWN
    assert eff_priv & SYS_ADMIN
    out = run(
        "--hostname",
        "h1",
        busybox,
        "sh",
        "-c",
        "hostname; ps -o pid | wc -l; cat /proc/kcore | wc -c; echo $HOSTNAME",
    )
    host, nproc, kcore, env_host = out.split()
    assert host == "h1" and env_host == "h1"
    assert int(nproc) <= 4  # header, sh, ps, wc: a pid namespace of its own
    assert kcore == "0"  # masked
    assert run("--init", busybox, "sh", "-c", "cat /proc/1/comm").strip() in (
        "docker-init",
        "tini",
        "catatonit",
    )
    assert "10.9.8.7\tother" in run("--add-host", "other:10.9.8.7", busybox, "cat", "/etc/hosts")
    ro = docker_cli("run", "--rm", "--read-only", busybox, "touch", "/f", check=False)
    assert ro.returncode == 1 and "Read-only file system" in ro.stderr
    assert run("--shm-size", "16m", busybox, "df", "-k", "/dev/shm").split()[-5] == "16384"
    assert run("--network", "host", busybox, "hostname").strip() == os.uname().nodename
    assert run(
        "-u", "65534:65534", "-w", "/tmp", "-e", "A=1", busybox, "sh", "-c", "id -u; id -g; pwd; echo $A"
    ).split() == ["65534", "65534", "/tmp", "1"]


# -- lifecycle ------------------------------------------------------------------------------


def test_stop_timeout_signal_and_stop_signal(docker_cli: Runner, run_d: Make):
    a = run_d("--stop-signal", "USR1", cmd=trapping("USR1", 5))
    wait_ready(docker_cli, a)
    docker_cli("stop", a)
    st = inspect(docker_cli, a)["State"]
    assert (st["Status"], st["ExitCode"], st["Running"], st["Pid"]) == ("exited", 5, False, 0)
    assert "got-usr1" in docker_cli("logs", a).stdout
    # stop --signal overrides; a PID 1 that ignores TERM is killed after -t
    b = run_d(cmd=("sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"))
    t0 = time.monotonic()
    docker_cli("stop", "-t", "1", b)
    took = time.monotonic() - t0
    assert 0.9 < took < 6, took
    assert inspect(docker_cli, b)["State"]["ExitCode"] == 137
    c = run_d("--stop-timeout", "1", cmd=("sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"))
    t0 = time.monotonic()
    docker_cli("stop", c)  # StopTimeout from create, not the default 10
    assert time.monotonic() - t0 < 6
    d = run_d(cmd=trapping("HUP", 5))
    wait_ready(docker_cli, d)
    docker_cli("stop", "--signal", "HUP", d)
    assert inspect(docker_cli, d)["State"]["ExitCode"] == 5
    # stopping a stopped container is fine (304 -> the CLI prints the name)
    assert docker_cli("stop", d).stdout.strip() == d


def test_kill_restart_rename(docker_cli: Runner, run_d: Make, unique, made):
    a = run_d(cmd=trapping("USR2", 9))
    wait_ready(docker_cli, a)
    docker_cli("kill", "-s", "USR2", a)
    wait_for(lambda: not inspect(docker_cli, a)["State"]["Running"], what="exit after USR2")
    assert inspect(docker_cli, a)["State"]["ExitCode"] == 9
    bad = docker_cli("kill", "-s", "NOPE", a, check=False)
    assert bad.returncode != 0
    b = run_d()
    pid1 = inspect(docker_cli, b)["State"]["Pid"]
    started1 = inspect(docker_cli, b)["State"]["StartedAt"]
    docker_cli("restart", "-t", "0", b)
    st = inspect(docker_cli, b)["State"]
    assert st["Running"] and st["Pid"] != pid1 and st["StartedAt"] > started1
    docker_cli("kill", b)
    st = inspect(docker_cli, b)["State"]
    assert (st["Running"], st["ExitCode"], st["Status"]) == (False, 137, "exited")
    assert st["FinishedAt"] >= st["StartedAt"]
    new = unique("renamed")
    made.append(new)
    docker_cli("rename", b, new)
    assert inspect(docker_cli, new)["Name"] == "/" + new
    assert docker_cli("inspect", b, check=False).returncode != 0
    # the old name is free again
    docker_cli("rename", new, b)
    assert inspect(docker_cli, b)["Name"] == "/" + b


def test_pause_freezes_and_stop_of_paused(docker_cli: Runner, run_d: Make, dockyard_cli: Runner):
    a = run_d(cmd=("sh", "-c", "while true; do date +%s%N > /tmp/tick; sleep 0.05; done"))
    cid = inspect(docker_cli, a)["Id"]
    freezer = CG / "freezer/dockyard" / cid / "freezer.state"
    docker_cli("pause", a)
    assert freezer.read_text().strip() == "FROZEN"
    st = inspect(docker_cli, a)["State"]
    assert (st["Status"], st["Paused"], st["Running"]) == ("paused", True, True)
    assert "(Paused)" in docker_cli("ps", "--filter", f"name={a}", "--format", "{{.Status}}").stdout
    assert docker_cli("pause", a, check=False).returncode != 0  # already paused: 409
    exec_paused = docker_cli("exec", a, "true", check=False)
    assert exec_paused.returncode != 0 and "paused" in exec_paused.stderr
    dockyard_cli("unpause", a)
    assert freezer.read_text().strip() == "THAWED"
    assert inspect(docker_cli, a)["State"]["Status"] == "running"
    docker_cli("pause", a)
    t0 = time.monotonic()
    docker_cli("stop", "-t", "2", a)  # a paused container stops (thawed for the signal)
    assert time.monotonic() - t0 < 8
    st = inspect(docker_cli, a)["State"]
    assert (st["Status"], st["Paused"], st["Running"]) == ("exited", False, False)
    assert not (CG / "freezer/dockyard" / cid).exists()


class _UnixHTTP(http.client.HTTPConnection):
    """A plain HTTP/1.1 connection to the daemon's socket: its response starts when the
    headers arrive, before the body."""

    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=30)
        self.socket_path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def test_wait_conditions(docker_py: docker.DockerClient, daemon: Daemon, busybox: str, unique, made):
    api = docker_py.api
    name = unique("wait")
    made.append(name)
    cid = api.create_container(busybox, ["sh", "-c", "sleep 0.3; exit 3"], name=name)["Id"]
    # The daemon sends a wait's headers once the wait is registered (clients start the
    # container only then), so both waits are in place when their responses have begun.
    waits = {}
    for cond in ("next-exit", "removed"):
        conn = _UnixHTTP(daemon.socket)
        conn.request("POST", f"/v1.47/containers/{cid}/wait?condition={cond}")
        waits[cond] = conn, conn.getresponse()
        assert waits[cond][1].status == 200
    api.start(cid)
    assert api.wait(cid, condition="not-running", timeout=30)["StatusCode"] == 3
    assert json.loads(waits["next-exit"][1].read()) == {"StatusCode": 3}
    # not-running on an exited container answers at once
    assert api.wait(cid, timeout=5)["StatusCode"] == 3
    api.remove_container(cid)
    assert json.loads(waits["removed"][1].read()) == {"StatusCode": 3}
    for conn, _ in waits.values():
        conn.close()


def test_rm_force_and_update(docker_cli: Runner, run_d: Make, daemon: Daemon, dockyard_cli: Runner):
    a = run_d("--memory", "32m")
    cid = inspect(docker_cli, a)["Id"]
    limit = CG / "memory/dockyard" / cid / "memory.limit_in_bytes"
    assert int(limit.read_text()) == 32 << 20
    docker_cli(
        "update", "--memory", "48m", "--memory-swap", "96m", "--cpu-shares", "256", "--pids-limit", "40", a
    )
    assert int(limit.read_text()) == 48 << 20
    assert (CG / "pids/dockyard" / cid / "pids.max").read_text().strip() == "40"
    h = inspect(docker_cli, a)["HostConfig"]
    assert (h["Memory"], h["MemorySwap"], h["CpuShares"], h["PidsLimit"]) == (48 << 20, 96 << 20, 256, 40)
    dockyard_cli("update", "--memory", "40m", a)
    assert int(limit.read_text()) == 40 << 20
    below = docker_cli("update", "--memory", "1m", a, check=False)
    assert below.returncode != 0 and "Minimum memory limit" in below.stderr
    busy = docker_cli("rm", a, check=False)
    assert busy.returncode != 0 and "stop the container before removing or force remove" in busy.stderr
    docker_cli("rm", "-f", a)
    assert docker_cli("inspect", a, check=False).returncode != 0
    assert_no_leftovers(daemon, cid)


def test_inspect_state_fields(docker_py: docker.DockerClient, busybox: str, unique, made):
    name = unique("state")
    made.append(name)
    c = docker_py.containers.run(busybox, ["sh", "-c", "sleep 0.5; exit 4"], name=name, detach=True)
    c.reload()
    st = c.attrs["State"]
    assert st["Status"] == "running" and st["Running"] and not st["Paused"] and st["Pid"] > 0
    assert Path(f"/proc/{st['Pid']}").exists()
    assert st["ExitCode"] == 0 and st["OOMKilled"] is False
    assert st["StartedAt"] > c.attrs["Created"][:19] and st["FinishedAt"].startswith("0001")
    assert c.wait(timeout=10)["StatusCode"] == 4
    c.reload()
    st = c.attrs["State"]
    assert (st["Status"], st["Running"], st["Pid"], st["ExitCode"]) == ("exited", False, 0, 4)
    assert st["FinishedAt"] > st["StartedAt"]


# -- ps -------------------------------------------------------------------------------------


def test_ps_filters(docker_cli: Runner, run_d: Make, busybox: str, unique, made, dockyard_cli: Runner):
    lab = unique("lab")
    first = run_d("-l", f"grp={lab}", "-l", "role=a")
    mid = unique("ex")
    made.append(mid)
    docker_cli("run", "--name", mid, "-l", f"grp={lab}", busybox, "sh", "-c", "exit 3", check=False)
    created = unique("cr")
    made.append(created)
    docker_cli("create", "--name", created, "-l", f"grp={lab}", busybox, "true")
    last = run_d("-l", f"grp={lab}", "-l", "role=b")

    def names(*args: str, cli: Runner = docker_cli) -> list[str]:
        return cli("ps", "--filter", f"label=grp={lab}", *args, "--format", "{{.Names}}").stdout.split()

    assert names() == [last, first]
    assert names("-a") == [last, created, mid, first]
    assert names("-a", cli=dockyard_cli) == [last, created, mid, first]
    assert names("--filter", "status=exited") == [mid]
    assert names("--filter", "status=created") == [created]
    assert names("--filter", "exited=3") == [mid]
    assert names("--filter", "label=role=b") == [last]
    assert names("--filter", f"name={first}") == [first]
    assert names("--filter", f"name=^/{first}$") == [first] == names("--filter", f"name=^{first}$")
    assert names("--filter", f"name=^{first[:-2]}$") == []
    fid = inspect(docker_cli, first)["Id"]
    assert names("--filter", f"id={fid[:10]}") == [first]
    assert names("-a", "--filter", f"before={created}") == [mid, first]
    assert names("-a", "--filter", f"since={mid}") == [last, created]
    assert names("--filter", f"ancestor={busybox}") == [last, first]
    assert names("--filter", "ancestor=no-such-image") == []
    assert docker_cli("ps", "-a", "-n", "2", "--format", "{{.Names}}").stdout.split()[:2] == [last, created]
    q = docker_cli("ps", "-q", "--filter", f"label=grp={lab}").stdout.split()
    assert q == [inspect(docker_cli, last)["Id"][:12], fid[:12]]
    sized = docker_cli("ps", "-s", "--filter", f"name={first}", "--format", "{{.Size}}").stdout
    assert "virtual" in sized
    status = docker_cli(
        "ps", "-a", "--filter", f"label=grp={lab}", "--format", "{{.Names}}|{{.Status}}"
    ).stdout
    lines = dict(line.split("|") for line in status.splitlines())
    assert lines[first].startswith("Up ")
    assert lines[mid].startswith("Exited (3) ") and lines[mid].endswith(" ago")
    assert lines[created] == "Created"
    bad = docker_cli("ps", "--filter", "bogus=1", check=False)
    assert bad.returncode != 0 and "invalid filter" in bad.stderr


# -- logs -----------------------------------------------------------------------------------


def test_logs_streams_follow_since_tail_timestamps(
    docker_cli: Runner, run_d: Make, docker_py: docker.DockerClient
):
    a = run_d(cmd=("sh", "-c", "echo o1; echo e1 >&2; sleep 1.2; echo o2; echo e2 >&2; sleep 1000"))
    wait_for(lambda: "e2" in docker_cli("logs", a).stderr, what="second log lines")
    r = docker_cli("logs", a)
    assert r.stdout == "o1\no2\n" and r.stderr == "e1\ne2\n"
    assert docker_cli("logs", "--tail", "1", a).stderr == "e2\n"
    assert docker_cli("logs", "--tail", "1", a).stdout == ""
    ts = docker_cli("logs", "-t", a).stdout.splitlines()
    assert len(ts) == 2 and ts[0].endswith(" o1") and ts[0][:4].isdigit() and "T" in ts[0].split()[0]
    t_o2 = ts[1].split()[0]
    assert docker_cli("logs", "--since", t_o2, a).stdout == "o2\n"
    assert docker_cli("logs", "--until", t_o2, a).stdout == "o1\no2\n"
    t_first = ts[0].split()[0]
    assert docker_cli("logs", "--until", t_first, a).stdout == "o1\n"
    c = docker_py.containers.get(a)
    assert c.logs(stdout=True, stderr=False) == b"o1\no2\n"
    assert c.logs(stdout=False, stderr=True) == b"e1\ne2\n"
    # follow: lines written after the request arrive, and the stream ends with the container
    b = run_d(cmd=("sh", "-c", "sleep 0.5; echo later; sleep 0.5; echo last"))
    f = docker_cli("logs", "-f", b, timeout=20)
    assert f.stdout == "later\nlast\n"
    tty = run_d("-t", cmd=("sh", "-c", "echo tty-out; echo tty-err >&2; sleep 1000"))
    wait_for(lambda: "tty-err" in docker_cli("logs", tty).stdout, what="tty log")
    assert docker_cli("logs", tty).stdout.replace("\r", "") == "tty-out\ntty-err\n"


# -- events and commit ----------------------------------------------------------------------


def test_events_actions(docker_cli: Runner, busybox: str, unique, made):
    name = unique("ev")
    made.append(name)
    since = str(time.time() - 1)
    docker_cli("run", "-d", "--name", name, busybox, "sleep", "1000")
    docker_cli("pause", name)
    docker_cli("unpause", name)
    docker_cli("exec", name, "true")
    img = unique("evimg").lower() + ":t"
    docker_cli("commit", name, img)
    docker_cli("rmi", img)
    docker_cli("kill", "-s", "USR1", name)
    docker_cli("stop", "-t", "0", name)
    name2 = name + "-2"
    made.append(name2)
    docker_cli("rename", name, name2)
    docker_cli("rm", name2)
    until = str(time.time() + 0.5)
    out = docker_cli("events", "--since", since, "--until", until, "--filter", "type=container",
                     "--filter", f"container={name}", "--filter", f"container={name2}", "--format", "{{json .}}").stdout  # fmt: skip
    evs = [json.loads(line) for line in out.splitlines()]
    actions = [e["Action"].split(":")[0] for e in evs]
    for a in (
        "create",
        "start",
        "pause",
        "unpause",
        "exec_create",
        "exec_start",
        "exec_die",
        "commit",
        "kill",
        "die",
        "stop",
        "rename",
        "destroy",
    ):
        assert a in actions, (a, actions)
    assert actions.index("create") < actions.index("start") < actions.index("die") < actions.index("destroy")
    die = next(e for e in evs if e["Action"] == "die")
    assert die["Actor"]["Attributes"]["exitCode"] in ("137", "143")
    assert die["Actor"]["Attributes"]["name"] == name
    kill = next(e for e in evs if e["Action"] == "kill")
    assert kill["Actor"]["Attributes"]["signal"] == "10"
    only = docker_cli("events", "--since", since, "--until", until, "--filter", f"container={name}",
                      "--filter", "event=die", "--format", "{{.Action}}").stdout.split()  # fmt: skip
    assert only == ["die"]


def test_commit_makes_a_layer(docker_cli: Runner, run_d: Make, docker_py: docker.DockerClient, unique):
    a = run_d()
    docker_cli("exec", a, "sh", "-c", "echo committed > /etc/marker")
    ref = unique("committed").lower() + ":v1"
    base_layers = len(docker_py.images.get("busybox:latest").attrs["RootFS"]["Layers"])
    try:
        docker_cli("commit", "-c", "ENV STAGE=two", "-c", 'CMD ["cat", "/etc/marker"]', a, ref)
        img = docker_py.images.get(ref)
        assert len(img.attrs["RootFS"]["Layers"]) == base_layers + 1
        assert "STAGE=two" in img.attrs["Config"]["Env"]
        assert docker_cli("run", "--rm", ref).stdout == "committed\n"
        # the container kept running through the commit's pause
        assert inspect(docker_cli, a)["State"]["Status"] == "running"
        ref2 = unique("nopause").lower() + ":v1"
        docker_py.api.commit(a, repository=ref2.split(":")[0], tag="v1", pause=False)
        assert docker_cli("run", "--rm", ref2, "cat", "/etc/marker").stdout == "committed\n"
        docker_cli("rmi", ref2)
    finally:
        docker_cli("rmi", ref, check=False)


# -- OOM --------------------------------------------------------------------------------------


def test_oom_killed(docker_cli: Runner, busybox: str, unique, made):
    name = unique("oom")
    made.append(name)
    since = str(time.time() - 1)
    r = docker_cli("run", "--name", name, "--memory", "8m", "--memory-swap", "8m", busybox,
                   "sh", "-c", "x=a; while true; do x=$x$x; done", check=False, timeout=60)  # fmt: skip
    assert r.returncode == 137
    st = inspect(docker_cli, name)["State"]
    assert st["OOMKilled"] is True and st["ExitCode"] == 137 and st["Status"] == "exited"
    ev = docker_cli(
        "events",
        "--since",
        since,
        "--until",
        str(time.time()),
        "--filter",
        f"container={name}",
        "--format",
        "{{.Action}}",
    ).stdout.split()
    assert "oom" in ev and "die" in ev
    # a normal exit after that clears the flag
    docker_cli("start", name, check=False)
    wait_for(lambda: not inspect(docker_cli, name)["State"]["Running"], timeout=30)


# -- bad input ------------------------------------------------------------------------------


def test_bad_input_statuses(
    docker_py: docker.DockerClient, docker_cli: Runner, busybox: str, daemon: Daemon, unique, made
):
    api = docker_py.api
    with pytest.raises(docker.errors.NotFound, match="No such container: nosuch"):
        api.inspect_container("nosuch")
    for call in (
        lambda: api.stop("nosuch"),
        lambda: api.kill("nosuch"),
        lambda: api.remove_container("nosuch"),
        lambda: api.start("nosuch"),
    ):
        with pytest.raises(docker.errors.NotFound, match="No such container: nosuch"):
            call()
    r = docker_cli("stop", "nosuch", check=False)
    assert r.returncode == 1 and "No such container: nosuch" in r.stderr
    raw = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", str(daemon.socket), "-X", "POST",
         "-H", "Content-Type: application/json", "-d", "{not json", "http://d/v1.47/containers/create"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert raw.stdout == "400"
    before = bundles(daemon)
    for kwargs, msg in (
        ({"host_config": api.create_host_config(mem_limit="1m")}, "Minimum memory limit"),
        ({"host_config": api.create_host_config(restart_policy={"Name": "sometimes"})}, "restart policy"),
        ({"name": "bad name!"}, "Invalid container name"),
        ({"host_config": api.create_host_config(cap_add=["NOT_A_CAP"])}, "capabilit"),
        ({"stop_signal": "SIGBOGUS"}, "Invalid signal"),
    ):
        with pytest.raises(docker.errors.APIError) as ei:
            api.create_container(busybox, "true", **kwargs)
        assert ei.value.response.status_code == 400 and msg in str(ei.value), (kwargs, ei.value)
    with pytest.raises(docker.errors.ImageNotFound):
        api.create_container("no-such-image:here", "true")
    name = unique("dup")
    made.append(name)
    api.create_container(busybox, "true", name=name)
    with pytest.raises(docker.errors.APIError) as ei:
        api.create_container(busybox, "true", name=name)
    assert ei.value.response.status_code == 409
    assert bundles(daemon) - before == {api.inspect_container(name)["Id"]}
    run_name = unique("running")
    made.append(run_name)
    api.start(api.create_container(busybox, ["sleep", "100"], name=run_name))
    with pytest.raises(docker.errors.APIError) as ei:
        api.remove_container(run_name)
    assert ei.value.response.status_code == 409
    with pytest.raises(docker.errors.APIError) as ei:
        api.kill(run_name, signal="SIGNOPE")
    assert ei.value.response.status_code == 400


def test_failed_start_leaves_nothing(docker_cli: Runner, busybox: str, daemon: Daemon, unique, made):
    name = unique("missing")
    made.append(name)
    r = docker_cli("run", "--name", name, busybox, "/no/such/cmd", check=False)
    assert r.returncode == 127
    assert "no such file or directory" in r.stderr or "not found" in r.stderr
    i = inspect(docker_cli, name)
    assert i["State"]["Status"] in ("created", "exited") and i["State"]["ExitCode"] == 127
    assert not i["State"]["Running"]
    assert_no_leftovers(daemon, i["Id"], bundle_too=False)
    assert not (daemon.data_root / "containers" / i["Id"] / "rootfs").is_mount()
    # a later start fails the same way and still leaves nothing running
    assert docker_cli("start", name, check=False).returncode != 0
    assert_no_leftovers(daemon, i["Id"], bundle_too=False)
    docker_cli("rm", name)
    assert_no_leftovers(daemon, i["Id"])
    # --rm: the container is removed too
    before = bundles(daemon)
    r = docker_cli("run", "--rm", busybox, "nosuchcommand", check=False)
    assert r.returncode == 127
    wait_for(lambda: bundles(daemon) <= before, what="--rm container gone")
    # not executable -> 126
    r = docker_cli("run", "--rm", busybox, "/etc/passwd", check=False)
    assert r.returncode == 126
    # a working directory that cannot be made is a clear 400, not a 500
    r = docker_cli("run", "--rm", "-w", "/etc/passwd", busybox, "true", check=False)
    assert r.returncode == 125 and "not a directory" in r.stderr and "internal" not in r.stderr
    wait_for(lambda: bundles(daemon) <= before, what="--rm container gone")


def test_seccomp_filter_is_on_by_default(docker_cli: Runner, busybox: str):
    def seccomp_mode(*flags: str) -> str:
        out = docker_cli("run", "--rm", *flags, busybox, "grep", "^Seccomp:", "/proc/self/status").stdout
        return out.split()[1]

    assert seccomp_mode() == "2"  # a filter is installed
    # reading the clock's state is allowed, as in Docker's profile (busybox adjtimex uses clock_adjtime)
    assert "offset" in docker_cli("run", "--rm", busybox, "adjtimex").stdout
    assert seccomp_mode("--security-opt", "seccomp=unconfined") == "0"
    assert seccomp_mode("--privileged") == "0"
    # a user namespace needs no capability: only the profile stops unshare(CLONE_NEWUSER)
    res = docker_cli("run", "--rm", busybox, "unshare", "-U", "true", check=False)
    assert res.returncode != 0 and "Operation not permitted" in res.stderr
    ok = docker_cli("run", "--rm", "--security-opt", "seccomp=unconfined", busybox, "unshare", "-U", "true")
    assert ok.returncode == 0
    # as in Docker, CAP_SYS_ADMIN opens the namespace syscalls in the profile
    ok = docker_cli("run", "--rm", "--cap-add", "SYS_ADMIN", busybox, "unshare", "-m", "true")
    assert ok.returncode == 0
