"""`docker push`: upload an image's layers, config and manifest to a registry.

Owns the push orchestration and its Docker progress messages. Layers are stored
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

Messages::

    {"status": "The push refers to repository [127.0.0.1:5000/bb]"}
    {"status": "Preparing", "id": "<12 hex>", "progressDetail": {}}   ... "Waiting", "Pushing"
    (progressDetail), "Pushed", "Layer already exists", "Mounted from <repo>"
    {"status": "latest: digest: sha256:... size: 527"}
    {"progressDetail": {}, "aux": {"Tag": "latest", "Digest": "sha256:...", "Size": 527}}
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


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


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


def _targets(svc: Any, ref: reference.Reference) -> list[tuple[str, Any]]:
    if ref.tag:
        try:
            return [(ref.tag, svc.resolve(str(ref)))]
        except errdefs.NotFound:
            raise errdefs.NotFound(f"tag does not exist: {ref.familiar()}") from None
    prefix = ref.name + ":"
    tags = sorted(r[0] for r in svc._store.refs.rows() if r[0].startswith(prefix))
    if not tags:
        raise errdefs.NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}")
    return [(t[len(prefix) :], svc.resolve(t)) for t in tags]


async def push(
    svc: Any, settings: RegistrySettings, ref: reference.Reference, auth: AuthConfig
) -> AsyncGenerator[dict[str, Any], None]:
    targets = _targets(svc, ref)
    async with settings.connect(ref.domain, auth) as rc:
        await rc.ping()
        for tag, img in targets:
            async for msg in _push_one(svc, rc, ref, tag, img):
                yield msg


async def _push_one(
    svc: Any, rc: RegistryClient, ref: reference.Reference, tag: str, img: Any
) -> AsyncGenerator[dict[str, Any], None]:
    repo = ref.path
    yield {"status": f"The push refers to repository [{ref.name}]"}
    diff_ids: list[str] = img.diff_ids
    # other repositories of this registry that hold the image: mount sources
    sources = []
    for r in svc._refs_for(img.id):
        try:
            other = reference.parse_normalized(r)
        except errdefs.InvalidArgument:
            continue
        if other.domain == ref.domain and other.path != repo and other.path not in sources:
            sources.append(other.path)
    for d in reversed(diff_ids):
        yield {"status": "Preparing", "progressDetail": {}, "id": _short(d)}
    prefix = f"{ref.domain}/"
    here = prefix + repo
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sem = asyncio.Semaphore(CONCURRENT_UPLOADS)
    blobs: dict[str, tuple[str, int]] = {}
    work_dir = svc.tmp / f"push-{secrets.token_hex(6)}"
    work_dir.mkdir(parents=True)

    async def one(diff_id: str, chain: str) -> None:
        sid = _short(diff_id)
        async with sem:
            cached = svc.layers.compressed(chain)
            if cached is not None:
                digest, size = cached["digest"], int(cached["size"])
                blobs[diff_id] = (digest, size)
                if await rc.blob_exists(repo, digest):
                    svc.layers.set_compressed(chain, digest, size, here)
                    await queue.put({"status": "Layer already exists", "progressDetail": {}, "id": sid})
                    return
                held = [r.removeprefix(prefix) for r in cached["repos"] if r.startswith(prefix)]
                for src in dict.fromkeys([*held, *sources]):
                    if src != repo and await rc.mount_blob(repo, digest, src):
                        svc.layers.set_compressed(chain, digest, size, here)
                        await queue.put({"status": f"Mounted from {src}", "progressDetail": {}, "id": sid})
                        return

                async def sent(n: int) -> None:
                    await queue.put(
                        {"status": "Pushing", "progressDetail": {"current": n, "total": size}, "id": sid}
                    )

                await rc.upload_blob(repo, digest, svc.content.path(digest), progress=sent)
                svc.layers.set_compressed(chain, digest, size, here)
                await queue.put({"status": "Pushed", "progressDetail": {}, "id": sid})
                return

            total = svc.content.size(diff_id)

            async def read(n: int) -> None:
                await queue.put(
                    {"status": "Pushing", "progressDetail": {"current": n, "total": total}, "id": sid}
                )

            gz = await asyncio.to_thread(_Gzipper, svc.content.path(diff_id), svc.content)
            try:
                await rc.upload_stream(repo, _pieces(gz, read), lambda: gz.writer.digest)
                digest, size = await asyncio.to_thread(gz.commit)
            finally:
                await asyncio.to_thread(gz.close)
            blobs[diff_id] = (digest, size)
            svc.layers.set_compressed(chain, digest, size, here)
            await queue.put({"status": "Pushed", "progressDetail": {}, "id": sid})

    layers = dict(reversed(list(zip(diff_ids, img.chain_ids, strict=True))))
    try:
        try:
            async for msg in run_reporting((one(d, c) for d, c in layers.items()), queue):
                yield msg
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
    async with svc._lock:
        svc._set_ref_locked(reference.Reference(ref.domain, ref.path, None, digest), img.id)
    svc._event("push", img, reference.Reference(ref.domain, ref.path, tag, None).familiar())
    yield {"status": f"{tag}: digest: {digest} size: {len(body)}"}
    yield {"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest, "Size": len(body)}}
