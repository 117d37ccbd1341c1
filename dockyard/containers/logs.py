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


def _tail_offset(path: Path, n: int) -> int:
    """The byte offset where the last n lines of the file start (it ends with a newline)."""
    size = path.stat().st_size
    if n <= 0:
        return size
    found = 0
    with open(path, "rb") as f:
        pos = size
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            chunk = f.read(step)
            idx = len(chunk)
            while (idx := chunk.rfind(b"\n", 0, idx)) >= 0:
                found += 1
                if found == n + 1:  # the trailing newline counts once too
                    return pos + idx + 1
    return 0


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
    """Batches of log entries; with follow, keeps reading until the container stops, and
    across the file starting over at its max-size (conmon replaces it with a new one)."""
    if not path.is_file():  # no log kept (the none driver), or none written yet
        return
    offset = 0 if tail is None or tail < 0 else await asyncio.to_thread(_tail_offset, path, tail)
    fd = os.open(path, os.O_RDONLY)
    pending = b""
    try:
        while True:
            chunk = await asyncio.to_thread(os.pread, fd, 1 << 20, offset)
            if chunk:
                offset += len(chunk)
                data = pending + chunk
                cut = data.rfind(b"\n")
                if cut < 0:
                    pending = data
                    continue
                pending = data[cut + 1 :]
                entries = list(parse_lines(data[:cut].split(b"\n")))
                if since is not None or until is not None:
                    entries = [
                        e for e in entries
                        if (since is None or _ts_seconds(e.timestamp) >= since)
                        and (until is None or _ts_seconds(e.timestamp) <= until)
                    ]  # fmt: skip
                if entries:
                    yield entries
                continue
            if not follow:
                return
            if until is not None and until < time.time():
                return
            if _replaced(path, fd):
                os.close(fd)
                fd = os.open(path, os.O_RDONLY)
                offset, pending = 0, b""
                continue
            if not is_running():
                # one last read: the container may have written just before it stopped
                chunk = os.pread(fd, 1 << 20, offset)
                if not chunk:
                    return
                continue
            await asyncio.sleep(0.05)
    finally:
        os.close(fd)
