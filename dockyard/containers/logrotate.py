"""Keeping `max-file` rotated logs: the files conmon's `--log-size-max` would drop.

conmon starts a container's log over when it would grow past max-size: it writes a new
file and renames it over `ctr.log`. The old file survives that rename only if another
name links to it, so for a container with `max-file` N > 1 the `LogRotator` keeps a hard
link `ctr.log.cur` to the current file; when `ctr.log` is a new inode it shifts
`ctr.log.1` … `ctr.log.<N-2>` up by one (dropping `ctr.log.<N-1>`), renames the link to
`ctr.log.1` and links the new file. Names are resolved relative to the bundle directory's
file descriptor (only the daemon and conmon write there).

    containers/<id>/ctr.log        the current file (conmon's)
                    ctr.log.cur    a second name of the current file
                    ctr.log.1      the previous file, ctr.log.2 the one before ...

The rotator polls every `interval` while the daemon runs; while it is down, conmon's
starts-over lose all but the file `ctr.log.cur` pinned. It must not read or parse logs
(`logs.py` does); `rotated_files` is what readers use to find the older files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

CURRENT_LINK = ".cur"


def rotated_files(path: Path) -> list[Path]:
    """The log's older files, oldest first (ctr.log.N … ctr.log.1)."""
    found = []
    n = 1
    while (p := path.with_name(f"{path.name}.{n}")).is_file():
        found.append(p)
        n += 1
    return list(reversed(found))


def rotate_nowait(path: Path, max_files: int) -> bool:
    """One check of the log at `path`; True when conmon had started a new file and the
    old one was kept as `.1`. Names are resolved in the bundle directory by its file
    descriptor, so no link or rename can leave it."""
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return _rotate_at(dfd, path.name, max_files)
    finally:
        os.close(dfd)


def _rotate_at(dfd: int, name: str, max_files: int) -> bool:
    link = name + CURRENT_LINK
    try:
        current = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    try:
        pinned = os.stat(link, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        os.link(name, link, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
        return False
    if pinned.st_ino == current.st_ino:
        return False
    # conmon started over: the pinned file is the previous one
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{name}.{max_files - 1}", dir_fd=dfd)
    for n in range(max_files - 2, 0, -1):
        with contextlib.suppress(FileNotFoundError):
            os.rename(f"{name}.{n}", f"{name}.{n + 1}", src_dir_fd=dfd, dst_dir_fd=dfd)
    os.rename(link, f"{name}.1", src_dir_fd=dfd, dst_dir_fd=dfd)
    os.link(name, link, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
    return True


class LogRotator:
    """One polling task per running container whose log keeps more than one file.

    Flow: `watch(cid, path, max_files)` at each start (and for adopted containers);
    the task calls `rotate_nowait` every `interval`; `unwatch(cid)` at the exit does a
    last check; `close()` at daemon shutdown.
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self._tasks: dict[str, tuple[asyncio.Task[None], Path, int]] = {}

    def __repr__(self) -> str:
        return f"<LogRotator {len(self._tasks)} watched>"

    def statistics(self) -> dict[str, int]:
        return {"watched": len(self._tasks)}

    def watch(self, cid: str, path: Path, max_files: int) -> None:
        self.unwatch(cid, final=False)
        if max_files > 1:
            task = asyncio.get_running_loop().create_task(self._run(path, max_files))
            self._tasks[cid] = (task, path, max_files)

    def unwatch(self, cid: str, *, final: bool = True) -> None:
        entry = self._tasks.pop(cid, None)
        if entry is None:
            return
        task, path, max_files = entry
        task.cancel()
        if final:
            try:
                rotate_nowait(path, max_files)
            except OSError as err:
                log.warning("log rotation of %s: %s", cid[:12], err)

    async def close(self) -> None:
        tasks = [t for t, _, _ in self._tasks.values()]
        self._tasks.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, path: Path, max_files: int) -> None:
        while True:
            try:
                rotate_nowait(path, max_files)
            except OSError as err:  # the bundle went away under us: the container is being removed
                log.debug("log rotation of %s: %s", path, err)
            await asyncio.sleep(self.interval)
