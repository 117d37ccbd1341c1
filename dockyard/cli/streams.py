"""Pumping hijacked attach/exec connections: demultiplex output, copy stdin, detach keys.

Owns the threads that move bytes between the terminal and a `HijackedConn`; decoding is the
sans-IO `FrameDecoder`, and detach-key matching is the sans-IO `DetachScanner` below.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from dockyard.client import FrameDecoder, HijackedConn

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def parse_detach_keys(spec: str | None) -> bytes:
    """docker's `--detach-keys` syntax: comma list of `ctrl-<x>` or single characters."""
    spec = spec or DEFAULT_DETACH_KEYS
    out = bytearray()
    for key in spec.split(","):
        key = key.strip()
        if key.startswith("ctrl-") and len(key) == 6:
            ch = key[5].lower()
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
            else:
                specials = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}
                if ch not in specials:
                    raise ValueError(f"Unknown character: '{key}'")
                out.append(specials[ch])
        elif len(key) == 1:
            out.append(ord(key))
        else:
            raise ValueError(f"Unknown character: '{key}'")
    return bytes(out)


@dataclass
class DetachScanner:
    """Holds back a partial detach sequence; releases it if the next byte breaks the match."""

    keys: bytes
    _held: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        if not self.keys:
            return data, False
        out = bytearray()
        for b in data:
            if b == self.keys[len(self._held)]:
                self._held.append(b)
                if len(self._held) == len(self.keys):
                    return bytes(out), True
            else:
                out += self._held
                self._held.clear()
                if b == self.keys[0]:
                    self._held.append(b)
                else:
                    out.append(b)
        return bytes(out), False


@dataclass
class SessionResult:
    detached: bool = False
    error: BaseException | None = None


def pump(
    conn: HijackedConn,
    *,
    tty: bool,
    stdin: bool,
    detach_keys: bytes = b"",
    tick: Callable[[], None] | None = None,
) -> SessionResult:
    """Copy stdin → conn and conn → stdout/stderr until the output ends or the user detaches."""
    result = SessionResult()
    done = threading.Event()
    out_fd, err_fd = sys.stdout.fileno(), sys.stderr.fileno()
    sys.stdout.flush()

    def write_all(fd: int, data: bytes) -> None:
        while data:
            n = os.write(fd, data)
            data = data[n:]

    def read_output() -> None:
        dec = FrameDecoder(tty=tty)
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                for stream, payload in dec.feed(data):
                    if stream == 3:
                        write_all(err_fd, payload)
                        continue
                    write_all(err_fd if stream == 2 else out_fd, payload)
        except OSError as err:
            if not done.is_set():
                result.error = err
        finally:
            done.set()

    def read_input() -> None:
        scanner = DetachScanner(detach_keys)
        try:
            while not done.is_set():
                data = os.read(0, 32768)
                if not data:
                    break
                data, detached = scanner.feed(data)
                if data:
                    conn.sendall(data)
                if detached:
                    result.detached = True
                    done.set()
                    return
        except OSError:
            pass
        # stdin EOF: half-close so the container sees EOF while output keeps flowing.
        conn.close_write()

    threading.Thread(target=read_output, daemon=True, name="attach-out").start()
    if stdin:
        threading.Thread(target=read_input, daemon=True, name="attach-in").start()
    while not done.wait(0.1):
        if tick:
            tick()
    if result.detached:
        conn.close()
    return result
