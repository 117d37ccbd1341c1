"""daemon.json reloaded on SIGHUP, as dockerd: log level, default log options, labels and the
registry settings change in the running daemon (containers keep running), with a `reload`
event; a bad file keeps every old setting and the log says why."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Daemon, destroy_daemon, import_busybox, make_daemon, wait_for, write_daemon_json

_bridges: dict[object, str] = {}  # each daemon's own default bridge, kept by every rewrite


@pytest.fixture(scope="module")
def own() -> Iterator[Daemon]:
    d = make_daemon()
    import_busybox(d.host)
    _bridges[d.root] = json.loads((d.root / "daemon.json").read_text())["bridge"]
    yield d
    destroy_daemon(d)


def _cli(d: Daemon, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["docker", "-H", d.host, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert res.returncode == 0, (args, res.stdout, res.stderr)
    return res


def _hup(d: Daemon, settings: dict[str, object]) -> None:
    write_daemon_json(d.root, {"bridge": _bridges[d.root], **settings})
    d.proc.send_signal(signal.SIGHUP)


def _reloads(d: Daemon, since: float) -> list[dict]:
    out = _cli(d, "events", "--since", f"{since:.3f}", "--until", f"{time.time() + 0.3:.3f}",
               "--filter", "type=daemon", "--filter", "event=reload", "--format", "{{json .}}").stdout  # fmt: skip
    return [json.loads(line) for line in out.splitlines()]


def test_sighup_reloads_settings_with_a_reload_event(own: Daemon):
    cid = _cli(own, "run", "-d", "busybox", "sleep", "300").stdout.strip()
    try:
        since = time.time()
        _hup(own, {"labels": ["tier=edge", "zone=b"], "log-level": "warn", "log-driver": "json-file",
                   "log-opts": {"max-size": "1m", "max-file": "2"},
                   "allowed-registries": ["localhost:*"]})  # fmt: skip
        wait_for(lambda: _reloads(own, since), timeout=10, what="a reload event")
        ev = _reloads(own, since)[0]
        info = json.loads(_cli(own, "info", "--format", "{{json .}}").stdout)
        assert ev["Actor"]["ID"] == info["ID"]
        assert json.loads(ev["Actor"]["Attributes"]["labels"]) == ["tier=edge", "zone=b"]
        assert info["Labels"] == ["tier=edge", "zone=b"]
        assert info["Debug"] is False  # the file's log-level over the test daemon's --log-level debug
        # new containers get the new default log options; the running one kept going
        new = _cli(own, "create", "busybox", "true").stdout.strip()
        lc = json.loads(_cli(own, "inspect", "-f", "{{json .HostConfig.LogConfig}}", new).stdout)
        assert lc == {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}}
        _cli(own, "rm", new)
        assert _cli(own, "inspect", "-f", "{{.State.Running}}", cid).stdout.strip() == "true"
        # registry settings: 127.0.0.1 is no longer allowed (nothing listens there: refused first)
        pull = _cli(own, "pull", "127.0.0.1:1/nothing:here", check=False)
        assert "not in this daemon's allowed-registries" in pull.stderr, pull.stderr
        # the log level: no debug lines after the reload
        mark = len(own.log.read_bytes())
        _cli(own, "ps")
        assert " DEBUG " not in own.log.read_bytes()[mark:].decode(errors="replace")
    finally:
        _hup(own, {})
        _cli(own, "rm", "-f", cid)


def test_bad_file_keeps_the_old_settings(own: Daemon):
    since = time.time()
    _hup(own, {"labels": ["keep=me"]})
    wait_for(lambda: _reloads(own, since), timeout=10, what="a reload event")
    for bad in ('{"labels": ["keep=me"', json.dumps({"labels": ["nolabel"]}),
                json.dumps({"log-driver": "nosuchdriver"}), json.dumps({"log-level": "loud"})):  # fmt: skip
        mark = len(own.log.read_bytes())
        since = time.time()
        (own.root / "daemon.json").write_text(bad)  # (a refused file changes nothing, bridge included)
        own.proc.send_signal(signal.SIGHUP)
        wait_for(lambda mark=mark: b"reload of" in own.log.read_bytes()[mark:], timeout=10, what="the refusal logged")
        assert "current settings stay" in own.log.read_bytes()[mark:].decode()
        assert not _reloads(own, since)
        assert json.loads(_cli(own, "info", "--format", "{{json .Labels}}").stdout) == ["keep=me"]
        assert own.proc.poll() is None
    _hup(own, {})
