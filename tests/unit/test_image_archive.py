"""Save/load tarball formats (dockyard.images.archive), without a daemon."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from dockyard.errdefs import InvalidArgument
from dockyard.images import archive


def _layer(name: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo(name)
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"x"))
    return buf.getvalue()


def _digest(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def test_save_then_read(tmp_path: Path) -> None:
    layer = _layer("a")
    (tmp_path / "blob").write_bytes(layer)
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [_digest(layer)]}}).encode()
    item = archive.SaveItem(
        image_id=_digest(config),
        config_bytes=config,
        diff_ids=(_digest(layer),),
        tags=("docker.io/library/x:1", "docker.io/library/x:2"),
        familiar_tags=("x:1", "x:2"),
        created=0,
    )
    buf = io.BytesIO()
    archive.write_archive(buf, [item, item], lambda d: tmp_path / "blob")
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tf:
        names = tf.getnames()
        assert len(names) == len(set(names))  # shared blobs written once
        assert json.loads(tf.extractfile("repositories").read()) == {  # type: ignore[union-attr]
            "x": {"1": _digest(layer)[7:], "2": _digest(layer)[7:]}
        }
        items = archive.read_archive(tf)
        assert items[0].config_bytes == config and items[0].tags == ["x:1", "x:2"]
        with archive.open_member(tf, items[0].layers[0].member) as f:
            assert f.read() == layer
    # Without manifest.json the OCI side of the same tarball is read.
    buf.seek(0)
    out = io.BytesIO()
    with tarfile.open(fileobj=buf) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for m in src.getmembers():
            if m.name != "manifest.json":
                dst.addfile(m, src.extractfile(m) if m.isreg() else None)
    out.seek(0)
    with tarfile.open(fileobj=out) as tf:
        items = archive.read_archive(tf)
        assert len(items) == 1 and items[0].tags == ["docker.io/library/x:1", "docker.io/library/x:2"]
        assert items[0].layers[0].digest == _digest(layer)


def test_legacy_symlinked_layer_and_escape() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = _layer("a")
        ti = tarfile.TarInfo("one/layer.tar")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
        for name, target in (("two/layer.tar", "../one/layer.tar"), ("evil", "../../etc/passwd")):
            ln = tarfile.TarInfo(name)
            ln.type = tarfile.SYMTYPE
            ln.linkname = target
            tf.addfile(ln)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tf:
        assert archive.open_member(tf, "two/layer.tar").read() == data
        with pytest.raises(InvalidArgument):
            archive.open_member(tf, "evil")
        with pytest.raises(InvalidArgument, match=r"neither manifest\.json nor index\.json"):
            archive.read_archive(tf)


def test_decompressed_formats() -> None:
    import bz2
    import gzip
    import lzma

    raw = _layer("z")
    for comp in (gzip.compress, bz2.compress, lzma.compress, lambda b: b):
        assert archive.decompressed(io.BytesIO(comp(raw))).read() == raw
