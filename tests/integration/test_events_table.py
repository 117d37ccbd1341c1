"""Events as dockerd publishes them: the same commands on both daemons publish the same events
(type, action, attribute names and values; ids and times aside), and `docker events --filter
type=... --filter event=...` finds each of them.

`tests/fixtures/events-dockerd-28.jsonl` is what Debian's dockerd 28.2 published for
`_scenario` (recorded through conftest's `real_docker`, 2026-12-05); `test_events_as_dockerd`
runs the scenario on a live dockerd again, so a new dockerd shows its differences."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

Cli = Callable[..., "subprocess.CompletedProcess[str]"]
RECORDED = Path(__file__).parent.parent / "fixtures" / "events-dockerd-28.jsonl"


def _scenario(cli: Cli, tmp: Path) -> None:
    """Every action a CLI user causes without a terminal, in one order; names are fixed
    (each daemon has its own)."""
    cli("network", "create", "evnet")
    cli("network", "create", "evnet2")
    cli("volume", "create", "evvol")
    cli("create", "--name", "evc", "--network", "evnet", "-v", "evvol:/data", "--label", "evl=1",
        "busybox", "sleep", "300")  # fmt: skip
    cli("start", "evc")
    cli("exec", "evc", "true")
    cli("pause", "evc")
    cli("unpause", "evc")
    cli("top", "evc")
    cli("rename", "evc", "evc2")
    cli("update", "--cpu-shares", "512", "evc2")
    cli("cp", "evc2:/etc/hostname", str(tmp / "hn"))
    cli("cp", str(tmp / "hn"), "evc2:/tmp/hn")
    cli("export", "-o", str(tmp / "exp.tar"), "evc2")
    cli("commit", "evc2", "evimg:c")
    cli("tag", "busybox", "evimg:t")
    cli("rmi", "evimg:t")
    cli("rmi", "evimg:c")
    cli("kill", "-s", "USR1", "evc2")
    cli("network", "connect", "evnet2", "evc2")
    cli("network", "disconnect", "evnet2", "evc2")
    cli("stop", "-t", "1", "evc2")
    cli("restart", "-t", "1", "evc2")
    cli("rm", "-f", "evc2")
    cli("save", "-o", str(tmp / "bb.tar"), "busybox")
    cli("load", "-i", str(tmp / "bb.tar"))
    cli("import", str(tmp / "exp.tar"), "evimg:i")
    cli("rmi", "evimg:i")
    cli("volume", "rm", "evvol")
    cli("network", "rm", "evnet")
    cli("network", "rm", "evnet2")


def _normal(ev: dict) -> str:
    def norm(v: str) -> str:
        return re.sub(r"\b[0-9a-f]{64}\b", "<id>", re.sub(r"sha256:[0-9a-f]{64}", "<digest>", v))

    attrs = {k: norm(v) for k, v in sorted(ev["Actor"]["Attributes"].items())}
    return json.dumps({"Type": ev["Type"], "Action": norm(ev["Action"]), "Attributes": attrs}, sort_keys=True)


def _collect(cli: Cli) -> tuple[list[str], str, str]:
    """The normalised events of one run of the scenario, and its time window. dockerd's
    `network disconnect` publishes `disconnect` twice: runs of one event count once."""
    with tempfile.TemporaryDirectory() as tmp:
        time.sleep(0.01)  # the busybox fixture's events stay out of the window
        since = f"{time.time():.3f}"
        try:
            _scenario(cli, Path(tmp))
        finally:
            for args in (("rm", "-f", "evc", "evc2"), ("rmi", "evimg:c", "evimg:t", "evimg:i"),
                         ("volume", "rm", "evvol"), ("network", "rm", "evnet", "evnet2")):  # fmt: skip
                cli(*args, check=False)
        until = f"{time.time() + 0.5:.3f}"
    out = cli("events", "--since", since, "--until", until, "--format", "{{json .}}").stdout
    evs: list[str] = []
    for line in out.splitlines():
        ev = _normal(json.loads(line))
        if not evs or evs[-1] != ev:
            evs.append(ev)
    return evs, since, until


@pytest.fixture(scope="module")
def ours(docker_cli: Cli, busybox: str) -> tuple[list[str], str, str]:
    return _collect(docker_cli)


def test_events_as_recorded_from_dockerd(ours):
    assert ours[0] == RECORDED.read_text().splitlines()


@pytest.mark.parametrize("typ_action", sorted({(json.loads(e)["Type"], json.loads(e)["Action"])
                                               for e in RECORDED.read_text().splitlines()}))  # fmt: skip
def test_events_filter_finds_each(ours, docker_cli: Cli, typ_action: tuple[str, str]):
    typ, action = typ_action
    _, since, until = ours
    event = action.split(":")[0]  # `exec_create: true `: users filter on `exec_create`
    by_name = {"network": ["--filter", "network=evnet"], "volume": ["--filter", "volume=evvol"]}.get(typ, [])
    out = docker_cli("events", "--since", since, "--until", until, "--filter", f"type={typ}",
                     "--filter", f"event={event}", *by_name, "--format", "{{json .}}").stdout  # fmt: skip
    got = [json.loads(line) for line in out.splitlines()]
    assert got and all((e["Type"], e["Action"]) == (typ, action) for e in got), got


def test_events_as_dockerd(ours, real_docker):
    theirs, _, _ = _collect(real_docker.cli)
    assert ours[0] == theirs


def test_attach_resize_detach_events(docker_py: docker.DockerClient, busybox: str, unique):
    """The terminal events, through docker-py: attach, resize (with the size), detach (the
    detach keys)."""
    api = docker_py.api
    name = unique("evtty")
    since = time.time() - 0.5
    c = api.create_container(busybox, "sh", name=name, tty=True, stdin_open=True)
    try:
        api.start(c)
        api.resize(c, 20, 80)
        sock = api.attach_socket(c, params={"stdin": 1, "stdout": 1, "stream": 1})
        raw = getattr(sock, "_sock", sock)
        raw.sendall(b"\x10\x11")  # ctrl-p ctrl-q
        raw.settimeout(10)
        while raw.recv(4096):
            pass
        sock.close()
        until = time.time() + 1
        time.sleep(0.5)
        evs = list(api.events(since=since, until=until, decode=True, filters={"container": name}))
        acts = [(e["Action"], {k: v for k, v in e["Actor"]["Attributes"].items() if k in ("height", "width")})
                for e in evs]  # fmt: skip
        assert ("resize", {"height": "20", "width": "80"}) in acts, acts
        names = [a for a, _ in acts]
        assert names.index("attach") < names.index("detach"), names
        assert api.inspect_container(c)["State"]["Running"]  # detached, not stopped
    finally:
        api.remove_container(c, force=True)
