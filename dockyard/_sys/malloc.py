"""Giving the memory of large transfers back to the system (glibc's `malloc_trim`).

glibc raises its mmap threshold each time a large mmapped block is freed (up to 32 MiB),
after which the megabyte-sized buffers of uploads, layer copies and registry transfers
come from the heap and stay in the daemon's RSS after use: measured here, a daemon at
58 MiB grew to 108 MiB after three cold B4 builds and to ~250 MiB after the registry
benchmark. Pinning the threshold low kept it at ~64 MiB but made every 256 KiB socket
read an mmap/munmap pair (a cached B4 build went from ~40 to ~58 ms); trimming right after
each large request cost the next one its page faults (~50 ms). So the API asks for a trim
once it has been quiet for a moment (`TrimWhenQuiet`): back-to-back transfers reuse the
heap, an idle daemon gives it back.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable

__all__ = ["TrimWhenQuiet", "release_free_memory"]


def _load() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None  # not glibc
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_trim = _load()


def release_free_memory() -> None:
    """Return the allocator's free pages to the system (cheap: ~1 ms for a heap of a
    few hundred MiB; a no-op where the C library is not glibc)."""
    if _trim is not None:
        _trim(0)


class TrimWhenQuiet:
    """`touch()` after a large operation; the trim runs `delay` seconds after the last one."""

    def __init__(self, delay: float = 2.0) -> None:
        self.delay = delay
        self._pending: asyncio.TimerHandle | None = None

    def touch(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        self._pending = asyncio.get_running_loop().call_later(self.delay, self._run)

    def _run(self) -> None:
        self._pending = None
        release_free_memory()
