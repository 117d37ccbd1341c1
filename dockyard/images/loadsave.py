"""`docker load` and `docker save`: image archives in and out.

Load is one `ImageWrite`: the archive's layers are verified (diff IDs, and the archive's
own layer digests) and extracted in a worker thread outside the store's lock, then every
image and tag is committed at once; it yields typed progress events (`progress.py`).
Save resolves its names first (a 404 before any byte) and streams blobs as stored."""

from __future__ import annotations

import asyncio
import json
import shutil
import tarfile
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import IO

from dockyard.errdefs import InvalidArgument
from dockyard.images import archive, reference
from dockyard.images.layers import chain_id
from dockyard.images.model import Image
from dockyard.images.progress import ImageLoaded, LayerEvent, LayerPhase
from dockyard.images.store import ImageStore, ImageWrite

__all__ = ["ImageArchives"]

_CHUNK = 1 << 20
LoadEvent = LayerEvent | ImageLoaded


class ImageArchives:
    def __init__(self, store: ImageStore) -> None:
        self._s = store

    async def load(self, source: Path) -> AsyncGenerator[LoadEvent, None]:
        """`docker load`: a LOADING event per layer actually loaded (dockerd's "Loading
        layer"), then one ImageLoaded per image and tag, once all are committed."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[LayerEvent] = asyncio.Queue()

        def layer_loaded(diff_id: str, size: int) -> None:
            loop.call_soon_threadsafe(events.put_nowait, LayerEvent(LayerPhase.LOADING, diff_id, size, size))

        async with self._s.writer() as w:
            work = asyncio.ensure_future(w.run(lambda: _load_layers_sync(w, self._s, source, layer_loaded)))
            try:
                while not work.done() or not events.empty():
                    getter = asyncio.ensure_future(events.get())
                    await asyncio.wait([work, getter], return_when=asyncio.FIRST_COMPLETED)
                    if getter.done():
                        yield getter.result()
                    else:
                        getter.cancel()
                plans = work.result()
            finally:
                if not work.done():
                    work.cancel()  # the thread ends by itself; the write's abort waits for it
            for config_bytes, tags in plans:
                image_id = w.put_image(config_bytes)
                for t in tags:
                    w.set_ref(t, image_id)
            done = await w.commit()
        loaded: list[Image] = []
        out: list[ImageLoaded] = []
        for config_bytes, tags in plans:
            img = done.images[ImageWrite.image_id(config_bytes)]
            loaded.append(img)
            if not tags:
                out.append(ImageLoaded(img.id))
            for t in tags:
                out.append(ImageLoaded(img.id, t.familiar(), done.replaced.get(str(t))))
        for img in loaded:
            self._s.publish("load", img)
        for ev in out:
            yield ev

    def save_items(self, names: list[str]) -> list[archive.SaveItem]:
        """Resolve `docker save` arguments (a bare repository name means all its tags)."""
        by_id: dict[str, tuple[Image, list[str]]] = {}
        for name in names:
            refs: list[str] = []
            img: Image | None = None
            if not reference.is_id_like(name.removeprefix("sha256:")) or self._s.ref_target(
                _maybe_norm(name)
            ):
                try:
                    parsed = reference.parse_normalized(name)
                except InvalidArgument:
                    parsed = None
                if parsed is not None and parsed.tag is None and parsed.digest is None:
                    matching = self._s.refs_with_prefix(parsed.name + ":")
                    for r in sorted(matching):
                        target = self._s.ref_target(r)
                        cur = self._s.get(target) if target else None
                        if cur is not None:
                            by_id.setdefault(cur.id, (cur, []))[1].append(r)
                    if matching:
                        continue
                if parsed is not None and parsed.tag is not None:
                    img = self._s.resolve(name)
                    refs = [str(parsed)]
            if img is None:
                img = self._s.resolve(name)
            entry = by_id.setdefault(img.id, (img, []))
            for r in refs:
                if r not in entry[1]:
                    entry[1].append(r)
        return [
            archive.SaveItem(
                image_id=img.id,
                config_bytes=img.config_bytes,
                diff_ids=tuple(img.diff_ids),
                tags=tuple(refs),
                familiar_tags=tuple(reference.familiar(r) for r in refs),
                created=img.created or time.time(),
            )
            for img, refs in by_id.values()
        ]

    def write_save(self, items: list[archive.SaveItem], out: IO[bytes]) -> None:
        """Blocking: stream the tarball; run in a worker thread."""
        archive.write_archive(out, items, self._s.content.path)

    def publish_saved(self, items: list[archive.SaveItem]) -> None:
        for it in items:
            self._s.publish("save", it.image_id)


def _maybe_norm(name: str) -> str:
    try:
        return str(reference.parse_normalized(name).with_default_tag())
    except InvalidArgument:
        return name


def _load_layers_sync(
    w: ImageWrite, store: ImageStore, source: Path, layer_loaded: Callable[[str, int], None]
) -> list[tuple[bytes, list[reference.Reference]]]:
    plain = source
    with open(source, "rb") as f:
        head = f.read(6)
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        plain = source.with_name(source.name + ".tar")
        with open(source, "rb") as f, open(plain, "wb") as dst:
            shutil.copyfileobj(archive.decompressed(f), dst, _CHUNK)
    try:
        try:
            tf = tarfile.open(plain, "r:")  # noqa: SIM115 - closed by the `with tf` below
        except tarfile.TarError as err:
            raise InvalidArgument(f"invalid archive: {err}") from None
        with tf:
            out: list[tuple[bytes, list[reference.Reference]]] = []
            for item in archive.read_archive(tf):
                try:
                    config = json.loads(item.config_bytes)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise InvalidArgument("invalid archive: image config is not JSON") from None
                diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
                if len(diff_ids) != len(item.layers):
                    raise InvalidArgument(
                        f"invalid manifest, layers length mismatch: expected {len(diff_ids)}, got {len(item.layers)}"
                    )
                tags = []
                for t in item.tags:
                    try:
                        tags.append(reference.parse_normalized(t).with_default_tag())
                    except InvalidArgument:
                        raise InvalidArgument(f"invalid archive: invalid reference {t!r}") from None
                parent: str | None = None
                for diff_id, src in zip(diff_ids, item.layers, strict=True):  # lengths checked above
                    chain = chain_id(parent, diff_id)
                    w.use_layers([chain])  # pinned before we look: the collector keeps it from here
                    if not store.layers.exists(chain):
                        size = 0
                        w.pin_blob(diff_id)
                        if not store.content.exists(diff_id):
                            with archive.open_member(tf, src.member) as raw:
                                hashing = archive.HashingReader(raw)
                                w.ingest_sync(hashing, expected=diff_id)
                                hashing.drain()
                                size = hashing.size
                            if src.digest and hashing.digest != src.digest:
                                raise InvalidArgument(
                                    f"invalid archive: layer digest mismatch for {src.digest}"
                                )
                        w.create_layer_sync(parent, diff_id)
                        layer_loaded(diff_id, size)
                    parent = chain
                out.append((item.config_bytes, tags))
            return out
    finally:
        if plain != source:
            plain.unlink(missing_ok=True)
