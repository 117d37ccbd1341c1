"""ImageWrite, the image store's transaction, driven directly: a layer made by an open
write survives a collection (it is pinned, no lock held), an aborted write leaves no layer
and no blob, and a commit is all or nothing."""

from __future__ import annotations

import asyncio
import io
import tarfile
from pathlib import Path

import pytest

from dockyard.errdefs import InvalidArgument
from dockyard.events import EventBus
from dockyard.images import reference
from dockyard.images.model import dumps
from dockyard.images.store import ImageStore
from dockyard.store import Store


def _layer(name: str, data: bytes) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    return buf


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(Store(tmp_path / "db.sqlite"), tmp_path / "data", EventBus())


def _config(diff_id: str) -> bytes:
    return dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    )


def test_open_write_survives_collection_and_commits(store: ImageStore) -> None:
    async def run() -> None:
        async with store.writer() as w:
            diff_id = await w.ingest(_layer("a", b"a"))
            chain = await w.create_layer(None, diff_id)
            # another operation collects meanwhile (an rmi, a failed write): the pin holds
            await store.collect()
            assert store.layers.exists(chain) and store.content.exists(diff_id)
            image_id = w.put_image(_config(diff_id))
            w.set_ref(reference.parse_normalized("a:1"), image_id)
            assert not store.lock.locked()  # nothing locked while a write works
            done = await w.commit()
        assert done.images[image_id].repo_tags == ("a:1",)
        await store.collect()
        assert store.layers.exists(chain)  # referenced now

    asyncio.run(run())


def test_aborted_write_leaves_nothing(store: ImageStore) -> None:
    async def run() -> None:
        with pytest.raises(RuntimeError):
            async with store.writer() as w:
                diff_id = await w.ingest(_layer("b", b"b"))
                chain = await w.create_layer(None, diff_id)
                raise RuntimeError("client went away")
        assert not store.layers.exists(chain)
        assert not store.content.exists(diff_id)
        assert store.all() == []

    asyncio.run(run())


def test_commit_is_all_or_nothing(store: ImageStore) -> None:
    async def run() -> None:
        with pytest.raises(InvalidArgument, match="missing"):
            async with store.writer() as w:
                diff_id = await w.ingest(_layer("c", b"c"))
                await w.create_layer(None, diff_id)
                good = w.put_image(_config(diff_id))
                w.set_ref(reference.parse_normalized("c:1"), good)
                w.put_image(_config("sha256:" + "0" * 64))  # a layer nobody made
                await w.commit()
        assert store.all() == [] and store.ref_target("docker.io/library/c:1") is None
        assert not store.content.exists(diff_id)

    asyncio.run(run())
