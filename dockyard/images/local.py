"""Images made on this host: `docker import` (a root filesystem tarball), `docker commit`
(a container's changes) and the builder's commits; and the spooling of request bodies
they read. Each is one `ImageWrite`: the layer is made outside the store's lock, the
image row and its tag are committed together, and a failure leaves nothing."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from dockyard.errdefs import InvalidArgument
from dockyard.images import reference
from dockyard.images.config import apply_changes
from dockyard.images.layers import chain_ids
from dockyard.images.model import DOCKER_VERSION, Image, dumps
from dockyard.images.store import ImageStore
from dockyard.timefmt import now_rfc3339

__all__ = ["LocalImages", "parse_target"]

_CHUNK = 1 << 20


def parse_target(repo: str, tag: str | None) -> reference.Reference:
    """A tag target: `repo` (may itself hold `:tag`) plus an optional tag."""
    if not repo:
        raise InvalidArgument("repository name must have at least one component")
    ref = reference.parse_normalized(repo)
    if ref.digest:
        raise InvalidArgument("refusing to create a tag with a digest reference")
    if tag:
        ref = ref.with_tag(tag)
    return ref.with_default_tag()


class LocalImages:
    def __init__(self, store: ImageStore) -> None:
        self._s = store

    async def spool(self, chunks: AsyncIterator[bytes]) -> Path:
        """Write a request body to a temporary file (removed by the caller)."""
        path = self._s.tmp / f"upload-{secrets.token_hex(8)}"
        f = await asyncio.to_thread(open, path, "wb")
        try:
            buf: list[bytes] = []
            n = 0
            async for chunk in chunks:
                buf.append(chunk)
                n += len(chunk)
                if n >= _CHUNK:
                    data = b"".join(buf)
                    buf, n = [], 0
                    await asyncio.to_thread(f.write, data)
            if buf:
                await asyncio.to_thread(f.write, b"".join(buf))
        except BaseException:
            f.close()
            path.unlink(missing_ok=True)
            raise
        f.close()
        return path

    async def tag(self, source: str, repo: str, tag: str | None) -> Image:
        img = self._s.resolve(source)
        target = parse_target(repo, tag)
        await self._s.set_refs([target], img.id)
        self._s.publish("tag", img, target.familiar())
        return self._s.get(img.id) or img

    async def import_image(
        self,
        source: Path,
        *,
        repo: str | None = None,
        tag: str | None = None,
        changes: list[str] | None = None,
        message: str = "",
        src: str = "-",
        platform: str | None = None,
    ) -> Image:
        """`docker import`: one layer from a root filesystem tarball (plain or compressed)."""
        target = parse_target(repo, tag) if repo else None
        cfg_part = apply_changes({}, [c for c in (changes or []) if c.strip()])
        os_name, _, arch = (platform or "linux/amd64").partition("/")
        async with self._s.writer() as w:

            def work() -> str:
                with open(source, "rb") as f:
                    diff_id = w.ingest_sync(f)
                w.create_layer_sync(None, diff_id)
                return diff_id

            diff_id = await w.run(work)
            created = now_rfc3339()
            comment = message or f"Imported from {src}"
            config: dict[str, Any] = {
                "architecture": arch or "amd64",
                "comment": comment,
                "config": cfg_part,
                "created": created,
                "docker_version": DOCKER_VERSION,
                "history": [{"created": created, "comment": comment}],
                "os": os_name or "linux",
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            }
            image_id = w.put_image(dumps(config))
            if target is not None:
                w.set_ref(target, image_id)
            img = (await w.commit()).images[image_id]
        if target is not None:  # dockerd tags first, then logs the import
            self._s.publish("tag", img, target.familiar())
        self._s.publish("import", img)
        return img

    async def commit(
        self,
        upper: Path,
        parent_image_id: str,
        container_config: dict[str, Any],
        *,
        container_id: str,
        repo: str | None,
        tag: str | None,
        comment: str,
        author: str,
        changes: list[str],
    ) -> Image:
        """`docker commit`: the changes in `upper` (the container's overlay upper dir)."""
        target = parse_target(repo, tag) if repo else None
        new_cfg = apply_changes(container_config, [c for c in (changes or []) if c.strip()])
        parent = self._s.get(parent_image_id) or self._s.resolve(parent_image_id)
        async with self._s.writer() as w:
            w.use_layers(parent.chain_ids)
            parent_chain = parent.chain_ids[-1] if parent.chain_ids else None
            diff_id = await w.layer_from_dir(upper, parent_chain)
            created = now_rfc3339()
            pc = parent.config
            hist_entry: dict[str, Any] = {"created": created}
            if author:
                hist_entry["author"] = author
            hist_entry["created_by"] = " ".join(container_config.get("Cmd") or [])
            if comment:
                hist_entry["comment"] = comment
            if not diff_id:
                hist_entry["empty_layer"] = True
            config: dict[str, Any] = {
                "architecture": pc.get("architecture", "amd64"),
                "author": author,
                "config": new_cfg,
                "container": container_id,
                "container_config": container_config,
                "created": created,
                "docker_version": DOCKER_VERSION,
                "history": [*(pc.get("history") or []), hist_entry],
                "os": pc.get("os", "linux"),
                "rootfs": {"type": "layers", "diff_ids": parent.diff_ids + ([diff_id] if diff_id else [])},
            }
            if comment:
                config["comment"] = comment
            if not author:
                del config["author"]
            image_id = w.put_image(dumps(config), parent=parent.id)
            if target is not None:
                w.set_ref(target, image_id)
            img = (await w.commit()).images[image_id]
        if target is not None:
            self._s.publish("tag", img, target.familiar())
        return img

    async def create_image(
        self, config: dict[str, Any], *, parent: str = "", layer_dir: Path | None = None
    ) -> Image:
        """The builder's commit: `config` is the complete image config, except that a
        non-empty `layer_dir` (an overlay upper dir) adds one layer on top of
        `config["rootfs"]["diff_ids"]`; an empty one marks the last history entry
        `empty_layer`. Nothing is tagged."""
        config = json.loads(json.dumps(config))
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        async with self._s.writer() as w:
            w.use_layers(chain_ids(diff_ids))
            if layer_dir is not None:
                diff_id = await w.layer_from_dir(layer_dir, chain_ids(diff_ids)[-1] if diff_ids else None)
                if diff_id:
                    diff_ids.append(diff_id)
                elif config.get("history"):
                    config["history"][-1]["empty_layer"] = True
            config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
            image_id = w.put_image(dumps(config), parent=parent)
            return (await w.commit()).images[image_id]
