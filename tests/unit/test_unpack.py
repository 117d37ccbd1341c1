"""Layer extraction safety and overlay whiteouts (dockyard.images.unpack)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from dockyard.images.unpack import Extractor, clean, plan

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts need CAP_MKNOD and trusted xattrs")


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in members:
            if data is not None:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            else:
                tf.addfile(ti)
    buf.seek(0)
    return buf


def f(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.mode = mode
    return ti, data


def d(name: str, mode: int = 0o755) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = mode
    return ti, None


def sym(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.SYMTYPE
    ti.linkname = target
    return ti, None


def hard(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.LNKTYPE
    ti.linkname = target
    return ti, None


def dev(name: str, major: int, minor: int, kind: bytes = tarfile.CHRTYPE) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.devmajor, ti.devminor = major, minor
    return ti, None


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, Path]:
    """(layer dir, a sibling dir standing for "the outside world")."""
    layer = tmp_path / "layer"
    outside = tmp_path / "outside"
    layer.mkdir()
    outside.mkdir()
    (outside / "victim").write_text("original")
    return layer, outside


def _snapshot(p: Path) -> dict[str, tuple[int, bytes]]:
    out = {}
    for root, dirs, files in os.walk(p):
        for n in dirs + files:
            full = Path(root) / n
            st = full.lstat()
            data = full.read_bytes() if stat.S_ISREG(st.st_mode) else b""
            out[str(full)] = (st.st_mode, data)
    return out


def test_clean() -> None:
    assert clean("a/b/../c") == ("a", "c")
    assert clean("./a//b/") == ("a", "b")
    assert clean("../x") is None
    assert clean("a/../../x") is None
    assert clean("/etc/passwd") is None
    assert clean("./") == ()


def test_plan_kinds() -> None:
    assert plan(f("a/.wh.b")[0]).kind == "whiteout"
    assert plan(f("a/.wh.b")[0]).parts == ("a", "b")
    assert plan(f("a/.wh..wh..opq")[0]).kind == "opaque"
    assert plan(f("a/.wh..wh.plnk")[0]).kind == "skip"
    assert plan(dev("dev/sda", 8, 0, tarfile.BLKTYPE)[0]).kind == "skip"
    assert plan(dev("dev/null", 1, 3)[0]).kind == "skip"
    assert plan(dev("x", 0, 0)[0]).kind == "whiteout"
    assert plan(hard("a", "/etc/passwd")[0]).kind == "skip"
    assert plan(hard("a", "../../etc/passwd")[0]).kind == "skip"


def test_dotdot_and_absolute_are_not_written(sandbox: tuple[Path, Path], tmp_path: Path) -> None:
    layer, outside = sandbox
    before = _snapshot(tmp_path / "outside")
    res = Extractor(layer).extract(
        _tar(
            f("../outside/victim", b"pwned"),
            f("../escape", b"pwned"),
            f("a/../../outside/new", b"pwned"),
            f(str(outside / "abs"), b"pwned"),
            f("/tmp/dockyard-abs-test", b"pwned"),
            f("ok", b"fine"),
        )
    )
    assert _snapshot(tmp_path / "outside") == before
    assert not (tmp_path / "escape").exists()
    assert not Path("/tmp/dockyard-abs-test").exists()
    assert (layer / "ok").read_bytes() == b"fine"
    assert len(res.skipped) == 5


def test_symlink_to_root_is_never_followed(sandbox: tuple[Path, Path]) -> None:
    layer, outside = sandbox
    res = Extractor(layer).extract(
        _tar(
            sym("root", "/"),
            sym("out", str(outside)),
            sym("up", "../outside"),
            f("out/victim", b"pwned"),
            f("up/victim", b"pwned"),
            f("up/new", b"pwned"),
            f(f"root{outside}/victim", b"pwned"),
            d("out/newdir"),
        )
    )
    assert (outside / "victim").read_text() == "original"
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert os.readlink(layer / "root") == "/"
    assert os.readlink(layer / "up") == "../outside"
    assert len(res.skipped) == 5


def test_file_replacing_a_symlink_does_not_write_through_it(sandbox: tuple[Path, Path]) -> None:
    layer, outside = sandbox
    Extractor(layer).extract(_tar(sym("victim", str(outside / "victim")), f("victim", b"new")))
    assert (outside / "victim").read_text() == "original"
    assert (layer / "victim").read_bytes() == b"new"
    assert not (layer / "victim").is_symlink()


def test_hardlinks_outside_are_refused(sandbox: tuple[Path, Path]) -> None:
    layer, outside = sandbox
    res = Extractor(layer).extract(
        _tar(
            hard("passwd", "/etc/passwd"),
            hard("passwd2", "../../../../../../etc/passwd"),
            sym("lnk", "/etc"),
            hard("passwd3", "lnk/passwd"),
            hard("v", str(outside / "victim")),
            f("real", b"data"),
            hard("alias", "real"),
        )
    )
    for name in ("passwd", "passwd2", "passwd3", "v"):
        assert not (layer / name).exists()
    assert (layer / "alias").read_bytes() == b"data"
    assert os.stat(layer / "alias").st_ino == os.stat(layer / "real").st_ino
    assert os.stat("/etc/passwd").st_nlink == 1
    assert len(res.skipped) == 4


def test_device_nodes_are_skipped(sandbox: tuple[Path, Path]) -> None:
    layer, _ = sandbox
    res = Extractor(layer).extract(_tar(dev("null", 1, 3), dev("sda", 8, 0, tarfile.BLKTYPE)))
    assert list(layer.iterdir()) == []
    assert len(res.skipped) == 2


def test_modes_owners_and_implicit_parents(sandbox: tuple[Path, Path]) -> None:
    layer, _ = sandbox
    ti, data = f("a/b/c", b"123", 0o4755)
    ti.uid, ti.gid = 1000, 1001
    Extractor(layer).extract(_tar(d("./", 0o755), d("x", 0o700), (ti, data)))
    st = (layer / "a/b/c").stat()
    assert stat.S_IMODE(st.st_mode) == 0o4755
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (1000, 1001)
    assert stat.S_IMODE((layer / "x").stat().st_mode) == 0o700
    assert (layer / "a").is_dir()


@needs_root
def test_whiteouts_and_opaque_dirs(sandbox: tuple[Path, Path]) -> None:
    layer, _ = sandbox
    Extractor(layer).extract(
        _tar(
            d("etc"),
            f("etc/.wh.passwd", b""),
            d("var"),
            d("var/cache"),
            f("var/cache/kept", b"k"),
            f("var/cache/.wh..wh..opq", b""),
            f(".wh..wh..plnk", b""),
        )
    )
    st = os.lstat(layer / "etc/passwd")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert not (layer / "etc/.wh.passwd").exists()
    assert os.getxattr(layer / "var/cache", "trusted.overlay.opaque") == b"y"
    assert (layer / "var/cache/kept").read_bytes() == b"k"
    assert not any(p.name.startswith(".wh.") for p in layer.rglob("*"))


@needs_root
def test_overlay_mount_of_whiteouts(tmp_path: Path) -> None:
    """Mounted over a lower layer, the whiteout hides a file and the opaque dir its contents."""
    from dockyard._sys.mount import Mount, mount, unmount

    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    upper.mkdir()
    Extractor(lower).extract(_tar(d("etc"), f("etc/passwd", b"root"), d("cache"), f("cache/old", b"o")))
    Extractor(upper).extract(
        _tar(d("etc"), f("etc/.wh.passwd", b""), d("cache"), f("cache/.wh..wh..opq", b""), f("cache/new", b"n"))
    )
    merged, work, rw = tmp_path / "merged", tmp_path / "work", tmp_path / "rw"
    for p in (merged, work, rw):
        p.mkdir()
    m = Mount("overlay", "overlay", (f"lowerdir={upper}:{lower}", f"upperdir={rw}", f"workdir={work}"))
    mount(m, merged)
    try:
        assert not (merged / "etc/passwd").exists()
        assert sorted(p.name for p in (merged / "cache").iterdir()) == ["new"]
    finally:
        unmount(merged)


def test_later_entries_replace_earlier_ones(sandbox: tuple[Path, Path]) -> None:
    layer, _ = sandbox
    Extractor(layer).extract(_tar(d("x"), f("x/inner"), f("x", b"file now"), f("y", b"1"), d("y")))
    assert (layer / "x").read_bytes() == b"file now"
    assert (layer / "y").is_dir()


def test_gzip_is_not_accepted_by_extractor_but_by_archive_helper(sandbox: tuple[Path, Path]) -> None:
    import gzip

    from dockyard.images.archive import decompressed

    raw = _tar(f("a", b"1")).getvalue()
    layer, _ = sandbox
    Extractor(layer).extract(decompressed(io.BytesIO(gzip.compress(raw))))
    assert (layer / "a").read_bytes() == b"1"


# ---- ARCHIVE / CONTEXT rules (build contexts, ADD) ----------------------------------------


@pytest.mark.parametrize(
    "members",
    [
        [f("../outside/victim", b"pwned")],
        [f("/abs", b"pwned")],
        [hard("h", "../outside/victim")],
        [hard("h", "/etc/passwd")],
        [sym("d", "../outside"), f("d/victim", b"pwned")],
        [hard("h", "missing")],
    ],
)
def test_archive_rules_refuse_what_a_layer_skips(sandbox: tuple[Path, Path], members: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    from dockyard.images.unpack import ARCHIVE, UnsafeArchive

    layer, outside = sandbox
    with pytest.raises(UnsafeArchive):
        Extractor(layer, ARCHIVE).extract(_tar(*members))
    assert (outside / "victim").read_text() == "original"


def test_archive_rules_keep_whiteout_names_and_skip_devices_and_context_fifos(sandbox: tuple[Path, Path]) -> None:
    from dockyard.images.unpack import ARCHIVE, CONTEXT

    layer, _ = sandbox
    fifo = tarfile.TarInfo("p")
    fifo.type = tarfile.FIFOTYPE
    res = Extractor(layer, CONTEXT).extract(_tar(f(".wh.a", b"plain"), dev("w", 0, 0), dev("null", 1, 3), (fifo, None)))
    assert (layer / ".wh.a").read_bytes() == b"plain"
    assert sorted(os.listdir(layer)) == [".wh.a"]
    assert len(res.skipped) == 3
    other = layer.parent / "add"
    other.mkdir()
    Extractor(other, ARCHIVE).extract(_tar((fifo, None)))
    assert stat.S_ISFIFO(os.lstat(other / "p").st_mode)


def test_archive_digests_follow_replacements_and_hardlinks(sandbox: tuple[Path, Path]) -> None:
    import hashlib

    from dockyard.images.unpack import CONTEXT

    layer, outside = sandbox
    res = Extractor(layer, CONTEXT, hasher=hashlib.sha256).extract(
        _tar(sym("x", str(outside / "victim")), f("x", b"one", 0o4777), f("a/b", b"two"), hard("h", "a/b"), f("gone", b"3"), sym("gone", "x"))
    )
    assert (outside / "victim").read_text() == "original"
    assert (layer / "x").read_bytes() == b"one" and not (layer / "x").is_symlink()
    assert res.digests == {"x": hashlib.sha256(b"one").hexdigest(), "a/b": hashlib.sha256(b"two").hexdigest(),
                           "h": hashlib.sha256(b"two").hexdigest()}  # fmt: skip
