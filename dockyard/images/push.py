"""`docker push`: upload an image's layers, config and manifest to a registry.

Owns the push orchestration; it yields typed progress events (`progress.py`), rendered
as Docker's messages by the API layer. It only reads the image store, and writes a repo
digest at the end (a short locked edit): nothing is locked while the registry is served. Layers are stored
uncompressed (by diff ID). Each layer has a compressed-blob cache (`LayerStore.compressed`:
the gzip blob a push made or a pull downloaded, and the repositories known to hold it).
With a cached blob the order is what real clients do: HEAD it ("Layer already exists"),
try a cross-repository mount from a repository of the same registry that holds it
("Mounted from"), else upload the kept blob (POST + one PUT). Without one, the layer is
gzip-compressed (ISA-L when `isal` is installed, else zlib; level 1; fixed header: no
name, mtime 0) in a worker thread in 4 MiB pieces while the pieces already made are
uploaded in one streamed PATCH (a producer/consumer pipeline, the blob hashed once as it
is written to the content store), then PUT with the digest; the blob becomes the layer's
cache. Layers go up concurrently. Then the config, then the manifest (Docker schema 2);
its digest is recorded as a repo digest of the image.

Events::

    PushStarted("127.0.0.1:5000/bb")
    LayerEvent(PREPARING, diff_id) per layer, then PUSHING (current/total), PUSHED,
    EXISTS_REMOTE or MOUNTED (source)
    PushDone(tag, manifest digest, manifest size)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import shutil
import struct
import threading
import zlib
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

from dockyard import errdefs
from dockyard.images import reference
from dockyard.images._progress import run_reporting
from dockyard.images.content import ContentStore, Writer
from dockyard.images.endpoints import RegistrySettings
from dockyard.images.model import Image
from dockyard.images.progress import Event, LayerEvent, LayerPhase, PushDone, PushStarted
from dockyard.images.store import ImageStore
from dockyard.registry import spec
from dockyard.registry.client import AuthConfig, RegistryClient, Unauthorized

try:  # ISA-L's deflate: ~10x zlib's speed at level 1, and a better ratio
    from isal import isal_zlib as _deflate
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
    _deflate = zlib  # type: ignore[misc]

__all__ = ["push"]

log = logging.getLogger(__name__)

CONCURRENT_UPLOADS = 5
COMPRESS_LEVEL = 1  # speed over size on loopback-class links; output is deterministic either way
_CHUNK = 4 << 20  # uncompressed bytes per pipeline step
_QUEUE = 4  # compressed pieces buffered ahead of the upload
# gzip member header as gzip.GzipFile(filename="", mtime=0, compresslevel=1) writes it
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"


class _Gzipper:
    """A layer file gzip-compressed piece by piece into a content-store writer.

    `step()` (blocking, for a worker thread) compresses the next `_CHUNK` and returns the
    compressed piece (b"" when the compressor buffered it all), None at the end. The writer
    hashes and stores what is returned; `commit()` makes it a blob."""

    def __init__(self, src: Path, content: ContentStore) -> None:
        self._lock = threading.Lock()
        self._f: Any = open(src, "rb")  # noqa: SIM115 - closed by commit() or close()
        try:
            self.writer: Writer = content.writer()
        except BaseException:
            self._f.close()
            raise
        self._c = _deflate.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        self._crc = 0
        self.read = 0
        self._started = False
        self._done = False

    def step(self) -> bytes | None:
        with self._lock:
            if self._done or self._f is None:
                return None
            data = self._f.read(_CHUNK)
            parts = [] if self._started else [_GZIP_HEADER]
            self._started = True
            if data:
                self._crc = zlib.crc32(data, self._crc)
                self.read += len(data)
                parts.append(self._c.compress(data))
            else:
                parts.append(self._c.flush())
                parts.append(struct.pack("<II", self._crc & 0xFFFFFFFF, self.read & 0xFFFFFFFF))
                self._done = True
            out = b"".join(parts)
            if out:
                self.writer.write(out)
            return out

    def commit(self) -> tuple[str, int]:
        with self._lock:
            self._close_src()
            return self.writer.commit(), self.writer.size

    def close(self) -> None:
        """Drop the unfinished blob (after commit: nothing to do)."""
        with self._lock:
            self._close_src()
            self.writer.abort()

    def _close_src(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


async def _pieces(gz: _Gzipper, progress: Any) -> AsyncIterator[bytes]:
    """Compressed pieces, produced one step ahead in a worker thread while the last is sent."""
    q: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(_QUEUE)

    async def produce() -> None:
        try:
            while (piece := await asyncio.to_thread(gz.step)) is not None:
                if piece:
                    await q.put(piece)
            await q.put(None)
        except Exception as err:  # noqa: BLE001 - handed to the consumer
            await q.put(err)

    task = asyncio.ensure_future(produce())
    try:
        while (item := await q.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
            await progress(gz.read)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _targets(store: ImageStore, ref: reference.Reference) -> list[tuple[str, Image]]:
    if ref.tag:
        try:
            return [(ref.tag, store.resolve(str(ref)))]
        except errdefs.NotFound:
            raise errdefs.NotFound(f"tag does not exist: {ref.familiar()}") from None
    prefix = ref.name + ":"
    tags = sorted(store.refs_with_prefix(prefix))
    if not tags:
        raise errdefs.NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}")
    return [(t[len(prefix) :], store.resolve(t)) for t in tags]


async def push(
    store: ImageStore, settings: RegistrySettings, ref: reference.Reference, auth: AuthConfig
) -> AsyncGenerator[Event, None]:
    targets = _targets(store, ref)
    async with settings.connect(ref.domain, auth) as rc:
        await rc.ping()
        for tag, img in targets:
            async for ev in _push_one(store, rc, ref, tag, img):
                yield ev


async def _push_one(
    store: ImageStore, rc: RegistryClient, ref: reference.Reference, tag: str, img: Image
) -> AsyncGenerator[Event, None]:
    repo = ref.path
    yield PushStarted(ref.name)
    diff_ids: list[str] = img.diff_ids
    # other repositories of this registry that hold the image: mount sources
    sources = []
    for r in store.refs_for(img.id):
        try:
            other = reference.parse_normalized(r)
        except errdefs.InvalidArgument:
            continue
        if other.domain == ref.domain and other.path != repo and other.path not in sources:
            sources.append(other.path)
    for d in reversed(diff_ids):
        yield LayerEvent(LayerPhase.PREPARING, d)
    prefix = f"{ref.domain}/"
    here = prefix + repo
    queue: asyncio.Queue[LayerEvent] = asyncio.Queue()
    sem = asyncio.Semaphore(CONCURRENT_UPLOADS)
    blobs: dict[str, tuple[str, int]] = {}
    work_dir = store.tmp / f"push-{secrets.token_hex(6)}"
    work_dir.mkdir(parents=True)

    async def one(diff_id: str, chain: str) -> None:
        async with sem:
            cached = store.layers.compressed(chain)
            if cached is not None:
                digest, size = cached["digest"], int(cached["size"])
                blobs[diff_id] = (digest, size)
                if await rc.blob_exists(repo, digest):
                    store.layers.set_compressed(chain, digest, size, here)
                    await queue.put(LayerEvent(LayerPhase.EXISTS_REMOTE, diff_id))
                    return
                held = [r.removeprefix(prefix) for r in cached["repos"] if r.startswith(prefix)]
                for src in dict.fromkeys([*held, *sources]):
                    if src != repo and await rc.mount_blob(repo, digest, src):
                        store.layers.set_compressed(chain, digest, size, here)
                        await queue.put(LayerEvent(LayerPhase.MOUNTED, diff_id, source=src))
                        return

                async def sent(n: int) -> None:
                    await queue.put(LayerEvent(LayerPhase.PUSHING, diff_id, n, size))

                await rc.upload_blob(repo, digest, store.content.path(digest), progress=sent)
                store.layers.set_compressed(chain, digest, size, here)
                await queue.put(LayerEvent(LayerPhase.PUSHED, diff_id))
                return

            total = store.content.size(diff_id)

            async def read(n: int) -> None:
                await queue.put(LayerEvent(LayerPhase.PUSHING, diff_id, n, total))

            gz = await asyncio.to_thread(_Gzipper, store.content.path(diff_id), store.content)
            try:
                await rc.upload_stream(repo, _pieces(gz, read), lambda: gz.writer.digest)
                digest, size = await asyncio.to_thread(gz.commit)
            finally:
                await asyncio.to_thread(gz.close)
            blobs[diff_id] = (digest, size)
            store.layers.set_compressed(chain, digest, size, here)
            await queue.put(LayerEvent(LayerPhase.PUSHED, diff_id))

    layers = dict(reversed(list(zip(diff_ids, img.chain_ids, strict=True))))
    # the layers stay while they are read, even if the image is removed meanwhile
    try:
        with store.pinning(img.chain_ids):
            try:
                async for ev in run_reporting((one(d, c) for d, c in layers.items()), queue):
                    yield ev
            except Unauthorized:
                raise errdefs.PermissionDenied("unauthorized: authentication required") from None
        cfg = img.config_bytes
        if not await rc.blob_exists(repo, img.id):
            path = work_dir / "config"
            await asyncio.to_thread(path.write_bytes, cfg)
            await rc.upload_blob(repo, img.id, path)
    finally:
        await asyncio.to_thread(shutil.rmtree, work_dir, True)
    manifest = {
        "schemaVersion": 2,
        "mediaType": spec.MT_DOCKER_MANIFEST,
        "config": {"mediaType": spec.MT_DOCKER_CONFIG, "size": len(cfg), "digest": img.id},
        "layers": [
            {"mediaType": spec.MT_DOCKER_LAYER, "size": blobs[d][1], "digest": blobs[d][0]} for d in diff_ids
        ],
    }
    body = json.dumps(manifest, indent=3).encode()
    digest = await rc.put_manifest(repo, tag, body, spec.MT_DOCKER_MANIFEST)
    await store.set_refs([reference.Reference(ref.domain, ref.path, None, digest)], img.id)
    store.publish("push", img, reference.Reference(ref.domain, ref.path, tag, None).familiar())
    yield PushDone(tag, digest, len(body))
