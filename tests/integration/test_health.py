"""Healthchecks through the docker CLI, docker-py and `dockyard`: starting → unhealthy →
healthy with a short interval, `ps` texts and the `health=` filter, `health_status`
events, a probe killed at its timeout with nothing left running, HEALTHCHECK from a
Dockerfile (and NONE, and --no-healthcheck), and probing resumed after a daemon kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.conftest import Daemon, Runner, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlayfs, runc)")


def health(cli: Runner, name: str) -> dict[str, Any] | None:
    return json.loads(cli("inspect", name).stdout)[0]["State"].get("Health")  # type: ignore[no-any-return]


def status_is(cli: Runner, name: str, want: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        h = health(cli, name)
        return h if h and h["Status"] == want else None

    return check


def ps(cli: Runner, *filters: str) -> str:
    args = [a for f in filters for a in ("--filter", f)]
    return cli("ps", *args, "--format", "{{.Names}} {{.Status}}").stdout


def test_unhealthy_then_healthy(docker_cli: Runner, busybox: str, unique: Callable[[str], str]) -> None:
    name = unique("hc")
    t0 = time.time()
    docker_cli(
        "run", "-d", "--name", name, "--health-cmd", "echo probing; test -f /tmp/ok", "--health-interval", "200ms",
        "--health-retries", "2", "--health-timeout", "5s", busybox, "sleep", "1000",
    )  # fmt: skip
    try:
        h = health(docker_cli, name)
        assert h is not None and h["Status"] in ("starting", "unhealthy")
        cfg = json.loads(docker_cli("inspect", name).stdout)[0]["Config"]["Healthcheck"]
        assert cfg == {"Test": ["CMD-SHELL", "echo probing; test -f /tmp/ok"], "Interval": 200_000_000,
                       "Timeout": 5_000_000_000, "Retries": 2}  # fmt: skip
        h = wait_for(status_is(docker_cli, name, "unhealthy"), timeout=20, what="unhealthy")
        assert h["FailingStreak"] >= 2
        last = h["Log"][-1]
        assert last["ExitCode"] == 1 and last["Output"] == "probing\n" and last["Start"] <= last["End"]
        assert f"{name} Up" in ps(docker_cli, f"name={name}") and "(unhealthy)" in ps(docker_cli, f"name={name}")
        assert name in ps(docker_cli, "health=unhealthy") and name not in ps(docker_cli, "health=healthy")
        docker_cli("exec", name, "touch", "/tmp/ok")
        h = wait_for(status_is(docker_cli, name, "healthy"), timeout=20, what="healthy")
        assert h["FailingStreak"] == 0
        wait_for(lambda: len(health(docker_cli, name)["Log"]) == 5, timeout=20, what="five log entries")  # type: ignore[index]
        assert f"{name} Up" in ps(docker_cli, "health=healthy") and "(healthy)" in ps(docker_cli, f"name={name}")
        bad = docker_cli("ps", "--filter", "health=sick", check=False)
        assert bad.returncode != 0 and "Unrecognised filter value for health: sick" in bad.stderr
        actions = docker_cli(
            "events", "--since", f"{t0:.3f}", "--until", f"{time.time():.3f}", "--filter", f"container={name}",
            "--filter", "event=health_status", "--format", "{{.Action}}",
        ).stdout.split("\n")  # fmt: skip
        assert [a for a in actions if a][:2] == ["health_status: unhealthy", "health_status: healthy"]
    finally:
        docker_cli("rm", "-f", name)


def test_starting_until_the_first_probe(docker_cli: Runner, busybox: str, unique: Callable[[str], str]) -> None:
    name = unique("starting")
    docker_cli("run", "-d", "--name", name, "--health-cmd", "true", "--health-interval", "1h", busybox, "sleep", "1000")
    try:
        assert health(docker_cli, name) == {"Status": "starting", "FailingStreak": 0, "Log": []}
        assert "(health: starting)" in ps(docker_cli, f"name={name}")
        assert name in ps(docker_cli, "health=starting") and name not in ps(docker_cli, "health=none")
    finally:
        docker_cli("rm", "-f", name)


def test_paused_container_is_not_probed(docker_cli: Runner, busybox: str, unique: Callable[[str], str]) -> None:
    name = unique("paused")
    docker_cli("run", "-d", "--name", name, "--health-cmd", "true", "--health-interval", "100ms", "--health-retries",
               "1", busybox, "sleep", "1000")  # fmt: skip
    try:
        wait_for(status_is(docker_cli, name, "healthy"), timeout=20, what="healthy")
        docker_cli("pause", name)
        t = time.time() + 0.3  # a probe already under way may still end after the pause
        probes = docker_cli("events", "--since", f"{t:.3f}", "--until", f"{t + 1.2:.3f}", "--filter",
                            f"container={name}", "--format", "{{.Action}}").stdout  # fmt: skip
        assert "exec_start" not in probes, probes
        assert health(docker_cli, name)["Status"] == "healthy"  # type: ignore[index]
        docker_cli("unpause", name)
        t = time.time()
        wait_for(lambda: "exec_start" in docker_cli("events", "--since", f"{t:.3f}", "--until", f"{time.time():.3f}",
                                                    "--filter", f"container={name}").stdout,
                 timeout=20, what="probes after unpause")  # fmt: skip
    finally:
        docker_cli("rm", "-f", name)


def test_probe_killed_at_timeout_leaves_no_process(
    docker_cli: Runner, busybox: str, unique: Callable[[str], str]
) -> None:
    name = unique("slow")
    # the first probe hangs (in a child of its shell), every later one passes at once
    probe = "[ -f /tmp/once ] && exit 0; touch /tmp/once; echo hanging; sleep 77; echo never"
    docker_cli(
        "run", "-d", "--name", name, "--health-cmd", probe, "--health-interval", "300ms",
        "--health-timeout", "500ms", busybox, "sleep", "1000",
    )  # fmt: skip
    try:
        h = wait_for(status_is(docker_cli, name, "healthy"), timeout=20, what="healthy after the timed-out probe")
        first = h["Log"][0]
        assert first["ExitCode"] == -1
        assert first["Output"] == "Health check exceeded timeout (500ms): hanging\n"
        top = docker_cli("top", name).stdout
        assert "sleep 77" not in top, top
        pid = json.loads(docker_cli("inspect", name).stdout)[0]["State"]["Pid"]
        ns = os.readlink(f"/proc/{pid}/ns/pid")
        left = []
        for p in Path("/proc").iterdir():
            try:
                if p.name.isdigit() and os.readlink(p / "ns" / "pid") == ns:
                    left.append((p / "cmdline").read_bytes().replace(b"\0", b" ").strip())
            except OSError:
                continue
        assert not [c for c in left if c.startswith(b"sleep 77")], left
    finally:
        docker_cli("rm", "-f", name)


def test_dockerfile_healthcheck_none_and_no_healthcheck(
    docker_cli: Runner, busybox: str, tmp_path: Path, unique: Callable[[str], str]
) -> None:
    tag, child = unique("hcimg"), unique("hcnone")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "Dockerfile").write_text(
        f"FROM {busybox}\nHEALTHCHECK --interval=200ms --retries=1 CMD test -f /tmp/ok || exit 1\n"
    )
    (tmp_path / "b").mkdir()
    # a RUN step outlasting the inherited interval is not probed
    (tmp_path / "b" / "Dockerfile").write_text(f"FROM {tag}\nRUN sleep 1\nHEALTHCHECK NONE\n")
    names = [unique("c1"), unique("c2"), unique("c3")]
    try:
        docker_cli("build", "-q", "-t", tag, str(tmp_path / "a"), timeout=120)
        t0 = time.time()
        docker_cli("build", "-q", "-t", child, str(tmp_path / "b"), timeout=120)
        during = docker_cli("events", "--since", f"{t0:.3f}", "--until", f"{time.time():.3f}", "--filter",
                            "event=exec_start", "--format", "{{.Action}}").stdout  # fmt: skip
        assert during.strip() == "", during
        img = json.loads(docker_cli("image", "inspect", tag).stdout)[0]["Config"]["Healthcheck"]
        assert img == {"Test": ["CMD-SHELL", "test -f /tmp/ok || exit 1"], "Interval": 200_000_000, "Retries": 1}
        docker_cli("run", "-d", "--name", names[0], tag, "sleep", "1000")
        wait_for(status_is(docker_cli, names[0], "unhealthy"), timeout=20, what="image's healthcheck to fail")
        docker_cli("exec", names[0], "touch", "/tmp/ok")
        wait_for(status_is(docker_cli, names[0], "healthy"), timeout=20, what="image's healthcheck to pass")
        docker_cli("run", "-d", "--name", names[1], child, "sleep", "1000")
        docker_cli("run", "-d", "--name", names[2], "--no-healthcheck", tag, "sleep", "1000")
        for n in names[1:]:
            assert health(docker_cli, n) is None
            assert name_status(docker_cli, n).startswith("Up") and "health" not in name_status(docker_cli, n)
        assert names[1] in ps(docker_cli, "health=none")
    finally:
        docker_cli("rm", "-f", *names, check=False)
        docker_cli("rmi", child, tag, check=False)


def name_status(cli: Runner, name: str) -> str:
    return cli("ps", "--filter", f"name={name}", "--format", "{{.Status}}").stdout.strip()


def test_docker_py_and_dockyard(
    docker_py: docker.DockerClient, dockyard_cli: Runner, busybox: str, unique: Callable[[str], str]
) -> None:
    c = docker_py.containers.run(
        busybox, ["sleep", "1000"], name=unique("py"), detach=True,
        healthcheck={"Test": ["CMD", "true"], "Interval": 100_000_000, "StartPeriod": 10_000_000_000,
                     "StartInterval": 50_000_000},
    )  # fmt: skip
    name = unique("dy")
    try:
        def healthy() -> bool:
            c.reload()
            return bool(c.attrs["State"]["Health"]["Status"] == "healthy")

        wait_for(healthy, timeout=20, what="docker-py container healthy")
        with pytest.raises(docker.errors.APIError) as err:
            docker_py.containers.create(busybox, "true", healthcheck={"Test": ["CMD", "true"], "Interval": 1000})
        assert err.value.status_code == 400 and "Interval in Healthcheck cannot be less than 1ms" in str(err.value)
        dockyard_cli("run", "-d", "--name", name, "--health-cmd", "exit 1", "--health-interval", "100ms",
                     "--health-retries", "1", busybox, "sleep", "1000")  # fmt: skip
        wait_for(status_is(dockyard_cli, name, "unhealthy"), timeout=20, what="dockyard CLI container unhealthy")
    finally:
        c.remove(force=True)
        dockyard_cli("rm", "-f", name, check=False)


def test_probing_resumes_after_daemon_kill(own_daemon: Daemon) -> None:
    def cli(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False,
                           env={**os.environ, "DOCKER_HOST": own_daemon.host})  # fmt: skip
        if check and r.returncode:
            raise AssertionError(f"docker {args} exited {r.returncode}: {r.stderr}")
        return r

    cli("run", "-d", "--name", "hc1", "--health-cmd", "test -f /tmp/ok", "--health-interval", "200ms",
        "--health-retries", "1", "busybox", "sh", "-c", "touch /tmp/ok; sleep 1000")  # fmt: skip
    wait_for(status_is(cli, "hc1", "healthy"), timeout=20, what="healthy")
    own_daemon.stop(signal.SIGKILL)
    own_daemon.start()
    # Docker resets an adopted container's health to starting; the next probe decides
    assert health(cli, "hc1")["Status"] in ("starting", "healthy")  # type: ignore[index]
    wait_for(status_is(cli, "hc1", "healthy"), timeout=20, what="healthy again")
    cli("exec", "hc1", "rm", "/tmp/ok")
    h = wait_for(status_is(cli, "hc1", "unhealthy"), timeout=20, what="unhealthy after the restart")
    assert h["Log"][-1]["ExitCode"] == 1
