"""Network namespace helpers that need no external tools.

`set_loopback_up(pid)` enters the network namespace of `pid` on a throwaway thread
(setns(2) changes only the calling thread) and brings `lo` up with SIOCSIFFLAGS, as
Docker does for every container with a network namespace of its own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any, TypeVar

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
T = TypeVar("T")


def _lo_up_here() -> None:
    """Bring up `lo` in the calling thread's network namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def _lo_up_in(pid: int, errors: list[str]) -> None:
    try:
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        finally:
            os.close(fd)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            req = struct.pack("16sH14x", b"lo", 0)
            flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
    except OSError as err:
        errors.append(str(err))


def set_loopback_up(pid: int) -> None:
    errors: list[str] = []
    t = threading.Thread(target=_lo_up_in, args=(pid, errors), name="netns-lo")
    t.start()
    t.join()
    if errors:
        raise OSError(f"cannot bring up lo in netns of pid {pid}: {errors[0]}")


def run_in_netns(path: str, fn: Callable[[], T]) -> T:
    """Call `fn` on a throwaway thread that first joins the network namespace at `path`.

    Sockets (netlink included) belong to the namespace of the thread that opened them, so a
    socket made by `fn` keeps serving that namespace after the thread ends.
    """
    box: list[Any] = []

    def body() -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {path}: {os.strerror(ctypes.get_errno())}")
            finally:
                os.close(fd)
            box.append((True, fn()))
        except BaseException as err:  # noqa: BLE001 - handed back to the caller's thread
            box.append((False, err))

    t = threading.Thread(target=body, name="netns")
    t.start()
    t.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]
