"""RootDir: every lookup stays in its root, through openat2 and through the portable walk."""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard._sys import rootdir
from dockyard._sys.rootdir import (
    HAVE_OPENAT2,
    RESOLVE_BENEATH,
    RESOLVE_IN_ROOT,
    FileTooLarge,
    NotRegularFile,
    RootDir,
    openat2,
)

MODES = [pytest.param(True, id="openat2"), pytest.param(False, id="walk")]
# Linux has had openat2 since 5.6: on such a kernel a missing HAVE_OPENAT2 is a broken
# probe (every lookup would take the slower walk), not a reason to skip the openat2 tests.
KERNEL_HAS_OPENAT2 = tuple(int(x) for x in os.uname().release.split(".")[:2]) >= (5, 6)


def _require_openat2() -> None:
    if not HAVE_OPENAT2:
        assert not KERNEL_HAS_OPENAT2, f"openat2 not detected on kernel {os.uname().release}"
        pytest.skip(f"kernel {os.uname().release} predates openat2")


@pytest.fixture(params=MODES)
def use_openat2(request: pytest.FixtureRequest) -> bool:
    if request.param:
        _require_openat2()
    return bool(request.param)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A stand-in for the host's files, beside the root: its content must never show."""
    h = tmp_path / "host"
    h.mkdir()
    (h / "secret").write_text("HOST SECRET")
    return h


@pytest.fixture
def root(tmp_path: Path, host: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (r / "host").mkdir()
    (r / "host" / "secret").write_text("in root")
    (r / "abs").symlink_to(host)  # absolute: must mean root/<host path>
    (r / "up").symlink_to("../../../../../../host")  # climbs: must stop at root
    (r / "toroot").symlink_to("/")
    (r / "dangling").symlink_to("/made/here")
    (r / "loop").symlink_to("loop")
    (r / "file").write_text("x")
    return r


@pytest.fixture
def rd(root: Path, use_openat2: bool) -> Iterator[RootDir]:
    with RootDir(root, use_openat2=use_openat2) as d:
        yield d


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 16)
    finally:
        os.close(fd)


def test_the_walk_is_what_the_fallback_runs(root: Path) -> None:
    assert not RootDir(root, use_openat2=False)._openat2


def test_absolute_symlink_resolves_in_root(rd: RootDir, root: Path, host: Path) -> None:
    inside = root / str(host).lstrip("/")
    inside.mkdir(parents=True)
    (inside / "secret").write_text("in root too")
    assert _read(rd.open("abs/secret", os.O_RDONLY)) == b"in root too"


def test_dotdot_stops_at_root(rd: RootDir) -> None:
    assert _read(rd.open("up/secret", os.O_RDONLY)) == b"in root"
    assert _read(rd.open("../../../../host/secret", os.O_RDONLY)) == b"in root"
    assert _read(rd.open("/etc/../../../host/secret", os.O_RDONLY)) == b"in root"


def test_root_itself(rd: RootDir, root: Path) -> None:
    for p in ("", "/", ".", "..", "toroot", "toroot/.."):
        fd = rd.open(p, os.O_RDONLY | os.O_DIRECTORY)
        try:
            assert os.fstat(fd).st_ino == root.stat().st_ino, p
        finally:
            os.close(fd)


def test_nofollow_last(rd: RootDir) -> None:
    with pytest.raises(OSError) as e:
        rd.open("abs", os.O_RDONLY | os.O_NOFOLLOW)
    assert e.value.errno == errno.ELOOP
    fd = rd.open("abs", os.O_PATH | os.O_NOFOLLOW)
    try:
        assert stat.S_ISLNK(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    fd = rd.open("toroot", os.O_PATH)  # O_PATH without O_NOFOLLOW follows
    try:
        assert stat.S_ISDIR(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def test_create_through_dangling_symlink_lands_in_root(rd: RootDir, root: Path) -> None:
    os.mkdir(root / "made")
    os.close(rd.open("dangling", os.O_WRONLY | os.O_CREAT, 0o600))
    assert (root / "made" / "here").is_file()
    assert not Path("/made/here").exists()


def test_missing_and_loops(rd: RootDir) -> None:
    with pytest.raises(FileNotFoundError):
        rd.open("nope/x", os.O_RDONLY)
    with pytest.raises(OSError) as e:
        rd.open("loop", os.O_RDONLY)
    assert e.value.errno == errno.ELOOP
    with pytest.raises(NotADirectoryError):
        rd.open("file/x", os.O_RDONLY)


def test_open_dir_create_is_mkdir_p_in_root(rd: RootDir, root: Path, host: Path) -> None:
    fd = rd.open_dir("toroot/a/b/c", create=True, mode=0o750)
    try:
        assert os.fstat(fd).st_ino == (root / "a" / "b" / "c").stat().st_ino
        assert os.listdir(fd) == []
    finally:
        os.close(fd)
    assert stat.S_IMODE((root / "a" / "b").stat().st_mode) == 0o750 & ~_umask()
    fd = rd.open_dir("abs/new", create=True)  # root/<host path>/new, never the host's
    os.close(fd)
    assert not (host / "new").exists()
    assert (root / str(host).lstrip("/") / "new").is_dir()
    fd = rd.open_dir("dangling", create=True)  # the link's target is made, in the root
    os.close(fd)
    assert (root / "made" / "here").is_dir()
    with pytest.raises(NotADirectoryError):
        rd.open_dir("file/sub", create=True)
    with pytest.raises(FileNotFoundError):
        rd.open_dir("nope")


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_lstat_readlink_resolve(rd: RootDir, host: Path) -> None:
    assert stat.S_ISLNK(rd.lstat("abs").st_mode)
    assert rd.readlink("abs") == str(host)
    assert rd.resolve("abs/secret") == str(host) + "/secret"
    assert rd.resolve("up/secret") == "/host/secret"
    assert rd.resolve("toroot/etc/passwd") == "/etc/passwd"
    assert rd.resolve("abs", follow_last=False) == "/abs"
    assert rd.resolve("nope/../etc") == "/etc"
    with pytest.raises(OSError):
        rd.resolve("loop")


def test_read_regular(rd: RootDir, root: Path) -> None:
    assert rd.read_regular("/etc/passwd", 100).startswith(b"root:")
    assert rd.read_regular("up/secret", 100) == b"in root"
    with pytest.raises(FileTooLarge):
        rd.read_regular("/etc/passwd", 5)
    assert rd.read_regular("/etc/passwd", 26) == (root / "etc" / "passwd").read_bytes()
    with pytest.raises(NotRegularFile):
        rd.read_regular("/etc", 100)


def test_read_regular_never_blocks_on_a_fifo(rd: RootDir, root: Path) -> None:
    os.mkfifo(root / "fifo")
    (root / "etc" / "group").symlink_to("/fifo")
    done: list[BaseException] = []

    def go() -> None:
        for p in ("fifo", "/etc/group"):
            try:
                rd.read_regular(p, 100)
            except NotRegularFile as err:
                done.append(err)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "read_regular blocked on a FIFO"
    assert len(done) == 2


def test_constructed_from_an_fd(root: Path, use_openat2: bool) -> None:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with RootDir(fd, use_openat2=use_openat2) as d:
            assert d.fd != fd
            assert d.read_regular("etc/passwd", 100).startswith(b"root:")
        os.fstat(fd)  # ours is still open
    finally:
        os.close(fd)


def test_swapped_symlink_never_escapes(rd: RootDir, root: Path, host: Path) -> None:
    """A directory swapped for a symlink to the host while we open paths through it."""
    (root / "d").mkdir()
    (root / "d" / "secret").write_text("in d")
    stop = time.monotonic() + 1.0

    def swap() -> None:
        while time.monotonic() < stop:
            os.rename(root / "d", root / "d.x")
            os.symlink(host, root / "d")
            os.unlink(root / "d")
            os.rename(root / "d.x", root / "d")

    t = threading.Thread(target=swap, daemon=True)
    t.start()
    seen: set[bytes] = set()
    while t.is_alive():
        try:
            seen.add(_read(rd.open("d/secret", os.O_RDONLY)))
        except OSError:
            pass
    t.join()
    assert b"HOST SECRET" not in seen


def test_openat2_flags(root: Path) -> None:
    _require_openat2()
    dfd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError) as e:
            openat2(dfd, "../x", os.O_RDONLY, 0, RESOLVE_BENEATH)
        assert e.value.errno == errno.EXDEV
        with pytest.raises(OSError) as e:
            openat2(dfd, "abs", os.O_RDONLY, 0, rootdir.RESOLVE_NO_SYMLINKS)
        assert e.value.errno == errno.ELOOP
        fd = openat2(dfd, "up/secret", os.O_RDONLY, 0, RESOLVE_IN_ROOT)
        assert _read(fd) == b"in root"
        fd = openat2(dfd, "new", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, RESOLVE_IN_ROOT)
        os.close(fd)
        assert stat.S_IMODE((root / "new").stat().st_mode) == 0o600 & ~_umask()
    finally:
        os.close(dfd)


def test_copy_tree_copies_links_as_links(tmp_path: Path, host: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_text("data")
    os.chmod(src / "d" / "f", 0o640)
    os.link(src / "d" / "f", src / "hard")
    (src / "esc").symlink_to(host)  # copied as a link, never followed
    os.mkfifo(src / "fifo")
    dst.mkdir()
    (dst / "esc2").symlink_to(host)  # something already in the destination is left alone
    (src / "esc2").mkdir()
    (src / "esc2" / "x").write_text("must not land in the host dir")
    s, d = os.open(src, os.O_RDONLY | os.O_DIRECTORY), os.open(dst, os.O_RDONLY | os.O_DIRECTORY)
    try:
        rootdir.copy_tree(s, d)
    finally:
        os.close(s)
        os.close(d)
    assert (dst / "d" / "f").read_text() == "data" and stat.S_IMODE((dst / "d" / "f").stat().st_mode) == 0o640
    assert (dst / "hard").stat().st_ino == (dst / "d" / "f").stat().st_ino
    assert os.readlink(dst / "esc") == str(host) and stat.S_ISFIFO((dst / "fifo").lstat().st_mode)
    assert sorted(p.name for p in host.iterdir()) == ["secret"]
