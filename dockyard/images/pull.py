"""`docker pull`: resolve a reference on a registry, fetch and verify its blobs, commit the image.

Owns the pull orchestration; it yields typed progress events (`progress.py`), which the
API layer renders as Docker's messages. Downloads run concurrently; each compressed blob
is verified and committed to the content store under its own digest, so a retried pull
resumes from the blobs already verified. Then, in one `ImageWrite` of the image store,
layers are decompressed (checked against the config's diff IDs) and extracted in order,
and the image, its tag and its repo digest are committed. No lock is held while the
registry or the client is waited for: only the write's commit takes the store's lock. A
failure aborts the write: no partial image survives.

Events::

    PullStarted(path, tag)
    LayerEvent(ALREADY_EXISTS | PULLING, digest) per layer, then per layer fetched:
    DOWNLOADING (current/total), VERIFYING, DOWNLOADED, EXTRACTING, PULLED
    RepoDigest(manifest digest), PullDone(reference, up_to_date)
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from dockyard import errdefs
from dockyard.images import reference
from dockyard.images._progress import run_reporting
from dockyard.images.endpoints import RegistrySettings
from dockyard.images.layers import chain_ids
from dockyard.images.progress import Event, LayerEvent, LayerPhase, PullDone, PullStarted, RepoDigest
from dockyard.images.store import ImageStore
from dockyard.registry import spec
from dockyard.registry.client import (
    AuthConfig,
    Descriptor,
    ManifestUnknown,
    RegistryClient,
    Unauthorized,
    parse_image_manifest,
    select_platform,
)

__all__ = ["pull"]

log = logging.getLogger(__name__)

CONCURRENT_DOWNLOADS = 3
_LAYER_TYPES = (
    spec.MT_DOCKER_LAYER,
    spec.MT_OCI_LAYER,
    spec.MT_OCI_LAYER_GZIP,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "",
)


@dataclass(frozen=True)
class _Resolved:
    digest: str  # what RepoDigests records: the top-level manifest (index or image)
    config: Descriptor
    layers: tuple[Descriptor, ...]


async def _resolve(rc: RegistryClient, ref: reference.Reference, platform: str | None) -> _Resolved:
    target = ref.digest or ref.tag or "latest"
    try:
        m = await rc.get_manifest(ref.path, target)
        top = m.digest
        if m.media_type in spec.INDEX_TYPES:
            os_, _, rest = (platform or "linux/amd64").partition("/")
            arch, _, variant = rest.partition("/")
            m = await rc.get_manifest(
                ref.path, select_platform(m.doc, os_ or "linux", arch or "amd64", variant)
            )
    except ManifestUnknown as err:
        if err.code == "NAME_UNKNOWN":
            raise errdefs.NotFound(
                f"pull access denied for {ref.familiar_name}, repository does not exist or may require "
                f"'docker login': denied: requested access to the resource is denied"
            ) from None
        raise errdefs.NotFound(
            f"manifest for {ref.familiar()} not found: manifest unknown: manifest unknown"
        ) from None
    except Unauthorized:
        raise errdefs.PermissionDenied(
            f"pull access denied for {ref.familiar_name}, repository does not exist or may require 'docker login'"
        ) from None
    im = parse_image_manifest(m.doc)
    for layer in im.layers:
        if layer.media_type not in _LAYER_TYPES and "tar" not in layer.media_type:
            raise errdefs.Unsupported(f"unsupported layer media type {layer.media_type}")
        if "zstd" in layer.media_type:
            raise errdefs.Unsupported(f"unsupported layer compression {layer.media_type}")
    return _Resolved(top, im.config, im.layers)


async def pull(
    store: ImageStore,
    settings: RegistrySettings,
    ref: reference.Reference,
    auth: AuthConfig,
    platform: str | None,
) -> AsyncGenerator[Event, None]:
    """Yield progress events; errors before the first event are plain exceptions."""
    for mirror in settings.mirrors_for(ref.domain):
        async with mirror:
            try:
                resolved = await _resolve(mirror, ref, platform)
            except errdefs.DockyardError as err:
                log.warning("mirror %s failed for %s: %s", mirror.base, ref, err)
                continue
            async for ev in _pull_resolved(store, mirror, ref, resolved):
                yield ev
            return
    async with settings.connect(ref.domain, auth) as rc:
        resolved = await _resolve(rc, ref, platform)
        async for ev in _pull_resolved(store, rc, ref, resolved):
            yield ev


async def _pull_resolved(
    store: ImageStore, rc: RegistryClient, ref: reference.Reference, r: _Resolved
) -> AsyncGenerator[Event, None]:
    yield PullStarted(ref.path, ref.tag or ref.digest or "")
    if r.config.size > spec.MAX_CONFIG:
        raise errdefs.InvalidArgument(
            f"image config {r.config.digest} is too large: "
            f"{r.config.size} bytes, the limit is {spec.MAX_CONFIG}"
        )
    # the descriptor's size bounds the read: a registry cannot feed the daemon more
    config_bytes = await rc.read_blob(ref.path, r.config.digest, limit=r.config.size)
    try:
        config = json.loads(config_bytes)
    except ValueError:
        raise errdefs.InvalidArgument(f"image config {r.config.digest} is not JSON") from None
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    if len(diff_ids) != len(r.layers):
        raise errdefs.InvalidArgument(
            f"image config has {len(diff_ids)} diff IDs but the manifest {len(r.layers)} layers"
        )
    image_id = r.config.digest
    chains = chain_ids(diff_ids)
    tag_ref = reference.Reference(ref.domain, ref.path, ref.tag, None) if ref.tag else None
    digest_ref = reference.Reference(ref.domain, ref.path, None, r.digest)
    refs = [x for x in (tag_ref, digest_ref) if x is not None]
    shown = ref.familiar()

    existing = store.get(image_id)
    if existing is not None and all(store.layers.exists(c) for c in chains):
        current = set(store.refs_for(image_id))
        up_to_date = all(str(x) in current for x in refs)
        await store.set_refs(refs, image_id)
        yield RepoDigest(r.digest)
        if not up_to_date:
            store.publish("pull", store.get(image_id) or image_id, shown)
        yield PullDone(shown, up_to_date)
        return

    async with store.writer() as w:
        # pinned from the first look: a layer found here stays until the image is in
        w.use_layers(chains)
        queue: asyncio.Queue[LayerEvent] = asyncio.Queue()
        todo: list[int] = []
        for i, (layer, chain) in enumerate(zip(r.layers, chains, strict=True)):
            if store.layers.exists(chain):
                yield LayerEvent(LayerPhase.ALREADY_EXISTS, layer.digest)
            else:
                todo.append(i)
                yield LayerEvent(LayerPhase.PULLING, layer.digest)
        sem = asyncio.Semaphore(CONCURRENT_DOWNLOADS)

        async def download(i: int) -> None:
            layer = r.layers[i]
            if store.content.exists(layer.digest):  # verified by an earlier (interrupted) pull
                w.pin_blob(layer.digest)
                await queue.put(LayerEvent(LayerPhase.DOWNLOADED, layer.digest))
                return
            async with sem:
                bw = await asyncio.to_thread(store.content.writer)
                try:

                    async def sink(b: bytes) -> None:
                        await asyncio.to_thread(bw.write, b)

                    async def progress(n: int) -> None:
                        await queue.put(LayerEvent(LayerPhase.DOWNLOADING, layer.digest, n, layer.size))

                    await rc.fetch_blob(ref.path, layer.digest, sink, progress=progress, limit=layer.size)
                    await queue.put(LayerEvent(LayerPhase.VERIFYING, layer.digest))
                    await asyncio.to_thread(bw.commit, layer.digest)
                    w.pin_blob(layer.digest)
                except BaseException:
                    bw.abort()
                    raise
            await queue.put(LayerEvent(LayerPhase.DOWNLOADED, layer.digest))

        async for ev in run_reporting((download(i) for i in todo), queue):
            yield ev

        compressed = [r.layers[i].digest for i in todo]
        here = f"{ref.domain}/{ref.path}"
        parent: str | None = None
        for i, (layer, diff_id, chain) in enumerate(zip(r.layers, diff_ids, chains, strict=True)):
            if i in todo:
                yield LayerEvent(LayerPhase.EXTRACTING, layer.digest, layer.size, layer.size)

                def work(
                    layer: Descriptor = layer,
                    diff_id: str = diff_id,
                    parent: str | None = parent,
                    chain: str = chain,
                ) -> None:
                    w.pin_blob(diff_id)
                    if not store.content.exists(diff_id):
                        with store.content.open(layer.digest) as f:
                            w.ingest_sync(f, expected=diff_id)
                    w.create_layer_sync(parent, diff_id)
                    # keep the downloaded blob as the layer's compressed form: a push of
                    # this image HEADs or mounts it instead of recompressing
                    store.layers.set_compressed(chain, layer.digest, layer.size, here)

                await w.run(work)
                yield LayerEvent(LayerPhase.PULLED, layer.digest)
            parent = chain
        w.put_image(config_bytes)
        for x in refs:
            w.set_ref(x, image_id)
        done = await w.commit()
    # the compressed downloads stay as the layers' compressed-blob cache (LayerStore.compressed);
    # one that no layer recorded (a layer that already existed) goes
    keep = set(diff_ids) | {c["digest"] for c in map(store.layers.compressed, chains) if c}
    for d in compressed:
        if d not in keep:
            store.content.delete(d)
    store.publish("pull", done.images[image_id], shown)
    yield RepoDigest(r.digest)
    yield PullDone(shown, False)
