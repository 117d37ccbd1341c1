"""The removing and dead states as users see them: a removal in progress shows in inspect
and `ps` ("Removal In Progress"); a daemon killed during it leaves the container Dead
("Dead" in ps, `start` refused) and `rm` finishes the job."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from tests.conftest import Daemon, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlayfs, runc)")


def test_removing_then_dead_after_a_daemon_kill(own_daemon: Daemon) -> None:
    env = {**os.environ, "DOCKER_HOST": own_daemon.host}

    def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=False, env=env)
        if check and r.returncode:
            raise AssertionError(f"docker {args} exited {r.returncode}: {r.stderr}")
        return r

    def status() -> str:
        return str(json.loads(cli("inspect", "big").stdout)[0]["State"]["Status"])

    def ps_status() -> str:
        return cli("ps", "-a", "--filter", "name=big", "--format", "{{.Status}}").stdout.strip()

    # many files in the container's upper dir make its removal take a while
    cli("run", "--name", "big", "busybox", "sh", "-c", "mkdir /d && cd /d && seq 150000 | xargs touch")
    rm = subprocess.Popen(["docker", "rm", "big"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: status() == "removing", timeout=20, what="the removal to show")
        seen = ps_status()
        own_daemon.stop(signal.SIGKILL)
    finally:
        rm.wait(timeout=60)
    assert seen == "Removal In Progress"
    own_daemon.start()
    c = json.loads(cli("inspect", "big").stdout)[0]
    assert c["State"]["Status"] == "dead" and c["State"]["Dead"] and not c["State"]["Running"]
    assert ps_status() == "Dead"
    assert "big" in cli("ps", "-a", "--filter", "status=dead", "--format", "{{.Names}}").stdout
    r = cli("start", "big", check=False)
    assert r.returncode != 0 and "container is marked for removal and cannot be started" in r.stderr
    cli("rm", "big")
    assert cli("ps", "-aq").stdout.strip() == ""
