"""Upper dir -> layer tar and `docker diff` changes (dockyard.snapshots.diff)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from dockyard.images.unpack import Extractor
from dockyard.snapshots.diff import changes, write_layer_tar

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="overlay whiteouts need root")


def _layout(tmp_path: Path) -> tuple[Path, Path]:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc/passwd").write_text("root")
    (lower / "cache").mkdir()
    (lower / "cache/old").write_text("o")
    (lower / "tmp").mkdir()
    (upper / "etc").mkdir(parents=True)
    os.mknod(upper / "etc/passwd", 0o20000, os.makedev(0, 0))
    (upper / "cache").mkdir()
    os.setxattr(upper / "cache", "trusted.overlay.opaque", b"y")
    (upper / "cache/new").write_text("n")
    (upper / "tmp").mkdir()
    (upper / "tmp/x").write_text("x")
    os.link(upper / "tmp/x", upper / "tmp/y")
    os.symlink("/etc", upper / "tmp/s")
    return lower, upper


def test_changes(tmp_path: Path) -> None:
    lower, upper = _layout(tmp_path)
    got = {c["Path"]: c["Kind"] for c in changes(upper, [lower])}
    assert got == {
        "/cache": 0,
        "/cache/new": 1,
        "/etc": 0,
        "/etc/passwd": 2,
        "/tmp": 0,
        "/tmp/s": 1,
        "/tmp/x": 1,
        "/tmp/y": 1,
    }


def test_layer_tar_round_trip(tmp_path: Path) -> None:
    _, upper = _layout(tmp_path)
    buf = io.BytesIO()
    write_layer_tar(upper, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tf:
        names = {m.name: m for m in tf}
    assert "etc/.wh.passwd" in names
    assert "cache/.wh..wh..opq" in names
    assert names["tmp/y"].islnk() and names["tmp/y"].linkname == "tmp/x"
    assert names["tmp/s"].issym()
    out = tmp_path / "out"
    out.mkdir()
    buf.seek(0)
    Extractor(out).extract(buf)
    assert os.stat(out / "etc/passwd").st_rdev == 0
    assert os.getxattr(out / "cache", "trusted.overlay.opaque") == b"y"
    assert os.stat(out / "tmp/x").st_ino == os.stat(out / "tmp/y").st_ino
