"""mount(2) and umount2(2) through libc, and the Mount record that describes one mount.

A `Mount` is a serialized mount syscall: planners return them, and only `mount()` here
touches the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass
from pathlib import Path

from dockyard.errdefs import Internal

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_BIND = 4096
MS_REC = 16384
MNT_DETACH = 2

# options that are mount flags, not filesystem data
_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "bind": MS_BIND,
          "rbind": MS_BIND | MS_REC}  # fmt: skip


@dataclass(frozen=True)
class Mount:
    type: str
    source: str
    options: tuple[str, ...] = ()


class MountError(Internal):
    pass


def mount(m: Mount, target: Path) -> None:
    flags = 0
    data: list[str] = []
    for opt in m.options:
        if opt in _FLAGS:
            flags |= _FLAGS[opt]
        else:
            data.append(opt)
    fstype = None if m.type == "bind" else m.type.encode()
    rc = _libc.mount(m.source.encode(), str(target).encode(), fstype, flags, ",".join(data).encode() or None)
    if rc != 0:
        err = ctypes.get_errno()
        raise MountError(f"mount {m.type} on {target}: {os.strerror(err)}")


def unmount(target: Path, *, lazy: bool = True) -> None:
    """Unmount target; not mounted is fine."""
    rc = _libc.umount2(str(target).encode(), MNT_DETACH if lazy else 0)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (22, 2):  # EINVAL: not a mount point; ENOENT: gone
            return
        raise MountError(f"unmount {target}: {os.strerror(err)}")


def is_mounted(target: Path) -> bool:
    t = str(target)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == t for line in f)
