"""Terminal handling for interactive sessions: raw mode and SIGWINCH-driven resize.

Owns termios state and the window-size signal; it must not do HTTP itself (callers pass a
resize callback, invoked from the main thread).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import termios
import threading
import tty as _tty
from collections.abc import Callable, Iterator


def is_tty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def size(fd: int | None = None) -> tuple[int, int] | None:
    """(height, width) of the controlling terminal, or None when there is none."""
    for f in [fd] if fd is not None else [sys.stdout.fileno(), sys.stdin.fileno()]:
        try:
            sz = os.get_terminal_size(f)
            if sz.lines and sz.columns:
                return sz.lines, sz.columns
        except OSError:
            continue
    return None


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Put `fd` in raw mode for the block (like docker's term.SetRawTerminal) and restore it."""
    if not is_tty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        _tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class ResizeMonitor:
    """Calls `resize(h, w)` now and after each SIGWINCH, always from the thread that calls `poll()`.

    The signal handler only sets a flag: the HTTP resize call must not run inside a signal
    handler that may interrupt another request on the same connection pool.
    """

    def __init__(self, resize: Callable[[int, int], None]) -> None:
        self._resize = resize
        self._pending = threading.Event()
        self._old: object = None

    def __enter__(self) -> ResizeMonitor:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGWINCH, lambda *_: self._pending.set())
        self._pending.set()
        self.poll()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGWINCH, self._old)  # type: ignore[arg-type]

    def poll(self) -> None:
        if not self._pending.is_set():
            return
        self._pending.clear()
        sz = size()
        if sz:
            try:
                self._resize(*sz)
            except Exception:  # noqa: BLE001 - a failed resize must not end the session
                pass
