"""A side daemon with `--userns-remap`, shared by the test modules that need one.

`remap_user` makes a system user whose only /etc/subuid and /etc/subgid line (also made
here) is a range nobody else uses; `remapped` is a daemon remapped to it with busybox
imported. Both are module-scoped and remove what they made: the user, its lines, the
daemon, its network leftovers (conftest's teardown finds the remapped subtree's table).
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon, destroy_daemon, import_busybox, make_daemon, write_daemon_json

BASE = 1_500_000_000 + secrets.randbelow(100) * 65536  # a range no distribution hands out
SIZE = 65536


def _drop_line(path: Path, line: str) -> None:
    lines = path.read_text().splitlines(keepends=True) if path.exists() else []
    path.write_text("".join(x for x in lines if x.rstrip("\n") != line))


@pytest.fixture(scope="module")
def remap_user() -> Iterator[str]:
    user = f"dyns{secrets.token_hex(3)}"
    subprocess.run(["useradd", "-r", "-M", "-s", "/bin/false", user], check=True, capture_output=True)
    line = f"{user}:{BASE}:{SIZE}"
    for path in (Path("/etc/subuid"), Path("/etc/subgid")):
        with open(path, "a") as f:
            f.write(line + "\n")
    try:
        yield user
    finally:
        for path in (Path("/etc/subuid"), Path("/etc/subgid")):
            _drop_line(path, line)
        subprocess.run(["userdel", user], check=False, capture_output=True)


def restart_remapped(d: Daemon, user: str) -> None:
    """Restart `d` with userns-remap; its root must be traversable by the remapped root,
    which dockerd checks at startup too (mkdtemp makes it 0700)."""
    d.stop()
    d.root.chmod(0o711)
    write_daemon_json(d.root, {"userns-remap": user})
    d.start()


@pytest.fixture(scope="module")
def remapped(remap_user: str) -> Iterator[Daemon]:
    d = make_daemon()
    try:
        restart_remapped(d, remap_user)
        import_busybox(d.host)
        yield d
    finally:
        destroy_daemon(d)


def cli(d: Daemon, *args: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DOCKER_HOST": d.host, "DOCKER_BUILDKIT": "0"},
        cwd=cwd,
        check=False,
    )
    if check and res.returncode:
        raise AssertionError(f"docker {args} exited {res.returncode}: {res.stderr}")
    return res
