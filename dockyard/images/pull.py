"""`docker pull`: resolve a reference on a registry, fetch and verify its blobs, commit the image.

Owns the pull orchestration and its Docker progress messages. Downloads run concurrently
and outside the image lock; each compressed blob is verified and committed to the content
store under its own digest, so a retried pull resumes from the blobs already verified.
Then, under the image service's lock, layers are decompressed (checked against the
config's diff IDs), extracted in order, and the image, its tag and its repo digest are
committed. A failure there runs the service's collector: no partial image survives.

Messages (one dict per line of Docker's JSON stream)::

    {"status": "Pulling from library/busybox", "id": "latest"}
    {"status": "Pulling fs layer", "id": "<12 hex>"}   ... "Waiting", "Downloading" (progressDetail),
    "Verifying Checksum", "Download complete", "Extracting" (progressDetail), "Pull complete"
    {"status": "Digest: sha256:..."}
    {"status": "Status: Downloaded newer image for busybox:latest"}
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from dockyard import errdefs
from dockyard.images import reference
from dockyard.images._progress import run_reporting
from dockyard.images.endpoints import RegistrySettings
from dockyard.images.layers import chain_ids
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


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def _msg(status: str, id_: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"status": status}
    if id_ is not None:
        out["id"] = id_
    out.update(extra)
    return out


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
    svc: Any, settings: RegistrySettings, ref: reference.Reference, auth: AuthConfig, platform: str | None
) -> AsyncGenerator[dict[str, Any], None]:
    """Yield Docker progress messages; errors before the first message are plain exceptions."""
    for mirror in settings.mirrors_for(ref.domain):
        async with mirror:
            try:
                resolved = await _resolve(mirror, ref, platform)
            except errdefs.DockyardError as err:
                log.warning("mirror %s failed for %s: %s", mirror.base, ref, err)
                continue
            async for msg in _pull_resolved(svc, mirror, ref, resolved):
                yield msg
            return
    async with settings.connect(ref.domain, auth) as rc:
        resolved = await _resolve(rc, ref, platform)
        async for msg in _pull_resolved(svc, rc, ref, resolved):
            yield msg


async def _pull_resolved(
    svc: Any, rc: RegistryClient, ref: reference.Reference, r: _Resolved
) -> AsyncGenerator[dict[str, Any], None]:
    yield _msg(f"Pulling from {ref.path}", ref.tag or ref.digest)
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
    shown = ref.familiar()

    existing = svc.get(image_id)
    if existing is not None and all(svc.layers.exists(c) for c in chains):
        current = {str(x) for x in svc._refs_for(image_id)}
        up_to_date = (tag_ref is None or str(tag_ref) in current) and str(digest_ref) in current
        async with svc._lock:
            if tag_ref is not None:
                svc._set_ref_locked(tag_ref, image_id)
            svc._set_ref_locked(digest_ref, image_id)
        yield _msg(f"Digest: {r.digest}")
        if up_to_date:
            yield _msg(f"Status: Image is up to date for {shown}")
        else:
            svc._event("pull", svc.get(image_id), shown)
            yield _msg(f"Status: Downloaded newer image for {shown}")
        return

    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    todo: list[int] = []
    for i, (layer, chain) in enumerate(zip(r.layers, chains, strict=True)):
        if svc.layers.exists(chain):
            yield _msg("Already exists", _short(layer.digest), progressDetail={})
        else:
            todo.append(i)
            yield _msg("Pulling fs layer", _short(layer.digest), progressDetail={})
    sem = asyncio.Semaphore(CONCURRENT_DOWNLOADS)

    async def download(i: int) -> None:
        layer = r.layers[i]
        sid = _short(layer.digest)
        if svc.content.exists(layer.digest):  # verified by an earlier (interrupted) pull
            await queue.put(_msg("Download complete", sid, progressDetail={}))
            return
        async with sem:
            w = await asyncio.to_thread(svc.content.writer)
            try:

                async def sink(b: bytes) -> None:
                    await asyncio.to_thread(w.write, b)

                async def progress(n: int) -> None:
                    await queue.put(
                        _msg("Downloading", sid, progressDetail={"current": n, "total": layer.size})
                    )

                await rc.fetch_blob(ref.path, layer.digest, sink, progress=progress, limit=layer.size)
                await queue.put(_msg("Verifying Checksum", sid, progressDetail={}))
                await asyncio.to_thread(w.commit, layer.digest)
            except BaseException:
                w.abort()
                raise
        await queue.put(_msg("Download complete", sid, progressDetail={}))

    async for msg in run_reporting((download(i) for i in todo), queue):
        yield msg

    compressed = [r.layers[i].digest for i in todo]
    here = f"{ref.domain}/{ref.path}"
    async with svc._lock:
        try:
            parent: str | None = None
            for i, (layer, diff_id, chain) in enumerate(zip(r.layers, diff_ids, chains, strict=True)):
                if i in todo:
                    sid = _short(layer.digest)
                    yield _msg("Extracting", sid, progressDetail={"current": layer.size, "total": layer.size})

                    def work(
                        layer: Descriptor = layer,
                        diff_id: str = diff_id,
                        parent: str | None = parent,
                        chain: str = chain,
                    ) -> None:
                        if not svc.content.exists(diff_id):
                            with svc.content.open(layer.digest) as f:
                                svc._ingest_layer_sync(f, expected=diff_id)
                        svc._create_layer_sync(parent, diff_id)
                        # keep the downloaded blob as the layer's compressed form: a push of
                        # this image HEADs or mounts it instead of recompressing
                        svc.layers.set_compressed(chain, layer.digest, layer.size, here)

                    await asyncio.to_thread(work)
                    yield _msg("Pull complete", sid, progressDetail={})
                parent = chain
            with svc._store.transaction():
                img = svc._put_image_locked(config_bytes, parent="")
                if tag_ref is not None:
                    svc._set_ref_locked(tag_ref, img.id)
                svc._set_ref_locked(digest_ref, img.id)
        except BaseException:
            await asyncio.to_thread(svc._gc_sync)
            raise
        svc._new_blobs.clear()
    # the compressed downloads stay as the layers' compressed-blob cache (LayerStore.compressed);
    # one that no layer recorded (a layer that already existed) goes
    keep = set(diff_ids) | {c["digest"] for c in map(svc.layers.compressed, chains) if c}
    for d in compressed:
        if d not in keep:
            svc.content.delete(d)
    svc._event("pull", svc.get(image_id), shown)
    yield _msg(f"Digest: {r.digest}")
    yield _msg(f"Status: Downloaded newer image for {shown}")
