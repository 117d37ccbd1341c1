"""Volume subpaths (`VolumeOptions.Subpath`, API 1.45): a directory or file inside a volume,
mounted at the container's path instead of the whole volume.

The volume's content is untrusted: any container that uses the volume can put a symlink
where the subpath points (`sub -> /etc`), or swap one in between a check and a mount. So the
subpath is never handed to the runtime as a path string. It is opened *in* the volume by
file descriptor (`_sys.rootdir.RootDir`: every symlink evaluated with the volume's `_data` as
"/", `..` stopping there), and that descriptor, the exact inode found, is bind-mounted
through `/proc/self/fd/N` onto a staging point in the container's bundle
(`<bundle>/subpaths/<key>`); the runtime binds the staging point. Whatever the volume's
users do afterwards, the mount is the object that was resolved inside the volume. Flow::

    stage(Path(volume_mountpoint), "data/app", bundle / "subpaths" / key)   # at start
    release(bundle / "subpaths" / key)                                     # at stop
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from dockyard._sys.mount import Mount, is_mounted, mount, unmount
from dockyard._sys.rootdir import RootDir
from dockyard.errdefs import InvalidArgument


def staging_point(bundle: Path, destination: str) -> Path:
    return bundle / "subpaths" / hashlib.sha256(destination.encode()).hexdigest()[:16]


def stage(volume_root: Path, subpath: str, target: Path) -> None:
    """Bind-mount `subpath`, resolved inside `volume_root`, onto `target` (made here)."""
    try:
        with RootDir(volume_root) as root:
            fd = root.open(subpath, os.O_PATH)
    except OSError as err:
        raise InvalidArgument(
            f"cannot access path {subpath} in the volume: {os.strerror(err.errno or 0).lower()}"
        ) from None
    try:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        target.parent.mkdir(mode=0o700, exist_ok=True)
        if is_dir:
            target.mkdir(mode=0o700, exist_ok=True)
        else:
            target.touch(mode=0o600, exist_ok=True)
        if is_mounted(target):  # left by a daemon killed while the container ran
            unmount(target)
        # the magic link names the inode the fd holds; mount(2) follows it, nothing else
        mount(Mount("bind", f"/proc/self/fd/{fd}", ("bind",)), target)
    finally:
        os.close(fd)


def release(target: Path) -> None:
    unmount(target)
    try:
        target.rmdir() if target.is_dir() else target.unlink(missing_ok=True)
    except OSError:
        pass
