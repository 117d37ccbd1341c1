"""Network namespace helpers that need no external tools.

`set_loopback_up(pid)` enters the network namespace of `pid` on a throwaway thread
(setns(2) changes only the calling thread) and brings `lo` up with SIOCSIFFLAGS, as
Docker does for every container with a network namespace of its own.
`pin_new_netns(path)` / `unpin_netns(path)`: a namespace made before its container, for a
restore into a namespace already plugged with the container's address (live move).
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
MS_BIND = 0x1000
MNT_DETACH = 0x2
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


def pin_new_netns(path: str) -> None:
    """Make a new, empty network namespace and keep it alive by a bind mount at `path`
    (a new empty file). The namespace is made on a throwaway thread: unshare(2) changes
    only the calling thread's namespace, so the daemon's own threads never leave theirs."""
    errors: list[BaseException] = []

    def body() -> None:
        try:
            if _libc.unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"unshare: {os.strerror(ctypes.get_errno())}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            os.close(fd)
            src = f"/proc/self/task/{threading.get_native_id()}/ns/net"
            if _libc.mount(src.encode(), path.encode(), None, MS_BIND, None) != 0:
                err = ctypes.get_errno()
                os.unlink(path)
                raise OSError(err, f"bind mount of a new netns on {path}: {os.strerror(err)}")
            _lo_up_here()
        except BaseException as err:  # noqa: BLE001 - handed back to the caller's thread
            errors.append(err)

    t = threading.Thread(target=body, name="netns-pin")
    t.start()
    t.join()
    if errors:
        raise errors[0]


def unpin_netns(path: str) -> None:
    """Undo `pin_new_netns`: the namespace lives on while a process is in it."""
    if _libc.umount2(path.encode(), MNT_DETACH) != 0 and ctypes.get_errno() not in (22, 2):
        err = ctypes.get_errno()
        raise OSError(err, f"unmount {path}: {os.strerror(err)}")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
