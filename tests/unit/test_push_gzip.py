"""The push pipeline's gzip stream: valid gzip, deterministic, stored as it is produced."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

from dockyard.images import push
from dockyard.images.content import ContentStore


def _run(src: Path, store: ContentStore) -> tuple[bytes, str, int]:
    gz = push._Gzipper(src, store)
    out = bytearray()
    try:
        while (piece := gz.step()) is not None:
            out += piece
        digest, size = gz.commit()
    finally:
        gz.close()
    return bytes(out), digest, size


def test_gzipper_round_trip_and_determinism(tmp_path: Path) -> None:
    data = os.urandom(3 << 20) + b"text " * (2 << 20)  # spans several pipeline steps
    src = tmp_path / "layer.tar"
    src.write_bytes(data)
    store = ContentStore(tmp_path / "blobs")
    out, digest, size = _run(src, store)
    assert out[:10] == push._GZIP_HEADER and gzip.decompress(out) == data
    assert size == len(out) and digest == "sha256:" + hashlib.sha256(out).hexdigest()
    assert store.path(digest).read_bytes() == out
    again, digest2, _ = _run(src, store)
    assert again == out and digest2 == digest
    assert list((tmp_path / "blobs" / "ingest").iterdir()) == []


def test_gzipper_empty_file(tmp_path: Path) -> None:
    src = tmp_path / "empty"
    src.write_bytes(b"")
    out, _, _ = _run(src, ContentStore(tmp_path / "blobs"))
    assert gzip.decompress(out) == b""


def test_gzipper_close_without_commit_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "layer.tar"
    src.write_bytes(os.urandom(5 << 20))
    store = ContentStore(tmp_path / "blobs")
    gz = push._Gzipper(src, store)
    assert gz.step()
    gz.close()
    assert gz.step() is None
    assert list((tmp_path / "blobs" / "ingest").iterdir()) == [] and store.digests() == []
