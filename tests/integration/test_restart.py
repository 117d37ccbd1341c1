"""Restart policies through the docker CLI and docker-py: on-failure's count, always,
a user's stop ending the policy, `update --restart`, Docker's refusals, `restart`
events, and containers brought back when a killed daemon starts again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import docker
import pytest

from tests.conftest import Daemon, Runner, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlayfs, runc)")


def inspect(cli: Runner, name: str) -> dict[str, Any]:
    return json.loads(cli("inspect", name).stdout)[0]  # type: ignore[no-any-return]


def events(cli: Runner, name: str, since: float, until: float) -> list[str]:
    out = cli(
        "events", "--since", f"{since:.3f}", "--until", f"{until:.3f}", "--filter", f"container={name}",
        "--format", "{{.Action}}",
    ).stdout  # fmt: skip
    return out.split()


def test_on_failure_restarts_exactly_n_times(docker_cli: Runner, busybox: str, unique: Callable[[str], str]) -> None:
    name = unique("onfail")
    t0 = time.time()
    docker_cli("run", "-d", "--name", name, "--restart", "on-failure:2", busybox, "sh", "-c", "exit 3")
    try:
        # restarting with its last exit code in between, then exited for good after 1 + 2 runs
        c = wait_for(
            lambda: (i := inspect(docker_cli, name))["State"]["Status"] == "exited" and i["RestartCount"] == 2 and i,
            timeout=20, what="on-failure:2 to give up",
        )  # fmt: skip
        assert c["State"]["ExitCode"] == 3 and not c["State"]["Restarting"] and not c["State"]["Running"]
        assert c["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
        actions = events(docker_cli, name, t0, time.time())
        assert actions.count("die") == 3 and actions.count("start") == 3 and actions.count("restart") == 2, actions
    finally:
        docker_cli("rm", "-f", name)


def test_always_restarts_after_exit_0_and_stop_ends_it(
    docker_cli: Runner, busybox: str, unique: Callable[[str], str]
) -> None:
    name = unique("always")
    docker_cli("run", "-d", "--name", name, "--restart", "always", busybox, "sh", "-c", "sleep 0.2; exit 0")
    try:
        wait_for(lambda: inspect(docker_cli, name)["RestartCount"] >= 2, timeout=20, what="two restarts")
        docker_cli("stop", "-t", "1", name)
        stopped = inspect(docker_cli, name)
        assert stopped["State"]["Status"] == "exited" and not stopped["State"]["Restarting"]
        # no start may follow the stop: watch the events for longer than the back-off reached
        t = time.time()
        assert "start" not in events(docker_cli, name, t, t + 2.5)
        assert inspect(docker_cli, name)["State"]["Status"] == "exited"
        # the next start begins the policy again, from a RestartCount of 0
        docker_cli("start", name)
        assert inspect(docker_cli, name)["RestartCount"] == 0
        wait_for(lambda: inspect(docker_cli, name)["RestartCount"] >= 1, timeout=20, what="always after start")
    finally:
        docker_cli("rm", "-f", name)


def test_restarting_shows_in_ps_and_stop_cancels_the_pending_restart(
    docker_cli: Runner, busybox: str, unique: Callable[[str], str]
) -> None:
    name = unique("crashloop")
    docker_cli("run", "-d", "--name", name, "--restart", "always", busybox, "sh", "-c", "exit 3")
    try:
        def ps_status() -> str:
            return docker_cli("ps", "--filter", f"name={name}", "--format", "{{.Status}}").stdout.strip()

        # the back-off doubles, so the container soon waits long enough to be seen
        wait_for(lambda: ps_status().startswith("Restarting (3)"), timeout=20, what="ps to show Restarting (3)")
        c = wait_for(lambda: (i := inspect(docker_cli, name))["State"]["Status"] == "restarting" and i, timeout=20)
        assert c["State"]["Running"] and c["State"]["Restarting"] and c["State"]["Pid"] == 0
        assert "restarting" in docker_cli("ps", "--filter", "status=restarting", "--format", "{{.State}}").stdout
        rm = docker_cli("rm", name, check=False)
        assert rm.returncode != 0 and "container is restarting: stop the container before removing" in rm.stderr
        count = c["RestartCount"]
        docker_cli("stop", name)
        after = inspect(docker_cli, name)
        assert after["State"]["Status"] == "exited" and not after["State"]["Running"]
        t = time.time()
        assert "start" not in events(docker_cli, name, t, t + 2)
        assert inspect(docker_cli, name)["RestartCount"] == count
    finally:
        docker_cli("rm", "-f", name)


def test_kill_ends_the_policy(docker_cli: Runner, busybox: str, unique: Callable[[str], str]) -> None:
    name = unique("killed")
    docker_cli("run", "-d", "--name", name, "--restart", "unless-stopped", busybox, "sleep", "1000")
    try:
        docker_cli("kill", name)
        c = inspect(docker_cli, name)
        assert c["State"]["Status"] == "exited" and c["State"]["ExitCode"] == 137
        t = time.time()
        assert "start" not in events(docker_cli, name, t, t + 1.5)
    finally:
        docker_cli("rm", "-f", name)


def test_update_restart_policy(docker_cli: Runner, busybox: str, unique: Callable[[str], str]) -> None:
    name = unique("upd")
    # exits 5 once /tmp/go exists; the file stays in its root filesystem across restarts
    docker_cli("run", "-d", "--name", name, busybox, "sh", "-c", "while [ ! -f /tmp/go ]; do sleep 0.1; done; exit 5")
    try:
        docker_cli("update", "--restart", "on-failure:1", name)
        assert inspect(docker_cli, name)["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 1}
        docker_cli("update", "--memory", "64m", "--memory-swap", "128m", name)  # leaves the policy alone
        assert inspect(docker_cli, name)["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"
        docker_cli("exec", name, "touch", "/tmp/go")
        c = wait_for(
            lambda: (i := inspect(docker_cli, name))["State"]["Status"] == "exited" and i["RestartCount"] == 1 and i,
            timeout=20, what="one restart, then exited",
        )  # fmt: skip
        assert c["State"]["ExitCode"] == 5
        bad = docker_cli("update", "--restart", "always:3", name, check=False)
        assert bad.returncode != 0
        assert "maximum retry count can only be used with 'on-failure'" in bad.stderr
    finally:
        docker_cli("rm", "-f", name)


def test_refusals(docker_cli: Runner, docker_py: docker.DockerClient, busybox: str, unique: Callable[[str], str]) -> None:
    r = docker_cli("create", "--restart", "sometimes", busybox, check=False)
    assert r.returncode != 0
    assert (
        "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
        in r.stderr
    )
    r = docker_cli("run", "--rm", "--restart", "always", busybox, "true", check=False)
    assert r.returncode != 0  # the CLI refuses it itself; the daemon too, below
    with pytest.raises(docker.errors.APIError) as err:
        docker_py.api.create_container(
            busybox, "true", host_config=docker_py.api.create_host_config(auto_remove=True, restart_policy={"Name": "always"})
        )
    assert err.value.status_code == 400
    assert "can't create 'AutoRemove' container with restart policy" in str(err.value)
    with pytest.raises(docker.errors.APIError) as err:
        docker_py.api.create_container(
            busybox, "true", host_config={"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": -2}}
        )
    assert err.value.status_code == 400 and "maximum retry count cannot be negative" in str(err.value)
    name = unique("rm")
    docker_cli("run", "-d", "--rm", "--name", name, busybox, "sleep", "1000")
    try:
        r = docker_cli("update", "--restart", "always", name, check=False)
        assert r.returncode != 0
        assert "Restart policy cannot be updated because AutoRemove is enabled for the container" in r.stderr
    finally:
        docker_cli("rm", "-f", name, check=False)


def test_docker_py_restart_count(docker_py: docker.DockerClient, busybox: str, unique: Callable[[str], str]) -> None:
    c = docker_py.containers.run(
        busybox, ["sh", "-c", "exit 1"], name=unique("py"), detach=True,
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 1},
    )  # fmt: skip
    try:
        def done() -> bool:
            c.reload()
            return bool(c.status == "exited" and c.attrs["RestartCount"] == 1)

        wait_for(done, timeout=20, what="one restart")
    finally:
        c.remove(force=True)


# ---- across a daemon restart --------------------------------------------------------------


def _cli(d: Daemon) -> Runner:
    def run(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False,
            env={**os.environ, "DOCKER_HOST": d.host},
        )  # fmt: skip
        if check and r.returncode:
            raise AssertionError(f"docker {args} exited {r.returncode}: {r.stderr}")
        return r

    return run


def test_policies_after_daemon_kill(own_daemon: Daemon) -> None:
    cli = _cli(own_daemon)
    for name, policy in (("died", "always"), ("us-died", "unless-stopped"), ("kept", "unless-stopped"),
                         ("stopped-us", "unless-stopped"), ("stopped-always", "always"), ("none", "no")):  # fmt: skip
        cli("run", "-d", "--name", name, "--restart", policy, "busybox", "sleep", "1000")
    cli("stop", "-t", "0", "stopped-us", "stopped-always")
    kept_pid = inspect(cli, "kept")["State"]["Pid"]
    pids = {n: inspect(cli, n)["State"]["Pid"] for n in ("died", "us-died", "none")}
    own_daemon.stop(signal.SIGKILL)
    # three containers die while no daemon watches them
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in pids.values()))
    own_daemon.start()

    def restarted(name: str) -> dict | bool:
        i = inspect(cli, name)
        return i["State"]["Status"] == "running" and i["State"]["Pid"] != pids[name] and i

    for name in ("died", "us-died"):
        died = wait_for(
            lambda name=name: restarted(name),
            timeout=20, what=f"{name} to be restarted",
        )  # fmt: skip
        assert died["RestartCount"] == 1
    kept = inspect(cli, "kept")
    assert kept["State"]["Status"] == "running" and kept["State"]["Pid"] == kept_pid  # adopted, not restarted
    # Docker brings `always` back with the daemon even after a user's stop; `unless-stopped` not
    wait_for(lambda: inspect(cli, "stopped-always")["State"]["Status"] == "running", timeout=20)
    assert inspect(cli, "stopped-us")["State"]["Status"] == "exited"
    none = inspect(cli, "none")
    assert none["State"]["Status"] == "exited" and none["State"]["ExitCode"] == 137 and none["RestartCount"] == 0


def test_attached_run_returns_at_the_first_exit(docker_cli: Runner, busybox: str, unique: Callable[[str], str]) -> None:
    name = unique("attached")
    try:
        r = docker_cli("run", "--name", name, "--restart", "on-failure:1", busybox, "sh", "-c", "echo hi; exit 3",
                       check=False, timeout=30)  # fmt: skip
        assert r.returncode == 3 and "hi" in r.stdout
        wait_for(lambda: inspect(docker_cli, name)["RestartCount"] == 1, timeout=20, what="the policy's restart")
        assert docker_cli("wait", name).stdout.strip() == "3"
    finally:
        docker_cli("rm", "-f", name)


def test_dockyard_cli_run_and_update(dockyard_cli: Runner, busybox: str, unique: Callable[[str], str]) -> None:
    name = unique("dy")
    dockyard_cli("run", "-d", "--name", name, "--restart", "on-failure:1", busybox, "sh", "-c", "exit 4")
    try:
        c = wait_for(
            lambda: (i := inspect(dockyard_cli, name))["State"]["Status"] == "exited" and i["RestartCount"] == 1 and i,
            timeout=20, what="one restart",
        )  # fmt: skip
        assert c["State"]["ExitCode"] == 4
        dockyard_cli("update", "--restart", "unless-stopped", name)
        assert inspect(dockyard_cli, name)["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        r = dockyard_cli("run", "-d", "--restart", "sometimes", busybox, "true", check=False)
        assert r.returncode != 0 and "unknown policy 'sometimes'" in r.stderr + r.stdout
    finally:
        dockyard_cli("rm", "-f", name)
