"""File access confined to a root directory by file descriptor: the one way the daemon
touches container, image and volume content from the host.

Owns `openat2(2)` (through ctypes) and `RootDir`, which holds an `O_PATH` descriptor of a
root and opens paths *in* it: every symlink met on the way (absolute or relative, swapped in
by a running container a microsecond ago or not) is evaluated by the kernel with that root
as "/", and `..` stops there (`RESOLVE_IN_ROOT`). There is no string path resolved once and
used later, so there is nothing to race.

On kernels without openat2 (before 5.6, or a seccomp filter that answers ENOSYS) the same
contract is kept by a walk of our own: one component at a time, each opened `O_NOFOLLOW`
relative to a directory fd we hold, symlinks read with `readlinkat` and re-evaluated from
the root fd (the scope rule of `_sys.fs.walk_in_scope`), `..` popping our own fd stack
(never opening ".." on disk, so a directory moved out of the root cannot take us along).

It must not decide anything: callers translate its OSErrors (`NotRegularFile`,
`FileTooLarge` included) into their own errors. Flow::

    with RootDir(rootfs) as root:
        data = root.read_regular("/etc/passwd", 1 << 20)   # never a FIFO, never the host's
        fd = root.open_dir("/app/data", create=True)        # mkdir -p, in the root
        os.close(fd)
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from types import TracebackType

from dockyard._sys.fs import RootPathError, walk_in_scope

__all__ = [
    "HAVE_OPENAT2",
    "RESOLVE_BENEATH",
    "RESOLVE_IN_ROOT",
    "RESOLVE_NO_MAGICLINKS",
    "RESOLVE_NO_SYMLINKS",
    "RESOLVE_NO_XDEV",
    "FileTooLarge",
    "NotRegularFile",
    "RootDir",
    "copy_tree",
    "openat2",
]

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

_SYS_OPENAT2 = 437  # the same number on every architecture (a syscall added after the unification)
_MAX_SYMLINKS = 40  # as Linux's path walk allows
_EAGAIN_RETRIES = 64  # RESOLVE_IN_ROOT answers EAGAIN when a rename raced a ".."


class NotRegularFile(OSError):
    """read_regular met a FIFO, device, socket, directory or symlink."""


class FileTooLarge(OSError):
    """read_regular met a file over its limit."""


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): open `path` relative to `dirfd` with RESOLVE_* restrictions. Raises
    OSError (ENOSYS when the kernel lacks it); returns the new fd, which the caller closes."""
    # the kernel refuses a mode unless the call may create a file
    creates = bool(flags & os.O_CREAT) or flags & os.O_TMPFILE == os.O_TMPFILE
    how = _OpenHow(flags, mode if creates else 0, resolve)
    raw = os.fsencode(path)
    fd = _syscall(
        ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd), ctypes.c_char_p(raw),
        ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)),
    )  # fmt: skip
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)


def _probe() -> bool:
    try:
        fd = openat2(-100, "/", os.O_PATH | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT)  # AT_FDCWD
    except OSError:
        return False
    os.close(fd)
    return True


HAVE_OPENAT2 = _probe()


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


class RootDir:
    """A directory used as "/" for every lookup made through it.

    `root` is a path (trusted: it is ours, e.g. containers/<id>/rootfs) or an fd (dup'ed; the
    caller keeps its own). `use_openat2=False` forces the portable walk (tests use it).
    """

    def __init__(self, root: str | os.PathLike[str] | int, *, use_openat2: bool | None = None) -> None:
        if isinstance(root, int):
            self.fd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root)
        else:
            self.fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._openat2 = HAVE_OPENAT2 if use_openat2 is None else use_openat2 and HAVE_OPENAT2

    def __repr__(self) -> str:
        return f"<RootDir fd={self.fd} openat2={self._openat2}>"

    def __enter__(self) -> RootDir:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # ---- opening ------------------------------------------------------------------------

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        """An fd for `path` resolved in the root (open(2) flags: O_NOFOLLOW leaves a final
        symlink unfollowed, O_CREAT creates in the resolved parent). Caller closes."""
        flags |= os.O_CLOEXEC
        if not _parts(path):
            path = "."
        if self._openat2:
            for _ in range(_EAGAIN_RETRIES):
                try:
                    return openat2(self.fd, path, flags, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
                except OSError as err:
                    if err.errno != errno.EAGAIN:
                        raise
            raise OSError(errno.EAGAIN, "path resolution kept racing a rename", path)
        return self._walk_open(path, flags, mode)

    def _walk_open(
        self, path: str, flags: int, mode: int, *, create_dirs: int | None = None, owner: tuple[int, int] | None = None
    ) -> int:
        """The portable walk (see the module docstring). With `create_dirs` (a mode), missing
        directories are made along the way and the final one too, as `mkdir -p`, each given
        `owner` when set (never following a link: one swapped in meanwhile keeps its owner)."""
        parts = _parts(path)
        if path.endswith("/") and not flags & os.O_CREAT:
            flags |= os.O_DIRECTORY
        stack = [os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.fd)]
        links = 0
        try:
            while parts:
                part = parts.pop(0)
                if part == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                    continue
                last = not parts
                if last and create_dirs is None:
                    followed = self._last_link(stack[-1], part, flags, mode)
                    if isinstance(followed, int):
                        return followed
                    target = followed
                else:
                    try:
                        fd = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
                    except FileNotFoundError:
                        if create_dirs is None:
                            raise
                        try:
                            os.mkdir(part, create_dirs, dir_fd=stack[-1])
                        except FileExistsError:  # made (or swapped) meanwhile: look again
                            links += 1
                            if links > _MAX_SYMLINKS:
                                raise
                        else:
                            if owner is not None:
                                os.chown(part, *owner, dir_fd=stack[-1], follow_symlinks=False)
                        parts.insert(0, part)
                        continue
                    info = os.fstat(fd)
                    if stat.S_ISDIR(info.st_mode):
                        stack.append(fd)
                        continue
                    if not stat.S_ISLNK(info.st_mode):
                        os.close(fd)
                        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
                    try:
                        target = os.readlink("", dir_fd=fd)
                    finally:
                        os.close(fd)
                links += 1
                if links > _MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                parts[:0] = _parts(target)
            # the path named a directory we hold (the root, "..", a link to a directory)
            final = flags & ~os.O_CREAT & ~os.O_EXCL if create_dirs is None else flags
            return os.open(".", final, dir_fd=stack[-1])
        finally:
            for fd in stack:
                os.close(fd)

    @staticmethod
    def _last_link(dirfd: int, name: str, flags: int, mode: int) -> int | str:
        """Opens the last component without following it: the fd, or the symlink's target
        when it is one and the caller wants it followed."""
        try:
            fd = os.open(name, flags | os.O_NOFOLLOW, mode, dir_fd=dirfd)
        except OSError as err:
            # ELOOP (ENOTDIR with O_DIRECTORY) when it is a symlink; O_CREAT|O_EXCL on a
            # symlink is EEXIST, as the kernel answers too
            if err.errno not in (errno.ELOOP, errno.ENOTDIR) or flags & os.O_NOFOLLOW:
                raise
            try:
                is_link = stat.S_ISLNK(os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mode)
            except OSError:
                is_link = False
            if not is_link:
                raise
            return os.readlink(name, dir_fd=dirfd)
        if flags & os.O_NOFOLLOW or not flags & os.O_PATH or not stat.S_ISLNK(os.fstat(fd).st_mode):
            return fd
        try:  # O_PATH|O_NOFOLLOW opened the link itself
            return os.readlink("", dir_fd=fd)
        finally:
            os.close(fd)

    def open_dir(
        self, path: str, *, create: bool = False, mode: int = 0o755, owner: tuple[int, int] | None = None
    ) -> int:
        """An O_RDONLY|O_DIRECTORY fd of `path` in the root; with `create`, missing
        directories (the last included) are made with `mode`, like `mkdir -p` in a chroot,
        and each one made is given `owner` (uid, gid) when set. A non-directory on the way
        raises NotADirectoryError. Caller closes."""
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        if not create:
            return self.open(path, flags)
        # creation walks component by component even with openat2: each mkdirat happens in
        # a directory fd that was itself resolved in the root, so it is race-free too
        return self._walk_open(path, flags, 0, create_dirs=mode, owner=owner)

    # ---- looking --------------------------------------------------------------------------

    def lstat(self, path: str) -> os.stat_result:
        """stat of `path` in the root, a final symlink not followed."""
        fd = self.open(path, os.O_PATH | os.O_NOFOLLOW)
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def readlink(self, path: str) -> str:
        """The target text of the symlink at `path` (its parents resolved in the root)."""
        fd = self.open(path, os.O_PATH | os.O_NOFOLLOW)
        try:
            return os.readlink("", dir_fd=fd)
        finally:
            os.close(fd)

    def read_regular(self, path: str, limit: int) -> bytes:
        """The content of a regular file at `path` (a final symlink is followed in the root).
        Anything else (a FIFO that would block, a device) raises NotRegularFile without
        being opened for reading; more than `limit` bytes raises FileTooLarge."""
        pfd = self.open(path, os.O_PATH)
        try:
            if not stat.S_ISREG(os.fstat(pfd).st_mode):
                raise NotRegularFile(errno.EINVAL, "not a regular file", path)
            # reopen the very inode we checked: no second lookup, so no swap in between
            try:
                fd = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
            except FileNotFoundError:  # no /proc: a second lookup, still in the root
                fd = self.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_NOFOLLOW)
        finally:
            os.close(pfd)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise NotRegularFile(errno.EINVAL, "not a regular file", path)
            chunks: list[bytes] = []
            total = 0
            while chunk := os.read(fd, min(1 << 16, limit + 1 - total)):
                chunks.append(chunk)
                total += len(chunk)
                if total > limit:
                    raise FileTooLarge(errno.EFBIG, f"larger than {limit} bytes", path)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def resolve(self, path: str, *, follow_last: bool = True) -> str:
        """The in-root path `path` names once its symlinks are evaluated in the root ("/..."),
        for messages and mount lookup. Missing components are kept as written."""

        def link_at(components: list[str], last: bool) -> str | None:
            rel = "/".join(components)
            try:
                info = self.lstat(rel)
            except (FileNotFoundError, NotADirectoryError):
                return None
            return self.readlink(rel) if stat.S_ISLNK(info.st_mode) else None

        try:  # the same scope rule as every chroot-style lookup of the project
            return "/" + "/".join(walk_in_scope(path, link_at, follow_last=follow_last, max_links=_MAX_SYMLINKS))
        except RootPathError:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path) from None


# ---- copying a tree between two roots --------------------------------------------------------

_KEEP_XATTRS = ("security.capability",)
_KEEP_XATTR_PREFIXES = ("user.",)


def copy_tree(src: int, dst: int) -> int:
    """Copies what is inside the directory fd `src` into the directory fd `dst`, as `cp -a`
    would (owners, modes, times, symlinks as links, hardlinks, FIFOs, devices, user.* and
    security.capability xattrs), by fds only: entries are opened O_NOFOLLOW relative to
    their parent's fd on both sides, so a symlink on either side is copied or refused,
    never followed. An entry that already exists in `dst` is left alone (someone else's
    content wins; nothing is overwritten through it). Returns the number of entries made."""
    made = 0
    seen: dict[tuple[int, int], tuple[str, ...]] = {}
    stack: list[tuple[int, int, tuple[str, ...], list[str], os.stat_result | None]] = []
    stack.append((os.dup(src), os.dup(dst), (), sorted(os.listdir(src)), None))
    try:
        while stack:
            sfd, dfd, rel, names, info = stack[-1]
            if not names:
                stack.pop()
                if info is not None:  # the directory's own times, once its children are in
                    os.utime(dfd, ns=(info.st_atime_ns, info.st_mtime_ns))
                os.close(sfd)
                os.close(dfd)
                continue
            name = names.pop(0)
            try:
                st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            mode = st.st_mode
            key = (st.st_dev, st.st_ino)
            try:
                if stat.S_ISDIR(mode):
                    os.mkdir(name, 0o700, dir_fd=dfd)
                    made += 1
                    csfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
                    try:
                        cdfd = os.open(
                            name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd
                        )
                    except OSError:
                        os.close(csfd)
                        raise
                    _copy_attrs(csfd, cdfd, st)
                    stack.append((csfd, cdfd, (*rel, name), sorted(os.listdir(csfd)), st))
                    continue
                if st.st_nlink > 1 and key in seen and _link_in(dst, seen[key], dfd, name):
                    made += 1
                    continue
                if stat.S_ISREG(mode):
                    _copy_file(sfd, dfd, name, st)
                elif stat.S_ISLNK(mode):
                    os.symlink(os.readlink(name, dir_fd=sfd), name, dir_fd=dfd)
                    os.chown(name, st.st_uid, st.st_gid, dir_fd=dfd, follow_symlinks=False)
                elif stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                    os.mknod(name, stat.S_IFMT(mode) | 0o600, st.st_rdev, dir_fd=dfd)
                    os.chown(name, st.st_uid, st.st_gid, dir_fd=dfd, follow_symlinks=False)
                    os.chmod(name, stat.S_IMODE(mode), dir_fd=dfd, follow_symlinks=False)
                else:
                    continue  # sockets belong to a process, not to the content
                os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dfd, follow_symlinks=False)
                made += 1
                if st.st_nlink > 1:
                    seen[key] = (*rel, name)
            except FileExistsError:
                continue
    finally:
        for sfd, dfd, *_ in stack:
            os.close(sfd)
            os.close(dfd)
    return made


def _copy_file(sfd: int, dfd: int, name: str, st: os.stat_result) -> None:
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=sfd)
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):  # swapped since the stat: skip it
            return
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        try:
            while chunk := os.read(src, 1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
            _copy_attrs(src, out, st)
        finally:
            os.close(out)
    finally:
        os.close(src)


def _copy_attrs(src: int, dst: int, st: os.stat_result) -> None:
    os.fchown(dst, st.st_uid, st.st_gid)
    os.fchmod(dst, stat.S_IMODE(st.st_mode))  # after chown: chown clears set-id bits
    try:
        names = os.listxattr(src)
    except OSError:
        names = []
    for x in names:
        if x in _KEEP_XATTRS or x.startswith(_KEEP_XATTR_PREFIXES):
            try:
                os.setxattr(dst, x, os.getxattr(src, x))
            except OSError:
                pass
    if stat.S_ISREG(st.st_mode):
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def _link_in(root: int, parts: tuple[str, ...], dfd: int, name: str) -> bool:
    """Hardlinks `name` in dfd to the entry `parts` made earlier under root (walked with
    O_NOFOLLOW); False when that entry is gone or moved."""
    fd = os.dup(root)
    try:
        for comp in parts[:-1]:
            nfd = os.open(comp, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nfd
        os.link(parts[-1], name, src_dir_fd=fd, dst_dir_fd=dfd, follow_symlinks=False)
        return True
    except (FileNotFoundError, NotADirectoryError, OSError) as err:
        if isinstance(err, FileExistsError):
            raise
        return False
    finally:
        os.close(fd)
