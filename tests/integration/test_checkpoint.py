"""Checkpoint and restore (Docker's experimental checkpoint API) through real clients.

A busybox container counts: each number goes to its stdout (a pipe held by conmon, so the
container's log) and to /count in its writable layer. The docker CLI checkpoints it with
and without --leave-running, lists and removes checkpoints, and `docker start
--checkpoint` restores it: the count goes on from where the checkpoint was taken, in the
same log. docker-py drives the same routes over HTTP. Refusals carry Docker's status and
words. The CRIU installer (scripts/install-criu.sh) is checked too: a good criu is left
alone, a missing or too old one is replaced from the cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.conftest import REPO, Daemon, Runner, wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (runc, CRIU)"),
    pytest.mark.skipif(
        not (os.access("/usr/local/sbin/criu", os.X_OK) or shutil.which("criu")),
        reason="no criu: run scripts/install-criu.sh (make deps does)",
    ),
]

COUNTER = "i=0; while true; do i=$((i+1)); echo $i; echo $i > /count; sleep 0.1; done"


@pytest.fixture
def made(docker_cli: Runner) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for n in reversed(names):
        docker_cli("rm", "-f", n, check=False)


def _count(docker_cli: Runner, name: str) -> int:
    return int(docker_cli("exec", name, "cat", "/count").stdout.strip() or 0)


def _numbers(docker_cli: Runner, name: str) -> list[int]:
    return [int(x) for x in docker_cli("logs", name).stdout.split()]


def _start_counter(docker_cli: Runner, busybox: str, name: str, *extra: str) -> None:
    docker_cli("run", "-d", "--name", name, *extra, busybox, "sh", "-c", COUNTER)
    wait_for(lambda: _count(docker_cli, name) >= 5, what="the counter to reach 5")


def _checkpoint_files(daemon: Daemon, cid: str) -> list[str]:
    root = daemon.data_root / "containers" / cid / "checkpoints"
    return sorted(os.listdir(root)) if root.exists() else []


def test_criu_installer_is_idempotent_and_criu_check_passes() -> None:
    t0 = time.monotonic()
    res = subprocess.run(
        [str(REPO / "scripts" / "install-criu.sh")], capture_output=True, text=True, timeout=300, check=False
    )
    assert res.returncode == 0, res.stderr
    assert "nothing to do" in res.stderr
    assert time.monotonic() - t0 < 10
    criu = shutil.which("criu") or "/usr/local/sbin/criu"
    assert subprocess.run([criu, "check"], capture_output=True, timeout=60, check=False).returncode == 0


def test_criu_installer_replaces_a_too_old_criu(tmp_path: Path) -> None:
    """An old criu first on the PATH (a stand-in saying 3.17) and an empty prefix: the
    script installs a good one there, from the cached build."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "criu").write_text("#!/bin/sh\necho 'Version: 3.17'\nexit 1\n")
    (fake / "criu").chmod(0o755)
    prefix = tmp_path / "sbin"
    env = {**os.environ, "PATH": f"{fake}:/usr/sbin:/usr/bin:/sbin:/bin", "CRIU_PREFIX": str(prefix)}
    res = subprocess.run(
        [str(REPO / "scripts" / "install-criu.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    out = subprocess.run(
        [str(prefix / "criu"), "--version"], capture_output=True, text=True, check=False
    ).stdout
    assert "Version: 4." in out
    assert subprocess.run([str(prefix / "criu"), "check"], capture_output=True, check=False).returncode == 0


def test_daemon_reports_experimental(docker_cli: Runner) -> None:
    assert docker_cli("version", "--format", "{{.Server.Experimental}}").stdout.strip() == "true"
    assert "checkpoint" in docker_cli("--help").stdout


def test_checkpoint_exit_then_start_continues_the_count(
    daemon: Daemon, docker_cli: Runner, busybox: str, unique, made: list[str]
) -> None:
    name = unique("cp")
    made.append(name)
    _start_counter(docker_cli, busybox, name)
    cid = docker_cli("inspect", "-f", "{{.Id}}", name).stdout.strip()
    docker_cli("checkpoint", "create", name, "cp1")
    assert docker_cli("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "false"
    stopped_at = _numbers(docker_cli, name)
    assert stopped_at == list(range(1, len(stopped_at) + 1))
    assert docker_cli("checkpoint", "ls", name).stdout.split() == ["CHECKPOINT", "NAME", "cp1"]

    docker_cli("start", "--checkpoint", "cp1", name)
    assert docker_cli("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"
    last = stopped_at[-1]
    wait_for(lambda: _count(docker_cli, name) >= last + 5, what="the restored counter to go on")
    numbers = _numbers(docker_cli, name)
    # one log, one sequence: no restart from 1, no gap, no repeat
    assert numbers[: len(stopped_at)] == stopped_at
    assert numbers == list(range(1, len(numbers) + 1))

    docker_cli("checkpoint", "rm", name, "cp1")
    assert docker_cli("checkpoint", "ls", name).stdout.split() == ["CHECKPOINT", "NAME"]
    assert _checkpoint_files(daemon, cid) == []


def test_checkpoint_leave_running_and_custom_dir(
    daemon: Daemon, docker_cli: Runner, busybox: str, unique, made: list[str]
) -> None:
    name = unique("cplr")
    made.append(name)
    _start_counter(docker_cli, busybox, name)
    cpdir = tempfile.mkdtemp(prefix="dy-cp-")
    try:
        before = _count(docker_cli, name)
        docker_cli("checkpoint", "create", "--leave-running", "--checkpoint-dir", cpdir, name, "snap")
        after = _count(docker_cli, name)
        assert docker_cli("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"
        assert sorted(os.listdir(cpdir)) == ["snap"]
        assert sorted(os.listdir(Path(cpdir) / "snap")) == ["config.json", "criu"]
        assert docker_cli("checkpoint", "ls", "--checkpoint-dir", cpdir, name).stdout.split()[-1] == "snap"
        assert docker_cli("checkpoint", "ls", name).stdout.split() == ["CHECKPOINT", "NAME"]
        wait_for(lambda: _count(docker_cli, name) >= after + 10, what="the counter to go on after the dump")

        docker_cli("stop", "-t", "1", name)
        docker_cli("start", "--checkpoint", "snap", "--checkpoint-dir", cpdir, name)
        # back in time: the restored process goes on from the checkpoint's number
        wait_for(lambda: _count(docker_cli, name) >= 1, what="the restored counter")
        first = _count(docker_cli, name)
        assert before <= first <= after + 3, (before, first, after)
        docker_cli("checkpoint", "rm", "--checkpoint-dir", cpdir, name, "snap")
        assert os.listdir(cpdir) == []
    finally:
        shutil.rmtree(cpdir, ignore_errors=True)


def test_checkpoint_refusals(
    daemon: Daemon, docker_cli: Runner, busybox: str, unique, made: list[str]
) -> None:
    name = unique("cpno")
    made.append(name)
    docker_cli("create", "--name", name, busybox, "sleep", "60")
    res = docker_cli("checkpoint", "create", name, "c1", check=False)
    assert res.returncode != 0 and "is not running" in res.stderr

    docker_cli("start", name)
    docker_cli("checkpoint", "create", "--leave-running", name, "c1")
    res = docker_cli("checkpoint", "create", "--leave-running", name, "c1", check=False)
    assert res.returncode != 0 and "checkpoint with name c1 already exists" in res.stderr
    res = docker_cli("checkpoint", "create", "--leave-running", name, "../x", check=False)
    assert res.returncode != 0 and "Invalid checkpoint ID" in res.stderr

    docker_cli("stop", "-t", "0", name)
    res = docker_cli("start", "--checkpoint", "nope", name, check=False)
    assert res.returncode != 0 and "checkpoint nope does not exist" in res.stderr
    assert docker_cli("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "false"
    res = docker_cli("checkpoint", "rm", name, "nope", check=False)
    assert res.returncode != 0 and "checkpoint nope does not exist" in res.stderr
    docker_cli("checkpoint", "rm", name, "c1")

    tty = unique("cptty")
    made.append(tty)
    docker_cli("run", "-d", "-t", "--name", tty, busybox, "sleep", "60")
    res = docker_cli("checkpoint", "create", tty, "c1", check=False)
    assert res.returncode != 0 and "checkpoint not supported on containers with tty" in res.stderr
    assert docker_cli("inspect", "-f", "{{.State.Running}}", tty).stdout.strip() == "true"


def test_checkpoint_api_with_docker_py(
    daemon: Daemon, docker_cli: Runner, docker_py: docker.DockerClient, busybox: str, unique, made: list[str]
) -> None:
    name = unique("cpapi")
    made.append(name)
    _start_counter(docker_cli, busybox, name)
    api = docker_py.api
    events_since = int(time.time())
    res = api._post_json(
        api._url("/containers/{0}/checkpoints", name), data={"CheckpointID": "a1", "Exit": True}
    )
    assert res.status_code == 201, res.text
    assert api._get(api._url("/containers/{0}/checkpoints", name)).json() == [{"Name": "a1"}]
    res = api._post_json(api._url("/containers/{0}/checkpoints", name), data={"CheckpointID": "a2"})
    assert res.status_code == 409 and "is not running" in res.json()["message"]
    last = _numbers(docker_cli, name)[-1]
    res = api._post(api._url("/containers/{0}/start", name), params={"checkpoint": "a1"})
    assert res.status_code == 204, res.text
    wait_for(lambda: _count(docker_cli, name) > last + 2, what="the restored counter")
    assert _numbers(docker_cli, name)[last] == last + 1
    res = api._delete(api._url("/containers/{0}/checkpoints/{1}", name, "zz"))
    assert (
        res.status_code == 404
        and res.json()["message"] == f"checkpoint zz does not exist for container {name}"
    )
    res = api._delete(api._url("/containers/{0}/checkpoints/{1}", name, "a1"))
    assert res.status_code == 204
    events = api.events(since=events_since, until=int(time.time()) + 1, decode=True,
                        filters={"container": name, "event": "checkpoint"})  # fmt: skip
    assert [e["Action"] for e in events] == ["checkpoint"]


def test_failed_restore_leaves_the_container_stopped_and_startable(
    daemon: Daemon, docker_cli: Runner, busybox: str, unique, made: list[str]
) -> None:
    """A damaged checkpoint: the restore fails with CRIU's words, nothing of it stays
    behind (no conmon, no runtime state), and a plain start still works."""
    name = unique("cpbad")
    made.append(name)
    _start_counter(docker_cli, busybox, name)
    cid = docker_cli("inspect", "-f", "{{.Id}}", name).stdout.strip()
    docker_cli("checkpoint", "create", name, "bad")
    images = daemon.data_root / "containers" / cid / "checkpoints" / "bad" / "criu"
    pages = list(images.glob("pages-*.img"))
    assert pages, f"no memory pages in the checkpoint: {sorted(p.name for p in images.iterdir())}"
    for f in pages:
        f.unlink()
    res = docker_cli("start", "--checkpoint", "bad", name, check=False)
    assert res.returncode != 0 and "failed to restore container from checkpoint" in res.stderr, res.stderr
    assert docker_cli("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "false"
    runc_state = subprocess.run(
        ["runc", "--root", str(daemon.exec_root / "runtime" / "runc"), "state", cid], capture_output=True, check=False
    )
    assert runc_state.returncode != 0
    docker_cli("start", name)
    wait_for(lambda: _count(docker_cli, name) >= 1, what="a fresh start")
    docker_cli("checkpoint", "rm", name, "bad")
