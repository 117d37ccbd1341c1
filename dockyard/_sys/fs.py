"""Files: atomic writes (temporary name, fsync, rename), and path lookups confined to a
root directory the way a chroot confines them."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

MAX_SYMLINKS = 40  # as Linux's path walk allows


class RootPathError(ValueError):
    pass


def walk_in_scope(
    path: str,
    link_at: Callable[[list[str], bool], str | None],
    *,
    follow_last: bool = True,
    max_links: int = MAX_SYMLINKS,
) -> list[str]:
    """The components of `path` with its symlinks evaluated inside a scope whose root is
    "/": absolute targets start at the root and `..` stops there, so the result never
    leaves it (Docker's FollowSymlinkInScope). `link_at(components, last)` looks at the
    entry those components name and returns its target if it is a symlink, else None (a
    missing entry is kept as it is written); it may also check or create the entry."""
    parts = [p for p in path.split("/") if p and p != "."]
    cur: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if cur:
                cur.pop()
            continue
        cur.append(part)
        last = not parts
        target = link_at(cur, last)
        if target is None or (last and not follow_last):
            continue
        links += 1
        if links > max_links:
            raise RootPathError("too many levels of symbolic links")
        cur.pop()
        if target.startswith("/"):
            cur = []
        parts[:0] = [p for p in target.split("/") if p and p != "."]
    return cur


def resolve_in_root(root: Path, path: str, *, follow_last: bool = True, mkdir: bool = False) -> Path:
    """The host path of `path` as a lookup chrooted to `root` sees it (`walk_in_scope`).
    With mkdir, missing directories are made (0755) and every component must be a
    directory."""

    def link_at(components: list[str], last: bool) -> str | None:
        host = root.joinpath(*components)
        try:
            info = os.lstat(host)
        except FileNotFoundError:
            if mkdir:
                os.mkdir(host, 0o755)
            return None
        if stat.S_ISLNK(info.st_mode):
            return os.readlink(host)
        if mkdir and not stat.S_ISDIR(info.st_mode):
            raise RootPathError(f"/{'/'.join(components)} is not a directory")
        return None

    return root.joinpath(*walk_in_scope(path, link_at, follow_last=follow_last))


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write to a unique temporary name beside path, fsync, rename over path (parents made);
    unique names keep concurrent writers of one path from sharing a temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.syncfs.argtypes = [ctypes.c_int]


def syncfs(path: Path) -> None:
    """syncfs(2) of the filesystem that holds path: every dirty file and directory on it
    reaches the disk. One call instead of an fsync per file of a tree just written (a layer
    of thousands of files), which costs one flush of the device either way."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename or an unlink in path durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
