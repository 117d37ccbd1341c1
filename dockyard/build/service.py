"""BuildService: what the API's build routes call. Context in, image ID out.

Takes the request body (held in memory, or spooled when large) and reads the context from
it (or fetches a `remote`: a tarball or Dockerfile URL, or a git URL with an optional
`#ref:subdir`; never a path on the daemon's host), runs the builder, removes what builds cut short by a
daemon's end left behind, and owns the build cache's prune and disk-usage views. It knows
nothing of HTTP. It is given the services the builder uses (the image service, the
container service for RUN steps, the distribution service for missing base images) and
builds the builder's parts from them once.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import secrets
import shutil
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from dockyard._sys import proc
from dockyard.build import progress
from dockyard.build.builder import Builder
from dockyard.build.cache import BuildCache
from dockyard.build.context import Context, context_texts, extract_context
from dockyard.build.model import BuildError, BuildOptions
from dockyard.build.ports import BaseImagePuller
from dockyard.build.runner import Containers, ContainerStepRunner
from dockyard.build.tarindex import Index, TarIndexer, is_compressed
from dockyard.errdefs import InvalidArgument
from dockyard.images.service import ImageService
from dockyard.store import Store
from dockyard.timefmt import parse_time_param

__all__ = ["BuildError", "BuildOptions", "BuildService", "Upload"]

log = logging.getLogger(__name__)


# A context upload up to this size stays in memory: a fully cached build then never
# writes it anywhere. Larger ones are spooled to a file under the data root, and so is
# any upload that would take all builds' held uploads past the total.
_IN_MEMORY = 64 << 20
_IN_MEMORY_TOTAL = 256 << 20


@dataclass(frozen=True)
class Upload:
    """A context upload, held in memory (`chunks`) or spooled to `path`, and its index if it
    has one. `discard()` when the build is over."""

    index: Index | None
    chunks: list[bytes] | None = None
    path: Path | None = None
    release: Callable[[], None] | None = None  # gives the held bytes back to the budget

    def open(self) -> BinaryIO:
        if self.path is not None:
            return open(self.path, "rb")
        return io.BytesIO(b"".join(self.chunks or []))

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        if self.release is not None:
            self.release()


class BuildService:
    """Flow::

        body = await builds.receive(request_chunks, "Dockerfile")
        image_id = await builds.build(body, BuildOptions(tags=["app:1"]), emit)   # emit(progress event)
        await builds.prune(all=True)
    """

    def __init__(
        self,
        store: Store,
        images: ImageService,
        containers: Containers,
        data_root: Path,
        distribution: BaseImagePuller | None = None,
    ) -> None:
        self.images = images
        self.cache = BuildCache(store, images)
        self._held = 0  # bytes of uploads held in memory, all builds together
        self.tmp = data_root / "tmp" / "build"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._runner = ContainerStepRunner(containers, data_root / "build-runs")
        self.builder = Builder(images, self.cache, self._runner, self.tmp / "mounts", distribution)

    async def recover(self) -> None:
        """Daemon start: remove the RUN containers of builds cut short by the last daemon's end."""
        await self._runner.remove_interrupted()

    async def receive(self, chunks: AsyncIterator[bytes], dockerfile: str) -> Upload:
        """Take the context upload, indexing it on the way (see build.tarindex)."""
        indexer = TarIndexer(context_texts(dockerfile))
        held: list[bytes] = []
        size = 0

        def release() -> None:
            nonlocal size
            self._held -= size
            size = 0

        stream = aiter(chunks)
        try:
            async for chunk in stream:
                indexer.feed(chunk)
                held.append(chunk)
                size += len(chunk)
                self._held += len(chunk)
                if size > _IN_MEMORY or self._held > _IN_MEMORY_TOTAL:
                    break
            else:
                return Upload(indexer.finish(), chunks=held, release=release)
        except BaseException:
            release()
            raise

        async def spilled() -> AsyncIterator[bytes]:
            for chunk in held:
                yield chunk
            held.clear()
            release()
            async for chunk in stream:
                indexer.feed(chunk)
                yield chunk

        try:
            path = await self.images.spool(spilled())
        finally:
            release()
        return Upload(indexer.finish(), path=path)

    async def build(self, body: Upload | None, opts: BuildOptions, emit: progress.Emit, *, remote: str = "") -> str:
        work = self.tmp / ("ctx-" + secrets.token_hex(8))
        # 0700: a context keeps its files' owners and set-id bits (COPY copies them, as
        # dockerd's does), so no other host user may reach them here
        work.mkdir(mode=0o700)
        try:
            root = work / "context"
            dockerfile = opts.dockerfile or "Dockerfile"
            if remote:
                ctx = Context(await self._remote(remote, work), dockerfile)
            elif body is not None:
                ctx = await asyncio.to_thread(Context.from_tarball, body.open, root, dockerfile, body.index)
            else:
                root.mkdir()
                ctx = Context(root, dockerfile)
            return await self.builder.build(ctx, opts, emit)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    async def _remote(self, remote: str, work: Path) -> Path:
        root = work / "context"
        url, _, frag = remote.partition("#")
        # Only URLs, as dockerd's urlutil: a path on the daemon's host is no context a client
        # may name (it would read the host's files on the caller's behalf)
        is_git = url.startswith(("git://", "git@", "github.com/")) or (
            re.match(r"^https?://", url) is not None and url.endswith(".git")
        )
        if is_git:
            ref, _, subdir = frag.partition(":")
            argv = ["git", "clone", "--quiet", "--recurse-submodules"]
            if ref:
                argv += ["--branch", ref]
            if await asyncio.to_thread(_supports_shallow, url):
                argv += ["--depth", "1"]
            try:
                await proc.run([*argv, url, str(root)], timeout=300)
            except proc.ProcessFailed as err:
                raise InvalidArgument(f"unable to prepare context: unable to 'git clone' to temporary context directory: {err}") from None
            if subdir:
                sub = (root / subdir).resolve()
                if not str(sub).startswith(str(root.resolve())) or not sub.is_dir():
                    raise InvalidArgument(f"unable to prepare context: path {subdir!r} not found")
                return sub
            return root
        if re.match(r"^https?://", url):
            dest = work / "remote"
            await asyncio.to_thread(_download, url, dest)
            if _looks_like_archive(await asyncio.to_thread(_head, dest)):
                await asyncio.to_thread(_extract_file, dest, root)
            else:  # a single Dockerfile
                root.mkdir()
                shutil.move(str(dest), root / "Dockerfile")
            return root
        raise InvalidArgument(f"unable to prepare context: remoteURL ({remote}) could not be recognized as URL")

    async def prune(self, *, all: bool = False, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """`POST /build/prune`: `until` (entries not used since) is honoured; the classic
        builder's cache has none of BuildKit's other filters, so they are refused."""
        f = filters or {}
        for key in f:
            if key != "until":
                raise InvalidArgument(f"invalid filter '{key}'")
        until = parse_time_param(f["until"][0]) if f.get("until") else None
        return await self.cache.prune(all=all, unused_since=until)

    def disk_usage(self) -> list[dict[str, Any]]:
        return self.cache.usage()

    def statistics(self) -> dict[str, int]:
        return {**self.builder.statistics(), "cache_entries": len(self.cache.entries())}


def _extract_file(path: Path, dest: Path) -> dict[str, str]:
    with open(path, "rb") as f:
        return extract_context(f, dest)


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(512)


def _supports_shallow(url: str) -> bool:
    """A shallow clone needs git's smart protocol; over HTTP, dockerd asks the server first
    (a dumb HTTP server serves plain files and refuses `--depth`)."""
    if not re.match(r"^https?://", url):
        return True
    probe = url.rstrip("/") + "/info/refs?service=git-upload-pack"
    try:
        with urllib.request.urlopen(probe, timeout=30) as resp:
            return bool(resp.headers.get("Content-Type") == "application/x-git-upload-pack-advertisement")
    except OSError:
        return False


def _download(url: str, dest: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=120) as resp, open(dest, "wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
    except OSError as err:
        raise InvalidArgument(f"unable to prepare context: unable to download remote context {url}: {err}") from None


def _looks_like_archive(head: bytes) -> bool:
    return is_compressed(head) or (len(head) >= 262 and head[257:262] == b"ustar")
