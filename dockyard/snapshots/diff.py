"""Diffs of an overlay upper directory: the layer tar for commit, and `docker diff`.

Owns the conversion from overlay's on-disk whiteouts back to the layer-tar convention:
a char device 0/0 becomes an empty `.wh.<name>` file, and a directory carrying
`trusted.overlay.opaque=y` gets a `.wh..wh..opq` entry. It only reads the upper and lower
directories; it never writes to them, and it reads an upper directory (which a running
container changes under it) by directory fds: every entry is opened O_NOFOLLOW relative to
its parent's fd, so a directory swapped for a symlink mid-walk is archived as that symlink,
never followed to the host.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dockyard.idmap import IdentityMapping

__all__ = ["KIND_ADDED", "KIND_DELETED", "KIND_MODIFIED", "changes", "is_whiteout", "write_layer_tar"]

KIND_MODIFIED, KIND_ADDED, KIND_DELETED = 0, 1, 2
OPAQUE_XATTR = "trusted.overlay.opaque"
_KEEP_XATTRS = ("security.capability",)


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: Path | str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _walk(root: Path) -> Iterator[tuple[str, os.stat_result, int, str]]:
    """(relative path, lstat, parent directory fd, name) for everything under root, names
    sorted, parents first. The parent fd is valid until the next item is asked for."""
    stack: list[tuple[int, str, Iterator[str]]] = []
    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    stack.append((top, "", iter(sorted(os.listdir(top)))))
    try:
        while stack:
            dfd, rel, names = stack[-1]
            name = next(names, None)
            if name is None:
                os.close(dfd)
                stack.pop()
                continue
            r = f"{rel}/{name}" if rel else name
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while we walked
            yield r, st, dfd, name
            if stat.S_ISDIR(st.st_mode):
                try:
                    cfd = os.open(name, _DIR, dir_fd=dfd)
                except OSError:
                    continue  # swapped for something else: archived as it was seen
                stack.append((cfd, r, iter(sorted(os.listdir(cfd)))))
    finally:
        for dfd, _, _ in stack:
            os.close(dfd)


def _at(dfd: int, name: str) -> str:
    """A path that names `name` in the directory we hold: through our own fd, so the lookup
    starts at that very directory (use it only with follow_symlinks=False)."""
    return f"/proc/self/fd/{dfd}/{name}"


def write_layer_tar(upper: Path, out: BinaryIO, id_mapping: IdentityMapping | None = None) -> int:
    """Write the upper dir as a layer tar (PAX) into `out`; returns the number of entries.

    With `id_mapping` (a remapped daemon) owners are written as the container saw them,
    so a committed layer carries the same ids on any daemon."""
    count = 0
    seen_inodes: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for rel, st, dfd, name in _walk(upper):
            full = _at(dfd, name)
            parent, _, base = rel.rpartition("/")
            if is_whiteout(st):
                ti = tarfile.TarInfo(f"{parent}/.wh.{base}" if parent else f".wh.{base}")
                ti.mtime = int(st.st_mtime)
                ti.mode = 0o644
                tf.addfile(ti)
                count += 1
                continue
            ti = tarfile.TarInfo(rel)
            ti.uid, ti.gid = st.st_uid, st.st_gid
            if id_mapping is not None:
                ti.uid, ti.gid = id_mapping.to_container(st.st_uid, st.st_gid)
            ti.mode = stat.S_IMODE(st.st_mode)
            ti.mtime = int(st.st_mtime)
            ti.uname = ti.gname = ""
            xattrs = {}
            for x in _KEEP_XATTRS:
                try:
                    xattrs[f"SCHILY.xattr.{x}"] = os.getxattr(full, x, follow_symlinks=False).decode(
                        "utf-8", "surrogateescape"
                    )
                except OSError:
                    pass
            ti.pax_headers = xattrs
            if stat.S_ISDIR(st.st_mode):
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
                count += 1
                if _is_opaque(full):
                    op = tarfile.TarInfo(f"{rel}/.wh..wh..opq")
                    op.mtime = ti.mtime
                    op.mode = 0o644
                    tf.addfile(op)
                    count += 1
                continue
            if stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in seen_inodes:
                    ti.type = tarfile.LNKTYPE
                    ti.linkname = seen_inodes[key]
                    tf.addfile(ti)
                else:
                    seen_inodes[key] = rel
                    ti.size = st.st_size
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
                    with os.fdopen(fd, "rb") as f:
                        if not stat.S_ISREG(os.fstat(fd).st_mode):
                            continue  # swapped since the walk saw it
                        tf.addfile(ti, f)
            elif stat.S_ISLNK(st.st_mode):
                ti.type = tarfile.SYMTYPE
                ti.linkname = os.readlink(name, dir_fd=dfd)
                tf.addfile(ti)
            elif stat.S_ISFIFO(st.st_mode):
                ti.type = tarfile.FIFOTYPE
                tf.addfile(ti)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                tf.addfile(ti)
            else:
                continue  # sockets have no tar form
            count += 1
    return count


def _in_lowers(rel: str, lowers: list[Path]) -> bool:
    """Whether `rel` is visible in the merged view of the lowers (top-first)."""
    parts = rel.split("/")
    for lower in lowers:
        cur = str(lower)
        hidden_below = False
        for i, comp in enumerate(parts):
            cur = os.path.join(cur, comp)
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                break
            if is_whiteout(st):
                return False
            last = i == len(parts) - 1
            if last:
                return True
            if not stat.S_ISDIR(st.st_mode):
                return False  # a non-directory in this layer hides the path below
            if _is_opaque(cur):
                hidden_below = True
        else:
            return True
        if hidden_below:
            return False
    return False


def changes(upper: Path, lowers: list[Path]) -> list[dict[str, object]]:
    """`GET /containers/{id}/changes`: [{"Path": "/tmp/x", "Kind": 0|1|2}], sorted by path."""
    out: list[dict[str, object]] = []
    if not upper.is_dir():
        return out
    for rel, st, _, _ in _walk(upper):
        if is_whiteout(st):
            out.append({"Path": "/" + rel, "Kind": KIND_DELETED})
        elif _in_lowers(rel, lowers):
            out.append({"Path": "/" + rel, "Kind": KIND_MODIFIED})
        else:
            out.append({"Path": "/" + rel, "Kind": KIND_ADDED})
    out.sort(key=lambda c: str(c["Path"]))
    return out
