"""The streaming context index must describe a tarball exactly as unpacking it would: the
cache keys of a build read in place and of one read from disk have to be the same."""

from __future__ import annotations

import gzip
import io
import random
import tarfile
from pathlib import Path
from typing import Any

import pytest

from dockyard.build.context import Context, extract_context, index_tarball
from dockyard.build.tarindex import Index, TarIndexer


def _tarball(fmt: int) -> bytes:
    rnd = random.Random(fmt)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:

        def add(name: str, data: bytes | None, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
            ti = tarfile.TarInfo(name)
            ti.mode, ti.uid, ti.gid, ti.mtime = mode, uid, gid, 1_700_000_000
            if data is None:
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))

        add("Dockerfile", b"FROM scratch\nCOPY . /\n")
        add(".dockerignore", b"*.tmp\n")
        add("src", None, 0o750, 1000, 1000)
        add("src/main.c", rnd.randbytes(70_000), 0o600, 1000, 1000)
        add("src/empty", b"")
        add("implicit/parent/file.txt", b"no directory entries above me\n")
        add("unicode-é/ünïcode.txt", b"x")
        if fmt != tarfile.USTAR_FORMAT:  # ustar cannot hold these
            add("long/" + "d" * 120 + "/" + "f" * 110, rnd.randbytes(1025), 0o755)
            add("bigid", b"uid", uid=3_000_000 if fmt == tarfile.PAX_FORMAT else 70000, gid=5)
        add("exact512", rnd.randbytes(512))
        add("skip.tmp", b"ignored by .dockerignore")
    return buf.getvalue()


def _indexed(data: bytes, chunk: int) -> Index:
    ix = TarIndexer({"Dockerfile", ".dockerignore"})
    for i in range(0, len(data), chunk):
        ix.feed(data[i : i + chunk])
    index = ix.finish()
    assert index is not None
    return index


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
@pytest.mark.parametrize("chunk", [1, 511, 513, 65536, 1 << 22])
def test_index_matches_the_unpacked_context(tmp_path: Path, fmt: int, chunk: int) -> None:
    data = _tarball(fmt)
    in_place = Context.from_tarball(lambda: io.BytesIO(data), tmp_path / "unused", index=_indexed(data, chunk))
    unpacked = Context(tmp_path / "root", file_digests=extract_context(io.BytesIO(data), tmp_path / "root"))
    assert in_place.dockerfile_bytes() == b"FROM scratch\nCOPY . /\n"
    assert in_place.glob("skip.tmp") == [] == unpacked.glob("skip.tmp")
    for sources in (["."], ["src"], ["implicit"], ["src/main.c", "exact512"]):
        assert in_place.digest(sources) == unpacked.digest(sources), sources
    assert not (tmp_path / "unused").exists()  # nothing was written to answer


def test_links_compression_and_damage_are_left_to_unpacking(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("link")
        ti.type, ti.linkname = tarfile.SYMTYPE, "target"
        tf.addfile(ti)
    for data in (buf.getvalue(), gzip.compress(_tarball(tarfile.PAX_FORMAT)), b"not a tar" * 100,
                 _tarball(tarfile.PAX_FORMAT)[:3000]):  # fmt: skip
        ix = TarIndexer(set())
        ix.feed(data)
        assert ix.finish() is None


def test_a_compressed_spool_is_indexed_after_decompressing(tmp_path: Path) -> None:
    data = _tarball(tarfile.GNU_FORMAT)
    spool = tmp_path / "ctx.tar.gz"
    spool.write_bytes(gzip.compress(data))
    index = index_tarball(lambda: io.BytesIO(spool.read_bytes()), {"Dockerfile"}).finish()
    assert index is not None
    assert index.texts["Dockerfile"] == b"FROM scratch\nCOPY . /\n"
    assert index.entries == _indexed(data, 4096).entries


def test_an_empty_upload_is_an_empty_context() -> None:
    index = TarIndexer(set()).finish()
    assert index is not None and list(index.entries) == ["."]


def test_uploads_held_in_memory_share_one_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each upload up to _IN_MEMORY stays in memory, but not past _IN_MEMORY_TOTAL for all
    builds together: the one that would cross it is spooled, and discarding gives the
    bytes back."""
    import asyncio

    from dockyard.build import service as build_service
    from dockyard.events import EventBus
    from dockyard.images.service import ImageService
    from dockyard.store import Store

    data = _tarball(tarfile.PAX_FORMAT)
    monkeypatch.setattr(build_service, "_IN_MEMORY_TOTAL", len(data) * 3 // 2)

    async def chunks() -> Any:
        for i in range(0, len(data), 4096):
            yield data[i : i + 4096]

    async def scenario() -> None:
        store = Store(tmp_path / "db.sqlite")
        builds = build_service.BuildService(store, ImageService(store, tmp_path / "data", EventBus()), None, tmp_path / "data")
        first = await builds.receive(chunks(), "Dockerfile")
        second = await builds.receive(chunks(), "Dockerfile")
        assert first.chunks is not None and first.path is None
        assert second.path is not None and second.path.read_bytes() == data  # over the budget: spooled
        assert first.index is not None and second.index is not None
        assert first.index.entries == second.index.entries
        first.discard()
        second.discard()
        assert not second.path.exists()
        third = await builds.receive(chunks(), "Dockerfile")
        assert third.chunks is not None  # the budget was given back
        with third.open() as f:
            assert f.read() == data
        third.discard()
        assert builds._held == 0
        store.close()

    asyncio.run(scenario())


def test_only_an_end_at_a_member_is_padded(tmp_path: Path) -> None:
    """A context that stops right after its last member's data (the docker CLI's, with `-f`
    outside the context) is read as complete, links or not; one cut inside a member's data
    is refused, not completed with zeros."""
    from dockyard.errdefs import InvalidArgument

    def tar(with_link: bool) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            if with_link:
                ti = tarfile.TarInfo("link")
                ti.type, ti.linkname = tarfile.SYMTYPE, "Dockerfile"
                tf.addfile(ti)
            df = b"FROM scratch\n" + b"#" * 987  # the last member: 1000 bytes of data
            ti = tarfile.TarInfo("Dockerfile")
            ti.size = len(df)
            tf.addfile(ti, io.BytesIO(df))
        return buf.getvalue()

    for with_link in (False, True):
        whole = tar(with_link)
        with tarfile.open(fileobj=io.BytesIO(whole)) as tf:
            last = tf.getmembers()[-1]
        end_of_data = last.offset_data + last.size  # padding, end blocks and record cut off
        unpadded, cut = whole[:end_of_data], whole[: end_of_data - 100]
        ctx = Context.from_tarball(lambda d=unpadded: io.BytesIO(d), tmp_path / f"ok-{with_link}")
        assert ctx.dockerfile_bytes().startswith(b"FROM scratch")
        assert (tmp_path / f"ok-{with_link}" / "Dockerfile").exists() or not with_link
        with pytest.raises(InvalidArgument, match="failed to read the build context"):
            Context.from_tarball(lambda d=cut: io.BytesIO(d), tmp_path / f"cut-{with_link}")
