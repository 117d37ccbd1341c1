"""A cold move cut short by `kill -9` (issue 15, "Safety"): of the source daemon, of the
target daemon, of the CLI, at named steps (the CLI's DOCKYARD_MOVE_PAUSE_AT test hook holds
the move there). After the killed process is back: exactly one running copy, its data
intact, nothing left on the other side; the move journal (containers/movejournal.py)
finished or undid the move.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conftest import BIN, Daemon, _runner, destroy_daemon, import_busybox, make_daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlayfs, runc)")


@pytest.fixture
def pair() -> Iterator[tuple[Daemon, Daemon]]:
    src, dst = make_daemon(), make_daemon()
    import_busybox(src.host)
    yield src, dst
    for d in (src, dst):
        if d.proc.poll() is not None:
            d.start()
        log = d.log.read_text(errors="replace")
        destroy_daemon(d)
        assert "Traceback" not in log, log[-3000:]


def _running(d: Daemon, name: str) -> str:
    res = _runner(["docker"], d.host)("inspect", "-f", "{{.State.Running}}", name, check=False)
    return res.stdout.strip() if res.returncode == 0 else "absent"


def _wait(pred, timeout: float = 30) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize(
    ("victim", "step", "where"),
    [
        ("source", "created", "source"),  # before the commit: undone
        ("target", "sent", "source"),  # target down before its start: undone once it is back
        ("cli", "sent", "source"),  # nobody drives it: the restarted source undoes it
        ("source", "started", "target"),  # after the commit: finished
        ("cli", "started", "target"),
    ],
)
def test_kill_9_mid_cold_move_leaves_one_copy(pair: tuple[Daemon, Daemon], victim: str, step: str, where: str) -> None:
    src, dst = pair
    name = "mvsafe"
    _runner(["docker"], src.host)("run", "-d", "--name", name, "busybox", "sh", "-c", "echo kept > /k; sleep 3600")
    assert _wait(lambda: _runner(["docker"], src.host)("exec", name, "cat", "/k", check=False).stdout.strip() == "kept")
    cli = subprocess.Popen(
        [str(BIN / "dockyard"), "-H", src.host, "container", "move", name, "--to", dst.host],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "DOCKYARD_MOVE_PAUSE_AT": step},
    )  # fmt: skip
    assert cli.stderr is not None
    line = ""
    while "paused at" not in line:
        line = cli.stderr.readline()
        assert line or cli.poll() is None, cli.communicate()
    killed = {"source": src, "target": dst}.get(victim)
    if killed is not None:
        killed.stop(signal.SIGKILL)
    else:
        cli.kill()
    if killed is not None:
        cli.send_signal(signal.SIGUSR1)  # the CLI goes on, and meets the dead daemon
    cli.wait(timeout=60)
    if killed is not None:
        killed.start()
    else:
        src.stop(signal.SIGKILL)  # the CLI alone is gone: the source's next start settles it
        src.start()
    home, other = (src, dst) if where == "source" else (dst, src)
    assert _wait(lambda: _running(home, name) == "true" and _running(other, name) == "absent"), (
        _running(home, name), _running(other, name), src.log.read_text()[-2000:],
    )  # fmt: skip
    assert _runner(["docker"], home.host)("exec", name, "cat", "/k").stdout.strip() == "kept"
