"""Files: atomic writes (temporary name, fsync, rename), and path lookups confined to a
root directory the way a chroot confines them."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

MAX_SYMLINKS = 40  # as Linux's path walk allows


class RootPathError(ValueError):
    pass


def resolve_in_root(root: Path, path: str, *, follow_last: bool = True, mkdir: bool = False) -> Path:
    """The host path of `path` as a lookup chrooted to `root` sees it: symlinks are followed
    inside root (absolute targets start at root, `..` stops there), so the result never
    leaves root, whatever an image's links say. With mkdir, missing directories are made
    (0755) and every component must be a directory."""
    parts = [p for p in path.split("/") if p and p != "."]
    cur: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if cur:
                cur.pop()
            continue
        host = root.joinpath(*cur, part)
        try:
            info = os.lstat(host)
        except FileNotFoundError:
            if mkdir:
                os.mkdir(host, 0o755)
            cur.append(part)
            continue
        if stat.S_ISLNK(info.st_mode) and (parts or follow_last):
            hops += 1
            if hops > MAX_SYMLINKS:
                raise RootPathError("too many levels of symbolic links")
            link = os.readlink(host)
            if link.startswith("/"):
                cur = []
            parts[:0] = [p for p in link.split("/") if p and p != "."]
            continue
        if mkdir and not stat.S_ISDIR(info.st_mode):
            raise RootPathError(f"/{'/'.join([*cur, part])} is not a directory")
        cur.append(part)
    return root.joinpath(*cur)


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
