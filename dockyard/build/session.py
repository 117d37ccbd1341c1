"""One build's shared state, and the operations every step executor uses.

Owns `Services` (what the builder was given: image store, cache, step runner, base-image
puller, the mounts folder) and `BuildSession`: the request's options, context and parsed
Dockerfile, the images the build made (for clean-up), the build args seen, the cache-from
sources, each stage's future result, the held output of a quiet build, and the shared
operations (expansion, commit, the base image of a `FROM`/`COPY --from`, emitting).
The stage graph is `stages.py`'s; what each instruction does is the executors'.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from dockyard import errdefs
from dockyard.build import context as ctxmod
from dockyard.build import progress
from dockyard.build.cache import BuildCache
from dockyard.build.dockerfile import Dockerfile, Instruction, arg_pairs, expand
from dockyard.build.imageconfig import StageState, step_config
from dockyard.build.model import BuildError, BuildOptions
from dockyard.build.ports import BaseImagePuller, BuildImages, StepRunner
from dockyard.images.service import Image
from dockyard.timefmt import now_rfc3339

__all__ = ["BuildSession", "Executor", "Services"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    images: BuildImages
    cache: BuildCache
    runner: StepRunner
    puller: BaseImagePuller | None
    mounts: Path  # where COPY/ADD/WORKDIR mount the snapshots they write into


@dataclass
class BuildSession:
    svc: Services
    ctx: ctxmod.Context
    df: Dockerfile
    opts: BuildOptions
    sink: progress.Emit
    made: list[str] = field(default_factory=list)  # image IDs this build created
    held: list[progress.BuildEvent] = field(default_factory=list)  # the output a quiet build holds back
    results: dict[int, asyncio.Future[str]] = field(default_factory=dict)  # each needed stage's image
    used_args: set[str] = field(default_factory=set)
    meta: dict[str, str | None] = field(default_factory=dict)  # the ARGs before the first FROM
    sources: list[Image] = field(
        default_factory=list
    )  # the cache-from images found here (dockerd skips the others)

    def __post_init__(self) -> None:
        for ref in self.opts.cachefrom:
            try:
                self.sources.append(self.svc.images.resolve(ref))
            except errdefs.NotFound:
                log.warning("cache-from image %s not found, skipping it", ref)
        buildargs = self.opts.buildargs
        for ins in self.df.meta_args:
            for name, default in arg_pairs(ins):
                value = buildargs.get(name) if buildargs.get(name) is not None else None
                if value is None and default is not None:
                    value = expand(default, self.meta_env(), self.df.escape, ins.line)
                self.meta[name] = value
                if name in buildargs:
                    self.used_args.add(name)

    # ---- output ------------------------------------------------------------------------------

    async def emit(self, event: progress.BuildEvent) -> None:
        if self.opts.quiet:
            self.held.append(event)
            return
        await self.sink(event)

    async def flush_quiet(self) -> None:
        held, self.held = self.held, []
        for event in held:
            await self.sink(event)

    async def output(self, text: str, stderr: bool) -> None:
        """A RUN container's output (the runner's sink)."""
        await self.emit(progress.Output(text, stderr))

    # ---- names and variables ---------------------------------------------------------------

    def meta_env(self) -> dict[str, str]:
        return {k: v for k, v in self.meta.items() if v is not None}

    def x(self, s: StageState, word: str, ins: Instruction) -> str:
        """`word` with the stage's variables expanded."""
        return expand(word, s.variables(), self.df.escape, ins.line)

    def stage_ref(self, ref: str, before: int) -> int | None:
        """The index of the stage `ref` names, if it is one before stage `before`."""
        idx = self.df.stage_index(ref)
        if idx is not None and idx < before:
            return idx
        return None

    async def stage_image(self, idx: int) -> str:
        return await asyncio.shield(self.results[idx])

    async def image(self, ref: str, *, always_pull: bool) -> str:
        """The ID of an image named by FROM or COPY --from, pulled when it is not here (or
        always, with `pull`), as dockerd's builder does; the pull's progress goes out."""
        images = self.svc.images
        if not always_pull:
            with contextlib.suppress(errdefs.NotFound):
                return images.resolve(ref).id
        if self.svc.puller is None:
            raise BuildError(f"No such image: {ref}")
        try:
            async for msg in self.svc.puller.pull_for_build(ref, self.opts.registry_config):
                await self.emit(progress.PullProgress(msg))
            return images.resolve(ref).id
        except errdefs.DockyardError as err:
            raise BuildError(str(err)) from None

    # ---- images ------------------------------------------------------------------------------

    async def commit(self, s: StageState, created_by: str, layer_dir: Path | None) -> str:
        """Commits the stage's config (and `layer_dir`, an upper dir, as a layer); `s` moves
        onto the new image."""
        cfg = step_config(s.cfg, now_rfc3339(), created_by, layer=layer_dir is not None)
        img = await self.svc.images.create_image(cfg, parent=s.image_id, layer_dir=layer_dir)
        self.made.append(img.id)
        s.image_id = img.id
        s.cfg = json.loads(img.config_bytes)
        return str(img.id)

    async def base_image(self, s: StageState) -> None:
        """FROM scratch needs an (empty) image before a container or snapshot can use it."""
        img = await self.svc.images.create_image(s.cfg, parent="")
        self.made.append(img.id)
        s.image_id = img.id

    def record(self, key: str, s: StageState, *, created_by: str, layers_before: int) -> None:
        """Records the stage's current image as the cache entry of step `key`."""
        img = self.svc.images.get(s.image_id)
        if img is None:  # just committed: only this build's clean-up deletes, at its end
            raise errdefs.Internal(f"the image {s.image_id} of a build step is gone")
        self.svc.cache.record(key, img, created_by=created_by, made_layer=s.layers > layers_before)


# What an instruction does: the session, the stage, the instruction (variables not yet expanded).
Executor = Callable[[BuildSession, StageState, Instruction], Awaitable[None]]
