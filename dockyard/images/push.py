"""`docker push`: upload an image's layers, config and manifest to a registry.

Owns the push orchestration and its Docker progress messages. Layers are stored
uncompressed (by diff ID); each is gzip-compressed into a temporary file with fixed
header fields (no name, mtime 0), so the same layer always gives the same blob digest:
a second push finds it ("Layer already exists") and a push, rmi, pull round trip gives
the same image ID. Order, as real clients do it: HEAD each blob, try a cross-repository
mount from another repository of the same registry that holds the image, else POST+PUT;
then the config, then the manifest (Docker schema 2). The manifest digest is recorded as
a repo digest of the image.

Messages::

    {"status": "The push refers to repository [127.0.0.1:5000/bb]"}
    {"status": "Preparing", "id": "<12 hex>", "progressDetail": {}}   ... "Waiting", "Pushing"
    (progressDetail), "Pushed", "Layer already exists", "Mounted from <repo>"
    {"status": "latest: digest: sha256:... size: 527"}
    {"progressDetail": {}, "aux": {"Tag": "latest", "Digest": "sha256:...", "Size": 527}}
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import secrets
import shutil
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from dockyard import errdefs
from dockyard.images import reference
from dockyard.images.registries import RegistrySettings
from dockyard.registry import spec
from dockyard.registry.client import AuthConfig, RegistryClient, Unauthorized

__all__ = ["push"]

log = logging.getLogger(__name__)

CONCURRENT_UPLOADS = 5
COMPRESS_LEVEL = 1  # speed over size on loopback-class links; output is deterministic either way
_CHUNK = 1 << 20


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def _compress_sync(src: Path, dest: Path) -> tuple[str, int]:
    h = hashlib.sha256()

    class _Hashing:
        def __init__(self, f: Any) -> None:
            self.f = f
            self.n = 0

        def write(self, b: bytes) -> int:
            h.update(b)
            self.n += len(b)
            return int(self.f.write(b))

        def flush(self) -> None:
            self.f.flush()

    with open(src, "rb") as fin, open(dest, "wb") as raw:
        out = _Hashing(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=COMPRESS_LEVEL, mtime=0) as gz:
            shutil.copyfileobj(fin, gz, _CHUNK)
    return "sha256:" + h.hexdigest(), out.n


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
    rc = settings.endpoints(ref.domain, auth, push=True)[-1]
    async with rc:
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
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sem = asyncio.Semaphore(CONCURRENT_UPLOADS)
    blobs: dict[str, tuple[str, int]] = {}
    work_dir = svc.tmp / f"push-{secrets.token_hex(6)}"
    work_dir.mkdir(parents=True)

    async def one(diff_id: str) -> None:
        sid = _short(diff_id)
        async with sem:
            gz = work_dir / diff_id.removeprefix("sha256:")
            digest, size = await asyncio.to_thread(_compress_sync, svc.content.path(diff_id), gz)
            blobs[diff_id] = (digest, size)
            if await rc.blob_exists(repo, digest):
                await queue.put({"status": "Layer already exists", "progressDetail": {}, "id": sid})
                return
            for src in sources:
                if await rc.mount_blob(repo, digest, src):
                    await queue.put({"status": f"Mounted from {src}", "progressDetail": {}, "id": sid})
                    return

            async def progress(n: int) -> None:
                await queue.put(
                    {"status": "Pushing", "progressDetail": {"current": n, "total": size}, "id": sid}
                )

            await rc.upload_blob(repo, digest, gz, progress=progress)
            await queue.put({"status": "Pushed", "progressDetail": {}, "id": sid})

    errors: list[BaseException] = []
    done: dict[str, Any] = {}

    async def run_all() -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                for d in dict.fromkeys(reversed(diff_ids)):
                    tg.create_task(one(d))
        except BaseExceptionGroup as eg:
            errors.extend(eg.exceptions)
        finally:
            await queue.put(done)

    runner = asyncio.ensure_future(run_all())
    try:
        while True:
            msg = await queue.get()
            if msg is done:
                break
            yield msg
        if errors:
            err = errors[0]
            if isinstance(err, Unauthorized):
                raise errdefs.PermissionDenied("unauthorized: authentication required") from None
            raise err
        cfg = img.config_bytes
        if not await rc.blob_exists(repo, img.id):
            path = work_dir / "config"
            await asyncio.to_thread(path.write_bytes, cfg)
            await rc.upload_blob(repo, img.id, path)
    finally:
        if not runner.done():
            runner.cancel()
        try:
            await runner
        except asyncio.CancelledError:
            pass
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
