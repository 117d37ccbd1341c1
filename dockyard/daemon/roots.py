"""The daemon's two roots on the host: their modes, and one daemon per root.

Owns the data root and the exec root themselves (not what the services keep inside
them): both are made 0700, and so are the data root's folders that hold container and
image content, including on a data root an older daemon made with laxer modes. A host
user must not reach a container's files through them: a setuid-root binary a container
wrote is a root shell for whoever can run it (dockerd's CVE-2021-41091).

Each root carries a lock file, flocked for the daemon's whole life. A second daemon on
the same root would adopt the first one's containers and write the same database, so it
refuses to start and names the holder's pid. The lock goes with the process (flock is
released by the kernel at exit, `kill -9` included), so a stale file never blocks a start.

Layout::

    <data-root>/  0700
      dockyard.lock             flocked by the running daemon; holds its pid
      blobs/ layers/ snapshots/ containers/ volumes/ tmp/ build-runs/   0700
    <exec-root>/  0700
      dockyard.lock
"""

from __future__ import annotations

import errno
import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CONTENT_DIRS", "LOCK_NAME", "RootInUse", "RootLocks", "prepare_roots", "tighten_content"]

LOCK_NAME = "dockyard.lock"
# every folder of the data root that holds container or image content
CONTENT_DIRS = ("blobs", "layers", "snapshots", "containers", "volumes", "tmp", "build-runs")


class RootInUse(Exception):
    """Another daemon holds the root's lock (the message names the root and the pid)."""


@dataclass
class RootLocks:
    """The open, flocked lock files; closing them releases the roots."""

    fds: list[int] = field(default_factory=list)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


def _private_dir(path: Path, mode: int = 0o700, gid: int | None = None) -> None:
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    # an existing root keeps whatever mode it had; tighten it (and never follow a symlink
    # planted in its place: chmod of the link's target would be someone else's folder)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if gid is not None:
            os.fchown(fd, os.getuid(), gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def tighten_content(data_root: Path, remapped_gid: int | None = None) -> None:
    """The content folders private. On a remapped daemon (`--userns-remap`, whose state is
    the `<uid>.<gid>` subtree) the containers' root must still reach its bundle's files
    and its volumes' sources, as under dockerd: containers/ is 0710 with the remapped
    group, volumes/ 0701 (each volume folder is 0701 too; listing stays refused)."""
    for name in CONTENT_DIRS:
        if remapped_gid is not None and name == "containers":
            _private_dir(data_root / name, 0o710, remapped_gid)
        elif remapped_gid is not None and name == "volumes":
            _private_dir(data_root / name, 0o701)
        else:
            _private_dir(data_root / name)


def _lock(root: Path, what: str) -> int:
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise RootInUse(
                f"{what} {root} is in use by another daemon (pid {holder}); stop it, or give this one "
                f"its own --{what.replace(' ', '-')}"
            ) from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def prepare_roots(data_root: Path, exec_root: Path) -> RootLocks:
    """Make both roots private, lock them, and tighten the data root's content folders.

    Raises `RootInUse` before changing anything another daemon could be using."""
    locks = RootLocks()
    try:
        for root, what in ((data_root, "data root"), (exec_root, "exec root")):
            _private_dir(root)
            locks.fds.append(_lock(root, what))
        tighten_content(data_root)
    except BaseException:
        locks.close()
        raise
    return locks
