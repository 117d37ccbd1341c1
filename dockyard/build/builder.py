"""The builder: runs a parsed Dockerfile's stages as a graph and commits each step as an image.

Owns one build from start to end: the platform check, parsing the Dockerfile, a
`BuildSession` and its `StageGraph`, tagging the result, the closing progress events, a
quiet build's held output (sent only when the build fails), and the clean-up. It must not
know HTTP: progress goes out as typed events (`progress.py`) that the API layer renders.

Where the rest lives:

- `stages.py`: which stages run, their numbering, concurrency, a stage's base, clean-up;
- `steps.py` → `metadata.py` (ENV, LABEL, CMD, ... commit a config with an `empty_layer`
  history entry, without a container), `runstep.py` (RUN in a real container from the
  current image, on the default bridge unless `networkmode` says otherwise; its upper dir
  is committed as a layer; the container is removed, also on failure, unless rm=false and
  forcerm=false) and `filesteps.py` (COPY/ADD/WORKDIR write into a mounted snapshot of the
  current image and commit its upper dir);
- `cachelookup.py`: the build cache and `--cache-from`; `imageconfig.py`: the config a
  stage builds up; `runner.py`: the RUN container runner; `ports.py`: what the builder
  needs of the image store, the distribution service and the runner.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from dockyard.build import context as ctxmod
from dockyard.build import progress
from dockyard.build.cache import BuildCache
from dockyard.build.dockerfile import parse
from dockyard.build.model import BuildError, BuildOptions
from dockyard.build.ports import BaseImagePuller, BuildImages, StepRunner
from dockyard.build.session import BuildSession, Services
from dockyard.build.stages import StageGraph
from dockyard.images import platforms

__all__ = ["BuildError", "BuildOptions", "Builder"]


class Builder:
    """Flow::

        builder = Builder(images, cache, runner, mounts_dir, puller)
        image_id = await builder.build(Context(ctx_dir, "Dockerfile"), BuildOptions(tags=["app"]), emit)
    """

    def __init__(
        self,
        images: BuildImages,
        cache: BuildCache,
        runner: StepRunner,
        mounts: Path,
        puller: BaseImagePuller | None = None,
    ) -> None:
        mounts.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._svc = Services(images, cache, runner, puller, mounts)
        self._builds = 0

    def statistics(self) -> dict[str, int]:
        return {"builds_running": self._builds}

    async def build(self, ctx: ctxmod.Context, opts: BuildOptions, emit: progress.Emit) -> str:
        if opts.platform and platforms.parse(opts.platform).os != "linux":
            raise BuildError(f'"{opts.platform}" is not a supported platform')
        images = self._svc.images
        targets = [images.parse_target(t, None) for t in opts.tags]  # bad tags fail first
        df = parse(await asyncio.to_thread(ctx.dockerfile_bytes))
        session = BuildSession(self._svc, ctx, df, opts, emit)
        graph = StageGraph(session)
        self._builds += 1
        try:
            image_id = await graph.execute()
        except BaseException:
            # dockerd with q=1: the output it held back is sent when the build fails, before
            # the error (so `docker build -q` shows it and exits with the RUN's code)
            with contextlib.suppress(Exception):
                await session.flush_quiet()
            raise
        finally:
            self._builds -= 1
            await graph.cleanup()
        for t in targets:
            await images.tag(image_id, str(t), None)
        await emit(progress.ImageBuilt(image_id))
        if not opts.quiet:
            await emit(progress.SuccessfullyBuilt(image_id))
            for t in targets:
                await emit(progress.SuccessfullyTagged(t.familiar()))
        else:
            await emit(progress.QuietImageID(image_id))
        return image_id
