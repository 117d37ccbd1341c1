"""Log drivers: json-file's max-size bounds the log file (it starts over, as Docker's
rotation with max-file=1) while `logs -f` keeps following, `none` keeps no log and
`docker logs` answers Docker's error, and what cannot be honoured is refused at create."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Runner, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlayfs, runc)")


def test_max_size_bounds_the_log(docker_cli: Runner, busybox: str, unique: Callable[[str], str]) -> None:
    name = unique("maxsize")
    script = "i=0; while [ $i -lt 400 ]; do echo line$i; i=$((i+1)); done; echo last; sleep 1000"
    docker_cli("run", "-d", "--name", name, "--log-opt", "max-size=2k", "--log-opt", "max-file=1", busybox,
               "sh", "-c", script)  # fmt: skip
    try:
        c = json.loads(docker_cli("inspect", name).stdout)[0]
        assert c["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "2k", "max-file": "1"}}
        log = Path(c["LogPath"])
        wait_for(lambda: "last" in docker_cli("logs", name).stdout, timeout=20, what="the last line")
        assert log.stat().st_size <= 2048
        out = docker_cli("logs", name).stdout.split()
        assert "line0" not in out and out[-1] == "last"
    finally:
        docker_cli("rm", "-f", name)


def test_follow_goes_on_when_the_log_starts_over(docker_cli: Runner, busybox: str, unique: Callable[[str], str]) -> None:
    name = unique("follow")
    script = "sleep 1; i=0; while [ $i -lt 300 ]; do echo line$i; i=$((i+1)); done; echo done-writing"
    docker_cli("run", "-d", "--name", name, "--log-opt", "max-size=1k", busybox, "sh", "-c", script)
    try:
        out = docker_cli("logs", "-f", name, timeout=30).stdout.split()
        # a follower slower than the writer misses what a file held before it started over
        # (as with Docker's max-file=1), but it follows into the new file to the end
        assert out[-1] == "done-writing", out
        numbers = [int(x[4:]) for x in out[:-1]]
        assert numbers == sorted(numbers) and numbers[-1] == 299
    finally:
        docker_cli("rm", "-f", name)


def test_none_driver(docker_cli: Runner, busybox: str, unique: Callable[[str], str]) -> None:
    name = unique("nolog")
    docker_cli("run", "-d", "--name", name, "--log-driver", "none", busybox, "sh", "-c", "echo secret; sleep 1000")
    try:
        c = json.loads(docker_cli("inspect", name).stdout)[0]
        assert c["HostConfig"]["LogConfig"]["Type"] == "none" and c["LogPath"] == ""
        r = docker_cli("logs", name, check=False)
        assert r.returncode != 0 and "configured logging driver does not support reading" in r.stderr
        bundle = Path(c["ResolvConfPath"]).parent
        assert not (bundle / "ctr.log").exists()
        # attached output still reaches its client
        r = docker_cli("run", "--rm", "--log-driver", "none", busybox, "echo", "attached")
        assert r.stdout.strip() == "attached"
    finally:
        docker_cli("rm", "-f", name)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--log-driver", "syslog"], "logger: no log driver named 'syslog' is registered"),
     (["--log-opt", "max-bogus=1"], "unknown log opt 'max-bogus' for json-file log driver"),
     (["--log-opt", "max-file=0"], "max-file cannot be less than 1"),
     (["--log-opt", "max-size=lots"], "invalid size: 'lots'"),
     (["--log-opt", "labels=a"], "log opt 'labels' of the json-file log driver is not supported"),
     (["--log-driver", "local"], "the local log driver is not supported")],
)  # fmt: skip
def test_refused_at_create(docker_cli: Runner, busybox: str, args: list[str], message: str) -> None:
    r = docker_cli("create", *args, busybox, "true", check=False)
    assert r.returncode != 0 and message in r.stderr, r.stderr


def test_daemon_json_log_opts_are_the_default(tmp_path: Path) -> None:
    from tests.conftest import destroy_daemon, import_busybox, make_daemon, write_daemon_json

    d = make_daemon()
    try:
        write_daemon_json(d.root, {"log-opts": {"max-size": "3k"}})
        d.stop()
        d.start()
        import_busybox(d.host)
        env = {**os.environ, "DOCKER_HOST": d.host}
        out = subprocess.run(
            ["docker", "create", "--name", "c1", "busybox", "true"], capture_output=True, text=True, env=env, check=True
        )
        assert out.returncode == 0
        c = json.loads(subprocess.run(["docker", "inspect", "c1"], capture_output=True, text=True, env=env,
                                      check=True).stdout)[0]  # fmt: skip
        assert c["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "3k"}}
        # a daemon.json setting that cannot be honoured stops the daemon from starting
        write_daemon_json(d.root, {"log-driver": "syslog"})
        d.stop()
        r = subprocess.run([*d.proc.args], capture_output=True, text=True, timeout=60)  # type: ignore[misc]
        assert r.returncode != 0 and "logger: no log driver named 'syslog' is registered" in r.stderr
        write_daemon_json(d.root, {})
        d.start()
    finally:
        destroy_daemon(d)


def test_max_file_keeps_the_older_files(docker_cli: Runner, busybox: str, unique: Callable[[str], str]) -> None:
    name = unique("maxfile")
    # about 40 lines fill 2k; written slowly enough for the rotation to see every new file
    script = "i=0; while [ $i -lt 150 ]; do echo line$i; i=$((i+1)); sleep 0.01; done; echo last; sleep 1000"
    docker_cli("run", "-d", "--name", name, "--log-opt", "max-size=2k", "--log-opt", "max-file=3", busybox,
               "sh", "-c", script)  # fmt: skip
    try:
        log = Path(json.loads(docker_cli("inspect", name).stdout)[0]["LogPath"])
        wait_for(lambda: "last" in docker_cli("logs", "--tail", "1", name).stdout, timeout=30, what="the last line")
        files = sorted(p.name for p in log.parent.iterdir() if p.name.startswith("ctr.log"))
        assert files == ["ctr.log", "ctr.log.1", "ctr.log.2", "ctr.log.cur"], files
        assert all((log.parent / f).stat().st_size <= 2048 for f in files)
        out = docker_cli("logs", name).stdout.split()
        numbers = [int(x[4:]) for x in out[:-1]]
        assert out[-1] == "last" and numbers == list(range(numbers[0], 150)) and numbers[0] > 0, out
        tail = docker_cli("logs", "--tail", "50", name).stdout.split()  # across the files
        assert len(tail) == 50 and tail == out[-50:]
    finally:
        docker_cli("rm", "-f", name)
