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
clean) and the *host path* it maps to through the mount table. Resolution walks container
paths one component at a time and only ever lstat()s host paths built from components that
were already checked not to be symlinks.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import posixpath
import stat as st
import tarfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from dockyard import errdefs
from dockyard._sys.fs import RootPathError, walk_in_scope

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
    """

    def __init__(
        self, rootfs: Path, mounts: Iterable[MountPoint], *, readonly_rootfs: bool, ref: str
    ) -> None:
        self.ref = ref
        self.rootfs = rootfs
        root = MountPoint("/", rootfs, not readonly_rootfs)
        self._mounts: list[MountPoint] = [root]  # longest destination first
        # A mount destination is itself resolved in the container (a bind on /var/run lands
        # on /run when /var/run -> /run), against the mounts set up before it, as runc does.
        by_dest: dict[str, MountPoint] = {}
        for m in mounts:
            dest = self._eval(_clean(m.destination), follow_last=True)
            if dest == "/":
                continue
            by_dest[dest] = MountPoint(dest, m.source, m.rw)
            self._mounts = sorted([root, *by_dest.values()], key=lambda x: len(x.destination), reverse=True)

    def __repr__(self) -> str:
        return f"<ContainerFS {self.ref} root={self.rootfs} mounts={len(self._mounts) - 1}>"

    # ---- resolution ---------------------------------------------------------------------

    def mount_for(self, cpath: str) -> MountPoint:
        for m in self._mounts:
            d = m.destination
            if d == "/" or cpath == d or cpath.startswith(d + "/"):
                return m
        raise AssertionError("the root mount always matches")

    def host_path(self, cpath: str) -> Path:
        """The host path of a clean container path (lexical: no symlink is evaluated)."""
        m = self.mount_for(cpath)
        rel = cpath[len(m.destination) :].lstrip("/") if m.destination != "/" else cpath.lstrip("/")
        return m.source / rel if rel else m.source

    def _eval(self, path: str, *, follow_last: bool) -> str:
        """Evaluates symlinks in the scope of the container, across its mounts
        (`_sys.fs.walk_in_scope`, Docker's FollowSymlinkInScope).

        Components that do not exist are kept lexically, so the result may name a path to
        be created.
        """

        def link_at(components: list[str], last: bool) -> str | None:
            host = self.host_path("/" + "/".join(components))
            try:
                info = os.lstat(host)
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError as err:
                raise _path_error(err, path) from None
            return os.readlink(host) if st.S_ISLNK(info.st_mode) else None

        try:
            return "/" + "/".join(walk_in_scope(path, link_at, follow_last=follow_last, max_links=_MAX_SYMLINKS))
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
            return os.lstat(self.host_path(cpath))
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
        abs_path = _abs_preserving(path)
        cpath, must_be_dir = self._resolve_entry(abs_path)
        info = self._lstat(cpath, path)
        if must_be_dir and not st.S_ISDIR(info.st_mode):
            raise ContainerPathNotFound(path, self.ref)
        base = _go_base(abs_path)
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            for child_cpath, arcname in self._walk(cpath, base):
                self._add(tf, child_cpath, arcname)

    def _walk(self, top: str, top_name: str) -> Iterator[tuple[str, str]]:
        """(container path, archive name) depth first, parents before children, crossing mounts."""
        stack: list[tuple[str, str]] = [(top, top_name)]
        while stack:
            cpath, name = stack.pop()
            yield cpath, name
            host = self.host_path(cpath)
            try:
                if not st.S_ISDIR(os.lstat(host).st_mode):
                    continue
                children = set(os.listdir(host))
            except OSError:
                continue
            prefix = cpath.rstrip("/") + "/"
            for m in self._mounts:  # mount points missing from the directory still show up
                d = m.destination
                if d != "/" and d.startswith(prefix) and "/" not in d[len(prefix) :]:
                    children.add(d[len(prefix) :])
            for child in sorted(children, reverse=True):
                if name == "":  # export: names relative to the root, no "." entry
                    child_name = child
                elif name == "/":
                    child_name = "/" + child
                else:
                    child_name = f"{name}/{child}"
                stack.append((prefix + child, child_name))

    def _add(self, tf: tarfile.TarFile, cpath: str, arcname: str) -> None:
        host = self.host_path(cpath)
        try:
            ti = tf.gettarinfo(str(host), arcname)
        except FileNotFoundError:
            return  # removed while we walked (running container)
        if ti is None:
            return  # sockets are not archived
        ti.mtime = int(ti.mtime)  # a float mtime would cost a PAX header per entry
        ti.uname = ti.gname = ""  # host names mean nothing in the container; ids do
        if ti.isreg():
            try:
                fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                return
            with os.fdopen(fd, "rb") as f:
                tf.addfile(ti, _Exactly(f, ti.size))
        else:
            tf.addfile(ti)

    # ---- export -------------------------------------------------------------------------------

    def export(self, out: BinaryIO) -> None:
        """The root file system alone, as `docker export` gives it (no mounts, no "." entry)."""
        rootfs_only = ContainerFS(self.rootfs, (), readonly_rootfs=True, ref=self.ref)
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            for cpath, arcname in rootfs_only._walk("/", ""):
                if cpath != "/":
                    rootfs_only._add(tf, cpath, arcname)

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
        dest = self._eval(_clean(path), follow_last=True)
        info = self._lstat(dest, path)
        if not st.S_ISDIR(info.st_mode):
            raise errdefs.InvalidArgument("extraction point is not a directory")
        self.check_writable(dest)
        dir_times: list[tuple[Path, int]] = []
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
        for host, mtime in reversed(dir_times):
            try:
                os.utime(host, (mtime, mtime), follow_symlinks=False)
            except OSError:
                pass

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

    def _extract_member(
        self,
        tf: tarfile.TarFile,
        m: tarfile.TarInfo,
        dest: str,
        no_overwrite: bool,
        owner: tuple[int, int] | None,
        dir_times: list[tuple[Path, int]],
    ) -> None:
        joined = self._inside(dest, m.name)
        if joined == dest:
            return  # "." or "./": the destination itself keeps its own metadata (as Docker)
        target = self._place(joined)
        self.check_writable(target)
        host = self.host_path(target)
        is_mount_point = any(mp.destination == target for mp in self._mounts)
        os.makedirs(host.parent, mode=0o755, exist_ok=True)
        try:
            existing: os.stat_result | None = os.lstat(host)
        except FileNotFoundError:
            existing = None
        if existing is not None:
            if no_overwrite and st.S_ISDIR(existing.st_mode) and not m.isdir():
                raise errdefs.InvalidArgument(
                    f"cannot overwrite directory {target!r} with non-directory {m.name!r}"
                )
            if no_overwrite and not st.S_ISDIR(existing.st_mode) and m.isdir():
                raise errdefs.InvalidArgument(
                    f"cannot overwrite non-directory {target!r} with directory {m.name!r}"
                )
            if not (m.isdir() and st.S_ISDIR(existing.st_mode)):
                if is_mount_point:
                    raise errdefs.InvalidArgument(f"cannot replace mount point {target!r}")
                _remove(host, existing)
        if m.isdir():
            if existing is None or not st.S_ISDIR(existing.st_mode):
                os.mkdir(host, 0o700)
        elif m.isreg():
            fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                f = tf.extractfile(m)
                assert f is not None
                while chunk := f.read(_CHUNK):
                    out.write(chunk)
        elif m.issym():
            os.symlink(m.linkname, host)  # read later in the container's scope, so never an escape
        elif m.islnk():
            src = self.host_path(self._place(self._inside(dest, m.linkname)))
            try:
                os.link(src, host, follow_symlinks=False)
            except FileNotFoundError:
                raise errdefs.InvalidArgument(f"hard link target {m.linkname!r} not found") from None
        elif m.ischr() or m.isblk():
            kind = st.S_IFCHR if m.ischr() else st.S_IFBLK
            os.mknod(host, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor))
        elif m.isfifo():
            os.mkfifo(host, m.mode & 0o7777)
        else:
            return  # other types (contiguous files come as regular; xattr/pax are headers)
        uid, gid = owner if owner is not None else (m.uid, m.gid)
        if not m.islnk():
            try:
                os.lchown(host, uid, gid)
            except OSError:
                pass
            if not m.issym():
                os.chmod(host, m.mode & 0o7777)
        if m.isdir():
            dir_times.append((host, int(m.mtime)))
        elif not m.islnk():
            try:
                os.utime(host, (int(m.mtime), int(m.mtime)), follow_symlinks=False)
            except OSError:
                pass


def _remove(host: Path, info: os.stat_result) -> None:
    if st.S_ISDIR(info.st_mode):
        import shutil

        shutil.rmtree(host)
    else:
        os.unlink(host)


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


def view(record: dict[str, Any], rootfs: Path, bundle: Path, ref: str) -> ContainerFS:
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
    return ContainerFS(rootfs, mounts, readonly_rootfs=readonly, ref=ref)
