"""Reading a container's log, which conmon writes in the k8s-file format.

Each line is `<RFC3339Nano> <stdout|stderr> <F|P> <text>`; `P` marks a partial line
(the text had no newline yet), `F` a full one. Parsing is sans-IO (`parse_lines`), and
`read_log` adds the file reading, `tail`, `since`/`until` and `follow`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dockyard.containers.logrotate import rotated_files
from dockyard.timefmt import parse_rfc3339

STDOUT, STDERR = 1, 2


@dataclass(frozen=True)
class LogEntry:
    stream: int
    timestamp: bytes  # RFC 3339 as conmon wrote it
    data: bytes  # including the trailing newline for full lines


def parse_lines(lines: Iterable[bytes]) -> Iterator[LogEntry]:
    for line in lines:
        parts = line.split(b" ", 3)
        if len(parts) < 3:
            continue
        ts, stream, tag = parts[0], parts[1], parts[2]
        text = parts[3] if len(parts) == 4 else b""
        yield LogEntry(STDERR if stream == b"stderr" else STDOUT, ts, text if tag == b"P" else text + b"\n")


def _ts_seconds(ts: bytes) -> float:
    return parse_rfc3339(ts.decode().replace("+00:00", "Z"))


def _tail_offset(fd: int, n: int) -> tuple[int, int]:
    """(offset, lines): where the last n lines of the open file start (it ends with a
    newline), or (0, lines it has) when it has fewer."""
    size = os.fstat(fd).st_size
    if n <= 0:
        return size, 0
    found = 0
    pos = size
    while pos > 0:
        step = min(65536, pos)
        pos -= step
        chunk = os.pread(fd, step, pos)
        idx = len(chunk)
        while (idx := chunk.rfind(b"\n", 0, idx)) >= 0:
            found += 1
            if found == n + 1:  # the trailing newline counts once too
                return pos + idx + 1, n
    return 0, found  # every line ends with a newline: one newline per line


def _start(fds: list[int], tail: int | None) -> tuple[int, int]:
    """(file index, offset) where reading starts: all of the oldest file, or the last
    `tail` lines counted back across the files."""
    if tail is None or tail < 0:
        return 0, 0
    want = tail
    for i in range(len(fds) - 1, -1, -1):
        offset, found = _tail_offset(fds[i], want)
        if found >= want or i == 0:
            return i, offset
        want -= found
    return 0, 0


def _filtered(data: bytes, since: float | None, until: float | None) -> list[LogEntry]:
    entries = list(parse_lines(data.split(b"\n")))
    if since is not None or until is not None:
        entries = [
            e for e in entries
            if (since is None or _ts_seconds(e.timestamp) >= since)
            and (until is None or _ts_seconds(e.timestamp) <= until)
        ]  # fmt: skip
    return entries


def _read_all(fd: int, offset: int) -> bytes:
    out = bytearray()
    while chunk := os.pread(fd, 1 << 20, offset + len(out)):
        out += chunk
    return bytes(out)


def _replaced(path: Path, fd: int) -> bool:
    """conmon renamed a new, empty log over the one we read (its --log-size-max)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    return st.st_ino != os.fstat(fd).st_ino


async def read_log(
    path: Path,
    *,
    tail: int | None = None,
    since: float | None = None,
    until: float | None = None,
    follow: bool = False,
    is_running: Callable[[], bool] = lambda: False,
) -> AsyncIterator[list[LogEntry]]:
    """Batches of log entries, the older files kept by max-file first (logrotate.py);
    with follow, keeps reading until the container stops, and across the file starting
    over at its max-size (conmon replaces it with a new one)."""
    if not path.is_file():  # no log kept (the none driver), or none written yet
        return
    # every file opened at once: a rotation while we read cannot shift one under us
    fds = [os.open(p, os.O_RDONLY) for p in rotated_files(path)]
    fds.append(os.open(path, os.O_RDONLY))
    try:
        index, offset = await asyncio.to_thread(_start, fds, tail)
        for old in fds[index:-1]:
            data = await asyncio.to_thread(_read_all, old, offset)
            offset = 0
            if entries := _filtered(data[: data.rfind(b"\n") + 1].rstrip(b"\n"), since, until):
                yield entries
        async for batch in _read_current(path, fds, offset, since, until, follow, is_running):
            yield batch
    finally:
        for fd in fds:
            os.close(fd)


async def _read_current(
    path: Path, fds: list[int], offset: int, since: float | None, until: float | None, follow: bool,
    is_running: Callable[[], bool],
) -> AsyncIterator[list[LogEntry]]:  # fmt: skip
    """The current file (fds[-1], which this replaces when conmon starts a new one)."""
    pending = b""
    while True:
        chunk = await asyncio.to_thread(os.pread, fds[-1], 1 << 20, offset)
        if chunk:
            offset += len(chunk)
            data = pending + chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                pending = data
                continue
            pending = data[cut + 1 :]
            if entries := _filtered(data[:cut], since, until):
                yield entries
            continue
        if not follow:
            return
        if until is not None and until < time.time():
            return
        if _replaced(path, fds[-1]):
            # conmon wrote its last lines to the old file before the new one took its name
            if os.pread(fds[-1], 1, offset):
                continue
            fds.append(os.open(path, os.O_RDONLY))
            os.close(fds.pop(-2))
            offset, pending = 0, b""
            continue
        if not is_running():
            # one last read: the container may have written just before it stopped
            chunk = os.pread(fds[-1], 1 << 20, offset)
            if not chunk:
                return
            continue
        await asyncio.sleep(0.05)
