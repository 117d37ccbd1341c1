"""A container's file system as `docker cp` and `docker export` see it.

This module owns path resolution inside a container (like a chroot would: `..` stops at the
root, absolute symlinks restart at the container root, paths under a bind mount land in the
bind source on the host), the `X-Docker-Container-Path-Stat` value, and the three tar
operations: archive a path (GET), extract a tar into a directory (PUT), export the root.

It must never touch a host path that is not the container's root or one of its mounts,
whatever the container's symlinks or the tar members say. It knows nothing of HTTP: the
route module mounts the root (`ContainerService.rootfs_mounted`), builds a `ContainerFS`
with `view()` and runs the blocking methods here in a worker thread.

Every path is handled in two spaces: a *container path* ("/etc/passwd", always absolute and
clean) and the mount (root fs, volume, bind) plus the path inside it that it maps to through
the mount table. Container paths are evaluated across mounts for Docker's semantics, but no
host path string is ever opened: each mount is a `_sys.rootdir.RootDir`, every open goes
through it (so a symlink a running container swaps in mid-operation is evaluated by the
kernel inside that mount, never on the host: CVE-2018-15664), the tar walk descends by
directory fds, and extraction creates entries with *at() calls in directory fds obtained
through the RootDir. `host_path` stays as a lexical helper for messages and tests.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import posixpath
import shutil
import stat as st
import tarfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from dockyard import errdefs
from dockyard._sys.fs import RootPathError, walk_in_scope
from dockyard._sys.rootdir import RootDir
from dockyard.idmap import IdentityMapping

__all__ = [
    "STAT_HEADER",
    "ContainerFS",
    "ContainerPathNotFound",
    "MountPoint",
    "PathStat",
    "go_file_mode",
    "view",
]

STAT_HEADER = "X-Docker-Container-Path-Stat"

_MAX_SYMLINKS = 255
_CHUNK = 1 << 16
_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC  # a handle on an entry, never followed

# Go's os.FileMode type bits (io/fs): clients decode `mode` with these, not st_mode.
_GO_DIR = 1 << 31
_GO_APPEND = 1 << 30
_GO_SYMLINK = 1 << 27
_GO_DEVICE = 1 << 26
_GO_PIPE = 1 << 25
_GO_SOCKET = 1 << 24
_GO_SETUID = 1 << 23
_GO_SETGID = 1 << 22
_GO_CHARDEV = 1 << 21
_GO_STICKY = 1 << 20


class ContainerPathNotFound(errdefs.NotFound):
    def __init__(self, path: str, ref: str) -> None:
        super().__init__(f"Could not find the file {path} in container {ref}")


def go_file_mode(mode: int) -> int:
    """st_mode -> Go os.FileMode (what Go's os.Lstat(...).Mode() returns)."""
    out = mode & 0o777
    fmt = st.S_IFMT(mode)
    if fmt == st.S_IFDIR:
        out |= _GO_DIR
    elif fmt == st.S_IFLNK:
        out |= _GO_SYMLINK
    elif fmt == st.S_IFIFO:
        out |= _GO_PIPE
    elif fmt == st.S_IFSOCK:
        out |= _GO_SOCKET
    elif fmt == st.S_IFBLK:
        out |= _GO_DEVICE
    elif fmt == st.S_IFCHR:
        out |= _GO_DEVICE | _GO_CHARDEV
    if mode & st.S_ISUID:
        out |= _GO_SETUID
    if mode & st.S_ISGID:
        out |= _GO_SETGID
    if mode & st.S_ISVTX:
        out |= _GO_STICKY
    return out


def _go_time(ns: int) -> str:
    """Go's time.Time JSON (RFC 3339 with nanoseconds, trailing zeros trimmed), in UTC."""
    secs, nanos = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    frac = f".{nanos:09d}".rstrip("0") if nanos else ""
    return f"{base}{frac}Z"


@dataclass(frozen=True)
class MountPoint:
    destination: str  # clean absolute container path
    source: Path  # host path
    rw: bool


@dataclass(frozen=True)
class PathStat:
    name: str
    size: int
    mode: int  # Go os.FileMode bits
    mtime: str
    link_target: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "mode": self.mode, "mtime": self.mtime,
                "linkTarget": self.link_target}  # fmt: skip

    def header_value(self) -> str:
        # standard (not URL-safe) base64, as the Go client decodes it
        return base64.b64encode(json.dumps(self.to_json()).encode()).decode()

    @property
    def is_dir(self) -> bool:
        return bool(self.mode & _GO_DIR)


def _path_error(err: OSError, asked: str) -> Exception:
    """A path the caller gave that the kernel refuses (a component over 255 bytes, a path
    over 4096) is the caller's error; anything else stays an internal one."""
    if err.errno == errno.ENAMETOOLONG:
        return errdefs.InvalidArgument(f"invalid path: a name in {asked[:64]!r} is too long")
    return err


def _clean(path: str) -> str:
    """Container path: absolute and lexically clean ("a/../b" -> "/b")."""
    return posixpath.normpath("/" + path).replace("//", "/")


def _abs_preserving(path: str) -> str:
    """Like Docker's PreserveTrailingDotOrSeparator(Join("/", path), path)."""
    cleaned = _clean(path)
    if path.endswith("/.") or path == ".":
        return cleaned.rstrip("/") + "/."
    if path.endswith("/") and cleaned != "/":
        return cleaned + "/"
    return cleaned


def _go_base(path: str) -> str:
    """Go's filepath.Base: trailing slashes dropped, "/" for the root."""
    stripped = path.rstrip("/")
    if not stripped:
        return "/"
    return stripped.rsplit("/", 1)[-1]


def _split(path: str) -> tuple[str, str]:
    """Go's filepath.Split: ("/a/b/", "c") for "/a/b/c"; ("/a/b/", "") for "/a/b/"."""
    i = path.rfind("/")
    return path[: i + 1], path[i + 1 :]


class ContainerFS:
    """One container's view: its root file system plus its mounts, resolved chroot-style.

    `ref` is the container name or id as the client gave it (Docker names it in errors).
    Each public operation opens a RootDir per directory mount it touches and closes them
    when it returns; the object holds no fd between operations.
    """

    def __init__(
        self, rootfs: Path, mounts: Iterable[MountPoint], *, readonly_rootfs: bool, ref: str,
        id_mapping: IdentityMapping | None = None,
    ) -> None:  # fmt: skip
        self.ref = ref
        # a remapped daemon: archives carry the ids the container sees, files the host's
        self.id_mapping = id_mapping
        self.rootfs = rootfs
        self._roots: dict[str, RootDir] = {}
        self._depth = 0
        root = MountPoint("/", rootfs, not readonly_rootfs)
        self._mounts: list[MountPoint] = [root]  # longest destination first
        # A mount destination is itself resolved in the container (a bind on /var/run lands
        # on /run when /var/run -> /run), against the mounts set up before it, as runc does.
        by_dest: dict[str, MountPoint] = {}
        with self._session():
            for m in mounts:
                dest = self._eval(_clean(m.destination), follow_last=True)
                if dest == "/":
                    continue
                by_dest[dest] = MountPoint(dest, m.source, m.rw)
                self._mounts = sorted(
                    [root, *by_dest.values()], key=lambda x: len(x.destination), reverse=True
                )
        self._dests = {m.destination for m in self._mounts}

    def __repr__(self) -> str:
        return f"<ContainerFS {self.ref} root={self.rootfs} mounts={len(self._mounts) - 1}>"

    # ---- the mounts' roots ----------------------------------------------------------------

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        """Roots opened inside stay open until the outermost session ends."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth:
                roots, self._roots = self._roots, {}
                for rd in roots.values():
                    rd.close()

    def _root(self, m: MountPoint) -> RootDir | None:
        """The RootDir of a directory mount; None for a file bound on a path (hosts, a file
        bind), which has nothing below it to resolve."""
        assert self._depth, "mount roots are opened inside a session"
        rd = self._roots.get(m.destination)
        if rd is None:
            try:
                rd = RootDir(m.source)
            except NotADirectoryError:
                return None
            self._roots[m.destination] = rd
        return rd

    def _open(self, cpath: str, flags: int) -> int:
        """An fd for a clean container path, opened in its mount's root (the last component
        is followed unless `flags` has O_NOFOLLOW). Caller closes."""
        m = self.mount_for(cpath)
        rel = cpath[len(m.destination) :].lstrip("/") if m.destination != "/" else cpath.lstrip("/")
        rd = self._root(m)
        if rd is None:
            if rel:
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), cpath)
            # the bound file itself, as the container sees it (a bind resolves its source)
            return os.open(m.source, (flags & ~os.O_NOFOLLOW) | os.O_CLOEXEC)
        return rd.open(rel, flags)

    def _open_parent(self, cpath: str, *, create: bool) -> tuple[int, str]:
        """(fd of the directory that holds cpath, its last component), the directory opened
        in its mount's root and made (0755, `mkdir -p` style) when `create`."""
        m = self.mount_for(cpath)
        rel = cpath[len(m.destination) :].lstrip("/") if m.destination != "/" else cpath.lstrip("/")
        parent, name = posixpath.split(rel)
        rd = self._root(m)
        if rd is None or not name:
            raise errdefs.InvalidArgument(f"cannot write to {cpath!r}: not a directory")
        try:
            return rd.open_dir(parent, create=create), name
        except NotADirectoryError:
            raise errdefs.InvalidArgument(f"cannot write to {cpath!r}: a parent is not a directory") from None

    def _lstat_link(self, cpath: str) -> tuple[os.stat_result, str | None]:
        """lstat of a container path in its mount, and the target if it is a symlink."""
        fd = self._open(cpath, _PATH)
        try:
            info = os.fstat(fd)
            return info, os.readlink("", dir_fd=fd) if st.S_ISLNK(info.st_mode) else None
        finally:
            os.close(fd)

    # ---- resolution ---------------------------------------------------------------------

    def mount_for(self, cpath: str) -> MountPoint:
        for m in self._mounts:
            d = m.destination
            if d == "/" or cpath == d or cpath.startswith(d + "/"):
                return m
        raise AssertionError("the root mount always matches")

    def host_path(self, cpath: str) -> Path:
        """The host path of a clean container path (lexical: no symlink is evaluated). For
        messages and tests only: nothing here opens it."""
        m = self.mount_for(cpath)
        rel = cpath[len(m.destination) :].lstrip("/") if m.destination != "/" else cpath.lstrip("/")
        return m.source / rel if rel else m.source

    def _eval(self, path: str, *, follow_last: bool) -> str:
        """Evaluates symlinks in the scope of the container, across its mounts
        (`_sys.fs.walk_in_scope`, Docker's FollowSymlinkInScope).

        Components that do not exist are kept lexically, so the result may name a path to
        be created. The answer may be stale by the time it is used (a running container can
        change its files): it only picks the mount and the name; opening goes through the
        mount's RootDir, which evaluates whatever is there then, inside that mount.
        """

        def link_at(components: list[str], last: bool) -> str | None:
            try:
                return self._lstat_link("/" + "/".join(components))[1]
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError as err:
                if err.errno == errno.ELOOP:  # the mount's own walk met a loop
                    raise RootPathError("too many levels of symbolic links") from None
                raise _path_error(err, path) from None

        try:
            with self._session():
                return "/" + "/".join(
                    walk_in_scope(path, link_at, follow_last=follow_last, max_links=_MAX_SYMLINKS)
                )
        except RootPathError:
            raise errdefs.InvalidArgument(f"too many levels of symbolic links: {path}") from None

    def resolve(self, path: str) -> str:
        """Container path with every symlink evaluated, the last one included."""
        return self._eval(_clean(path), follow_last=True)

    def _resolve_entry(self, abs_path: str) -> tuple[str, bool]:
        """Docker's ResolvePath: the directory part is evaluated, the last element is not.

        Returns (container path, must_be_dir): a trailing "/" or "/." means the path names
        a directory (lstat("file/") fails with ENOTDIR).
        """
        dir_part, base = _split(abs_path)
        resolved_dir = self._eval(dir_part, follow_last=True)
        if base in ("", "."):
            return resolved_dir, True
        return posixpath.join(resolved_dir, base), False

    # ---- stat (HEAD) -----------------------------------------------------------------------

    def stat(self, path: str) -> PathStat:
        with self._session():
            abs_path = _abs_preserving(path)
            cpath, must_be_dir = self._resolve_entry(abs_path)
            info = self._lstat(cpath, path)
            if must_be_dir and not st.S_ISDIR(info.st_mode):
                raise ContainerPathNotFound(path, self.ref)
            link_target = ""
            if st.S_ISLNK(info.st_mode):
                link_target = self._eval(abs_path, follow_last=True)
            return PathStat(
                name=_go_base(abs_path),
                size=info.st_size,
                mode=go_file_mode(info.st_mode),
                mtime=_go_time(info.st_mtime_ns),
                link_target=link_target,
            )

    def _lstat(self, cpath: str, asked: str) -> os.stat_result:
        try:
            return self._lstat_link(cpath)[0]
        except (FileNotFoundError, NotADirectoryError):
            raise ContainerPathNotFound(asked, self.ref) from None
        except OSError as err:
            raise _path_error(err, asked) from None

    # ---- archive (GET) ----------------------------------------------------------------------

    def write_archive(self, path: str, out: BinaryIO) -> None:
        """Tar of `path` (not following a final symlink), entries named after its basename.

        Like Docker: "/a/dir" gives "dir", "dir/..."; "/a/dir/." gives ".", "./x", ...; "/"
        gives "/", "/bin", ... (the client rebases the first element onto its destination)
        """
        with self._session():
            abs_path = _abs_preserving(path)
            cpath, must_be_dir = self._resolve_entry(abs_path)
            try:
                top = self._open(cpath, _PATH)
            except (FileNotFoundError, NotADirectoryError):
                raise ContainerPathNotFound(path, self.ref) from None
            if must_be_dir and not st.S_ISDIR(os.fstat(top).st_mode):
                os.close(top)
                raise ContainerPathNotFound(path, self.ref)
            with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                self._tar_tree(tf, top, cpath, _go_base(abs_path))

    def _tar_tree(self, tf: tarfile.TarFile, top: int, top_cpath: str, top_name: str) -> None:
        """Archives the entry `top` (an O_PATH fd, closed here) and what is below it, depth
        first, parents before children, names sorted, crossing into mounts. The walk holds
        one directory fd per level and opens each child relative to its parent's fd with
        O_NOFOLLOW, so nothing a running container renames or links meanwhile can take it
        outside the entry it started from (or the mount it crossed into)."""
        inodes: dict[tuple[int, int], str] = {}
        # frames: (directory fd, its container path, its archive name, children left)
        stack: list[tuple[int, str, str, Iterator[str]]] = []
        try:
            frame = self._tar_entry(tf, top, top_cpath, top_name, inodes)
            if frame is not None:
                stack.append(frame)
            while stack:
                dfd, cpath, name, children = stack[-1]
                child = next(children, None)
                if child is None:
                    os.close(dfd)
                    stack.pop()
                    continue
                child_cpath = cpath.rstrip("/") + "/" + child
                if name == "":  # export: names relative to the root, no "." entry
                    child_name = child
                elif name == "/":
                    child_name = "/" + child
                else:
                    child_name = f"{name}/{child}"
                try:
                    if child_cpath in self._dests:
                        cfd = self._open(child_cpath, _PATH)  # the mount's root, not what is under it
                    else:
                        cfd = os.open(child, _PATH, dir_fd=dfd)
                except OSError:
                    continue  # removed while we walked (running container)
                frame = self._tar_entry(tf, cfd, child_cpath, child_name, inodes)
                if frame is not None:
                    stack.append(frame)
        finally:
            for dfd, *_ in stack:
                os.close(dfd)

    def _tar_entry(
        self, tf: tarfile.TarFile, pfd: int, cpath: str, arcname: str, inodes: dict[tuple[int, int], str]
    ) -> tuple[int, str, str, Iterator[str]] | None:
        """Writes one entry from its O_PATH fd (closed here); a directory's frame is returned."""
        try:
            info = os.fstat(pfd)
            ti = _tarinfo(info, arcname)
            if ti is None:
                return None  # sockets are not archived
            if self.id_mapping is not None:
                ti.uid, ti.gid = self.id_mapping.to_container(ti.uid, ti.gid)
            if not st.S_ISDIR(info.st_mode) and info.st_nlink > 1:
                key = (info.st_dev, info.st_ino)
                if key in inodes:
                    ti.type, ti.linkname, ti.size = tarfile.LNKTYPE, inodes[key], 0
                    tf.addfile(ti)
                    return None
                inodes[key] = arcname
            if st.S_ISLNK(info.st_mode):
                ti.linkname = os.readlink("", dir_fd=pfd)
                tf.addfile(ti)
            elif st.S_ISREG(info.st_mode):
                # reopen the inode we hold (not the name): a swap cannot put a FIFO or a
                # host file here; O_NONBLOCK in case of a mandatory lock
                try:
                    fd = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                except OSError:
                    return None
                with os.fdopen(fd, "rb") as f:
                    tf.addfile(ti, _Exactly(f, ti.size))
            elif st.S_ISDIR(info.st_mode):
                tf.addfile(ti)
                try:
                    dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
                except OSError:
                    return None
                try:
                    children = set(os.listdir(dfd))
                except OSError:
                    os.close(dfd)
                    return None
                prefix = cpath.rstrip("/") + "/"
                for d in self._dests:  # mount points missing from the directory still show up
                    if d != "/" and d.startswith(prefix) and "/" not in d[len(prefix) :]:
                        children.add(d[len(prefix) :])
                return dfd, cpath, arcname, iter(sorted(children))
            else:
                tf.addfile(ti)
            return None
        finally:
            os.close(pfd)

    # ---- export -------------------------------------------------------------------------------

    def export(self, out: BinaryIO) -> None:
        """The root file system alone, as `docker export` gives it (no mounts, no "." entry)."""
        rootfs_only = ContainerFS(self.rootfs, (), readonly_rootfs=True, ref=self.ref)
        with rootfs_only._session():
            top = rootfs_only._open("/", _PATH)
            with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                rootfs_only._tar_tree(tf, top, "/", "")

    # ---- extract (PUT) --------------------------------------------------------------------

    def check_writable(self, cpath: str) -> None:
        m = self.mount_for(cpath)
        if m.rw:
            return
        if m.destination == "/":
            raise errdefs.PermissionDenied("container rootfs is marked read-only")
        raise errdefs.PermissionDenied("mounted volume is marked read-only")

    def extract(
        self,
        path: str,
        src: BinaryIO,
        *,
        no_overwrite_dir_non_dir: bool = False,
        owner: tuple[int, int] | None = None,
    ) -> None:
        """Extracts a tar (plain, gzip, bzip2 or xz) into the directory `path`.

        The last element of `path` is followed (so a symlink to a directory works). Every
        member is placed by resolving its parent in the container; `..` escapes are refused.
        `owner` overrides the members' uid/gid (copyUIDGID).
        """
        with self._session():
            dest = self._eval(_clean(path), follow_last=True)
            info = self._lstat(dest, path)
            if not st.S_ISDIR(info.st_mode):
                raise errdefs.InvalidArgument("extraction point is not a directory")
            self.check_writable(dest)
            dir_times: list[tuple[str, int]] = []
            try:
                tf = tarfile.open(fileobj=src, mode="r|*")
            except tarfile.ReadError as err:
                raise errdefs.InvalidArgument(f"invalid tar archive: {err}") from None
            with tf:
                try:
                    for member in tf:
                        self._extract_member(tf, member, dest, no_overwrite_dir_non_dir, owner, dir_times)
                except (tarfile.ReadError, EOFError, tarfile.StreamError) as err:
                    raise errdefs.InvalidArgument(f"invalid tar archive: {err}") from None
            for cpath, mtime in reversed(dir_times):
                try:
                    fd = self._open(cpath, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
                except OSError:
                    continue
                try:
                    os.utime(fd, (mtime, mtime))
                finally:
                    os.close(fd)

    def _inside(self, dest: str, name: str) -> str:
        """Container path of a member name under dest; refuses names that climb out."""
        joined = _clean(dest + "/" + name)
        if dest != "/" and joined != dest and not joined.startswith(dest + "/"):
            raise errdefs.InvalidArgument(f"{name!r} is outside of {dest!r}")
        return joined

    def _place(self, joined: str) -> str:
        """Where a member lands: its parent evaluated in the container, its name kept."""
        parent, name = posixpath.split(joined)
        return posixpath.join(self._eval(parent, follow_last=True), name)

    def _host_owner(self, m: tarfile.TarInfo, owner: tuple[int, int] | None) -> tuple[int, int]:
        """The host ids a member gets: copyUIDGID's owner or the member's own, shifted into
        a remapped daemon's range (archives carry the ids the container sees)."""
        uid, gid = owner if owner is not None else (m.uid, m.gid)
        if self.id_mapping is None:
            return uid, gid
        try:
            return self.id_mapping.to_host(uid, gid)
        except ValueError as err:
            raise errdefs.InvalidArgument(f"cannot copy {m.name!r} into the container: {err}") from None

    def _extract_member(
        self,
        tf: tarfile.TarFile,
        m: tarfile.TarInfo,
        dest: str,
        no_overwrite: bool,
        owner: tuple[int, int] | None,
        dir_times: list[tuple[str, int]],
    ) -> None:
        joined = self._inside(dest, m.name)
        if joined == dest:
            return  # "." or "./": the destination itself keeps its own metadata (as Docker)
        owner = self._host_owner(m, owner)
        target = self._place(joined)
        self.check_writable(target)
        if target in self._dests:
            self._extract_onto_mount_point(m, target, no_overwrite, owner, dir_times)
            return
        parent, name = self._open_parent(target, create=True)
        try:
            existing = _stat_at(parent, name)
            if existing is not None:
                _check_overwrite(existing, m, target, no_overwrite)
                if not (m.isdir() and st.S_ISDIR(existing.st_mode)):
                    _remove_at(parent, name, existing)
            self._create_at(tf, m, parent, name, dest, existing, owner)
        finally:
            os.close(parent)
        if m.isdir():
            dir_times.append((target, int(m.mtime)))

    def _extract_onto_mount_point(
        self,
        m: tarfile.TarInfo,
        target: str,
        no_overwrite: bool,
        owner: tuple[int, int] | None,
        dir_times: list[tuple[str, int]],
    ) -> None:
        """A member named like a mount point: a directory over a directory takes its
        metadata; anything else would replace the mount, which is refused."""
        existing, _ = self._lstat_link(target)
        _check_overwrite(existing, m, target, no_overwrite)
        if not (m.isdir() and st.S_ISDIR(existing.st_mode)):
            raise errdefs.InvalidArgument(f"cannot replace mount point {target!r}")
        fd = self._open(target, os.O_RDONLY | os.O_DIRECTORY)
        try:
            _attrs_fd(fd, m, owner)
        finally:
            os.close(fd)
        dir_times.append((target, int(m.mtime)))

    def _create_at(
        self,
        tf: tarfile.TarFile,
        m: tarfile.TarInfo,
        parent: int,
        name: str,
        dest: str,
        existing: os.stat_result | None,
        owner: tuple[int, int] | None,
    ) -> None:
        """Creates one member as `name` in the directory fd `parent`; *at() calls only, none
        of which follows a final symlink."""
        if m.isdir():
            if existing is None or not st.S_ISDIR(existing.st_mode):
                os.mkdir(name, 0o700, dir_fd=parent)
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            try:
                _attrs_fd(fd, m, owner)
            finally:
                os.close(fd)
            return
        if m.isreg():
            fd = os.open(
                name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent
            )
            with os.fdopen(fd, "wb") as out:
                f = tf.extractfile(m)
                assert f is not None
                while chunk := f.read(_CHUNK):
                    out.write(chunk)
                out.flush()
                _attrs_fd(fd, m, owner)
                os.utime(fd, (int(m.mtime), int(m.mtime)))
            return
        if m.islnk():
            src = self._place(self._inside(dest, m.linkname))
            try:
                src_parent, src_name = self._open_parent(src, create=False)
            except FileNotFoundError:
                raise errdefs.InvalidArgument(f"hard link target {m.linkname!r} not found") from None
            try:
                os.link(src_name, name, src_dir_fd=src_parent, dst_dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                raise errdefs.InvalidArgument(f"hard link target {m.linkname!r} not found") from None
            except OSError as err:
                if err.errno != errno.EXDEV:
                    raise
                raise errdefs.InvalidArgument(f"hard link target {m.linkname!r} is on another mount") from None
            finally:
                os.close(src_parent)
            return
        if m.issym():
            os.symlink(m.linkname, name, dir_fd=parent)  # read later in the container's scope
        elif m.ischr() or m.isblk():
            kind = st.S_IFCHR if m.ischr() else st.S_IFBLK
            os.mknod(name, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor), dir_fd=parent)
        elif m.isfifo():
            os.mkfifo(name, m.mode & 0o7777, dir_fd=parent)
        else:
            return  # other types (contiguous files come as regular; xattr/pax are headers)
        uid, gid = owner if owner is not None else (m.uid, m.gid)
        try:
            os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
        except OSError:
            pass
        if not m.issym():
            os.chmod(name, m.mode & 0o7777, dir_fd=parent, follow_symlinks=False)
        try:
            os.utime(name, (int(m.mtime), int(m.mtime)), dir_fd=parent, follow_symlinks=False)
        except OSError:
            pass


def _check_overwrite(existing: os.stat_result, m: tarfile.TarInfo, target: str, no_overwrite: bool) -> None:
    if no_overwrite and st.S_ISDIR(existing.st_mode) and not m.isdir():
        raise errdefs.InvalidArgument(f"cannot overwrite directory {target!r} with non-directory {m.name!r}")
    if no_overwrite and not st.S_ISDIR(existing.st_mode) and m.isdir():
        raise errdefs.InvalidArgument(f"cannot overwrite non-directory {target!r} with directory {m.name!r}")


def _attrs_fd(fd: int, m: tarfile.TarInfo, owner: tuple[int, int] | None) -> None:
    uid, gid = owner if owner is not None else (m.uid, m.gid)
    try:
        os.fchown(fd, uid, gid)
    except OSError:
        pass
    os.fchmod(fd, m.mode & 0o7777)  # after chown: chown clears set-id bits


def _tarinfo(info: os.stat_result, arcname: str) -> tarfile.TarInfo | None:
    """The header tarfile.gettarinfo would make from an lstat (link names filled in by the
    caller), without host user and group names; None for a socket."""
    mode = info.st_mode
    ti = tarfile.TarInfo(arcname)
    if st.S_ISREG(mode):
        ti.type, ti.size = tarfile.REGTYPE, info.st_size
    elif st.S_ISDIR(mode):
        ti.type = tarfile.DIRTYPE
    elif st.S_ISLNK(mode):
        ti.type = tarfile.SYMTYPE
    elif st.S_ISFIFO(mode):
        ti.type = tarfile.FIFOTYPE
    elif st.S_ISCHR(mode) or st.S_ISBLK(mode):
        ti.type = tarfile.CHRTYPE if st.S_ISCHR(mode) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(info.st_rdev), os.minor(info.st_rdev)
    else:
        return None
    ti.mode = st.S_IMODE(mode)
    ti.uid, ti.gid = info.st_uid, info.st_gid
    ti.mtime = int(info.st_mtime)  # a float mtime would cost a PAX header per entry
    ti.uname = ti.gname = ""  # host names mean nothing in the container; ids do
    return ti


def _remove_at(dfd: int, name: str, info: os.stat_result) -> None:
    if st.S_ISDIR(info.st_mode):
        shutil.rmtree(name, dir_fd=dfd)  # the fd-based rmtree: never follows a symlink
    else:
        os.unlink(name, dir_fd=dfd)


def _stat_at(dfd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


class _Exactly:
    """Reads exactly `size` bytes: a file that shrank since its header was written is padded
    with zeros (a running container may be writing), one that grew is cut."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self._left = size

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self._left:
            n = self._left
        data = self._f.read(n) if n else b""
        if len(data) < n:
            data += b"\0" * (n - len(data))
        self._left -= len(data)
        return data


def view(
    record: dict[str, Any], rootfs: Path, bundle: Path, ref: str, id_mapping: IdentityMapping | None = None
) -> ContainerFS:
    """The ContainerFS of a container record: its bind mounts and volumes, and the
    /etc/hostname, /etc/hosts and /etc/resolv.conf Docker gives every container."""
    readonly = bool(record["HostConfig"].get("ReadonlyRootfs"))
    mounts: list[MountPoint] = []
    for name in ("hostname", "hosts", "resolv.conf"):
        dest = "/etc/" + name
        if (bundle / name).is_file():
            mounts.append(MountPoint(dest, bundle / name, not readonly))
    for m in record.get("Mounts") or []:
        if m.get("Source") and m.get("Destination") and m.get("Type", "bind") in ("bind", "volume"):
            mounts.append(MountPoint(m["Destination"], Path(m["Source"]), bool(m.get("RW", True))))
    return ContainerFS(rootfs, mounts, readonly_rootfs=readonly, ref=ref, id_mapping=id_mapping)
