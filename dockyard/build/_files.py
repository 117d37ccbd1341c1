"""The files of COPY, ADD and WORKDIR steps, moved by file descriptor.

Owns how a step reads its sources and writes into the build container's rootfs. Both the
rootfs (a base image and earlier steps wrote it: strangers) and a `--from` stage's or
image's rootfs are opened through `RootDir`, so every symlink on the way is evaluated with
that rootfs as "/": a base image's `/app -> /etc` or `/app -> ../../../etc` names the
container's /etc, never the host's. Then:

- a destination's directories are made by a walk from the root fd, each component opened
  `O_NOFOLLOW | O_DIRECTORY` relative to its parent's fd (missing ones created and given
  the step's owner); a symlink met there now (it was resolved a moment ago) fails the step;
- the final entry is removed and created with `*at()` calls in that directory fd, never
  following it, and its owner, mode and times are set through the new fd;
- a source is a (directory fd, name) pair opened in its own root, read with `O_NOFOLLOW`
  (a final symlink is copied as a link); only regular files are read, so a FIFO never
  blocks a step and a device is never copied;
- an archive ADD extracts goes through the layer extractor with `ARCHIVE` rules, rooted
  at the destination's fd.

It must not know the Dockerfile: `builder.py` decides what goes where.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import posixpath
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from dockyard._sys.rootdir import RootDir

__all__ = ["Source", "StepError", "copy_source", "dest_dir", "dest_slot", "glob_sources", "open_source",
           "read_text", "write_bytes"]  # fmt: skip

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_ID_FILE = 16 << 20  # /etc/passwd or /etc/group larger than this is not read


class StepError(Exception):
    """A path the step cannot use; the builder words it as a build error."""


Owner = tuple[int, int] | None
Hidden = Callable[[str], bool]


@dataclass
class Source:
    """One source entry: `name` in the directory `dirfd` (owned: `close()`), `rel` as the
    step's pattern matched it."""

    dirfd: int
    name: str
    rel: str

    def close(self) -> None:
        if self.dirfd >= 0:
            os.close(self.dirfd)
            self.dirfd = -1

    def lstat(self) -> os.stat_result:
        return os.stat(self.name, dir_fd=self.dirfd, follow_symlinks=False)

    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.lstat().st_mode)

    def open_regular(self) -> BinaryIO | None:
        """The source opened for reading if it is a regular file (never a FIFO or device)."""
        fd = os.open(self.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=self.dirfd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return os.fdopen(fd, "rb")


def _split(path: str) -> tuple[str, str]:
    clean = posixpath.normpath("/" + path)
    return posixpath.dirname(clean), posixpath.basename(clean) or "."


def _open_in(root: RootDir, path: str) -> int:
    try:
        return root.open_dir(path)
    except OSError as err:
        raise StepError(f"{err.strerror or err}".lower()) from None


def open_source(root: RootDir, rel: str) -> Source | None:
    """The entry `rel` names in `root` (no wildcards), its parents resolved in the root and
    itself not followed; None if missing. Caller closes it."""
    clean = posixpath.normpath("/" + rel).lstrip("/")
    parent, base = _split(clean)
    try:
        dirfd = root.open_dir(parent)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise StepError(f"{err.strerror or err}".lower()) from None
    src = Source(dirfd, base, clean or ".")
    try:
        src.lstat()
    except (FileNotFoundError, NotADirectoryError):
        src.close()
        return None
    return src


def glob_sources(root: RootDir, pattern: str) -> list[Source]:
    """The entries a source pattern names in `root` (wildcards in the last component);
    parents resolved in the root, the last component not followed. Caller closes them."""
    clean = posixpath.normpath("/" + pattern).lstrip("/")
    parent, base = _split(clean)
    if not any(c in clean for c in "*?["):
        found = open_source(root, clean)
        return [found] if found is not None else []
    if any(c in parent for c in "*?["):
        raise StepError("wildcards are supported in the last path component only")
    try:
        dirfd = root.open_dir(parent)
    except (FileNotFoundError, NotADirectoryError):
        return []
    try:
        names = sorted(n for n in os.listdir(dirfd) if fnmatch.fnmatchcase(n, base))
        rel_parent = parent.lstrip("/")
        return [Source(os.dup(dirfd), n, posixpath.join(rel_parent, n)) for n in names]
    finally:
        os.close(dirfd)


def _chown_at(dirfd: int, name: str, owner: Owner) -> None:
    if owner is not None:
        os.chown(name, owner[0], owner[1], dir_fd=dirfd, follow_symlinks=False)


def dest_dir(root: RootDir, path: str, owner: Owner) -> int:
    """`mkdir -p path` in the rootfs: an fd of the directory (caller closes). Directories it
    creates get `owner`; a non-directory in the way is replaced, as dockerd's COPY does."""
    try:
        resolved = root.resolve(path)
    except OSError as err:
        raise StepError(f"{err.strerror or err}".lower()) from None
    fd = os.open(".", _DIR_FLAGS, dir_fd=root.fd)  # the root's own fd is O_PATH
    try:
        for comp in [p for p in resolved.split("/") if p]:
            try:
                nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(comp, 0o755, dir_fd=fd)
                _chown_at(fd, comp, owner)
                nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
            except OSError as err:
                if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                if stat.S_ISLNK(os.stat(comp, dir_fd=fd, follow_symlinks=False).st_mode):
                    # resolve() evaluated every link a moment ago: one here now is a swap
                    raise StepError(f"{resolved} changed while the step ran") from None
                os.unlink(comp, dir_fd=fd)
                os.mkdir(comp, 0o755, dir_fd=fd)
                _chown_at(fd, comp, owner)
                nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def dest_slot(root: RootDir, dest: str, as_dir: bool, name: str, owner: Owner) -> tuple[int, str]:
    """Where a file source goes: (directory fd, entry name). Into `dest` when it is meant
    as a directory (or is one, its links followed in the root), else at `dest` itself."""
    if as_dir:
        return dest_dir(root, dest, owner), name
    try:
        return root.open_dir(dest), name  # an existing directory
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as err:
        raise StepError(f"{err.strerror or err}".lower()) from None
    try:
        resolved = root.resolve(dest)  # a final link is written through, in the root
    except OSError as err:
        raise StepError(f"{err.strerror or err}".lower()) from None
    parent, base = _split(resolved)
    if base == ".":
        raise StepError(f"{dest} is not a valid destination")
    return dest_dir(root, parent, owner), base


def _clear(dirfd: int, name: str, *, keep_dir: bool = False) -> bool:
    """Remove whatever is at name (never following it); True if a directory was kept."""
    try:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return True
        shutil.rmtree(name, dir_fd=dirfd)
    else:
        os.unlink(name, dir_fd=dirfd)
    return False


def _set_attrs(fd: int, owner: Owner, st: os.stat_result, mode: int | None) -> None:
    uid, gid = owner if owner is not None else (st.st_uid, st.st_gid)
    os.fchown(fd, uid, gid)
    os.fchmod(fd, mode if mode is not None else stat.S_IMODE(st.st_mode))  # after chown: it clears set-id bits
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_bytes(src: int, dst: int, size: int) -> None:
    offset = 0
    while offset < size:
        n = os.sendfile(dst, src, offset, min(size - offset, 1 << 30))
        if n == 0:
            break
        offset += n


def _copy_entry(sdir: int, sname: str, st: os.stat_result, ddir: int, dname: str, owner: Owner,
                mode: int | None, hidden: Hidden | None, rel: str) -> None:  # fmt: skip
    if stat.S_ISDIR(st.st_mode):
        if not _clear(ddir, dname, keep_dir=True):
            os.mkdir(dname, 0o700, dir_fd=ddir)
        sfd = os.open(sname, _DIR_FLAGS, dir_fd=sdir)
        try:
            dfd = os.open(dname, _DIR_FLAGS, dir_fd=ddir)
            try:
                _copy_tree(sfd, dfd, owner, mode, hidden, rel)
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)
        return
    if stat.S_ISLNK(st.st_mode):
        _clear(ddir, dname)
        os.symlink(os.readlink(sname, dir_fd=sdir), dname, dir_fd=ddir)
        uid, gid = owner if owner is not None else (st.st_uid, st.st_gid)
        os.chown(dname, uid, gid, dir_fd=ddir, follow_symlinks=False)
        return
    if not stat.S_ISREG(st.st_mode):
        return  # devices, fifos and sockets are not copied
    sfd = os.open(sname, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=sdir)
    try:
        if not stat.S_ISREG(os.fstat(sfd).st_mode):
            return  # swapped since the lstat
        _clear(ddir, dname)
        dfd = os.open(dname, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=ddir)
        try:
            _copy_bytes(sfd, dfd, os.fstat(sfd).st_size)
            _set_attrs(dfd, owner, st, mode)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def _copy_tree(sfd: int, dfd: int, owner: Owner, mode: int | None, hidden: Hidden | None, rel: str) -> None:
    """The contents of directory sfd into directory dfd (Docker's `COPY dir/` semantics)."""
    top = os.fstat(sfd)
    for name in sorted(os.listdir(sfd)):
        child_rel = f"{rel}/{name}" if rel not in ("", ".") else name
        if hidden is not None and hidden(child_rel):
            continue
        st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
        _copy_entry(sfd, name, st, dfd, name, owner, mode, hidden, child_rel)
    _set_attrs(dfd, owner, top, mode)


def copy_source(src: Source, ddir: int, dname: str | None, owner: Owner, mode: int | None,
                hidden: Hidden | None) -> None:  # fmt: skip
    """Copy one source: a directory's contents into the directory `ddir` (dname None), or
    the entry itself as `dname` in `ddir`."""
    st = src.lstat()
    if dname is None:
        sfd = os.open(src.name, _DIR_FLAGS, dir_fd=src.dirfd)
        try:
            _copy_tree(sfd, ddir, owner, mode, hidden, src.rel)
        finally:
            os.close(sfd)
        return
    _copy_entry(src.dirfd, src.name, st, ddir, dname, owner, mode, hidden, src.rel)


def write_bytes(ddir: int, name: str, data: bytes, owner: Owner, mode: int, mtime: float | None = None) -> None:
    """A new regular file `name` in `ddir` holding data (whatever was there is replaced)."""
    _clear(ddir, name)
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=ddir)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if owner is not None:
            os.fchown(fd, *owner)
        os.fchmod(fd, mode)
        if mtime is not None:
            os.utime(fd, (mtime, mtime))
    finally:
        os.close(fd)


def read_text(root: RootDir, path: str) -> str | None:
    """A small regular file of the rootfs (/etc/passwd), or None if it is missing or not a
    regular file (a FIFO there must not block the step)."""
    try:
        return root.read_regular(path, _MAX_ID_FILE).decode(errors="replace")
    except OSError:
        return None
