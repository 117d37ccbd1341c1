"""What the builder needs of the services around it, as Protocols (the build's seams).

Owns nothing but these declarations. The daemon's wiring passes the real services (the
image service, the distribution service, a `ContainerStepRunner` over the container
service) through the constructors of `BuildService` and `Builder`; a test may pass
anything with the same methods. Each Protocol lists only the calls the builder makes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from dockyard._sys.mount import Mount
from dockyard.build.model import RunSpec
from dockyard.idmap import IdentityMapping
from dockyard.images.reference import Reference
from dockyard.images.service import Image

__all__ = ["BaseImagePuller", "BuildImages", "OutputSink", "StepRunner"]

# Receives a RUN container's output: (text, is it stderr).
OutputSink = Callable[[str, bool], Awaitable[None]]


class BuildImages(Protocol):
    """The image store, as the builder uses it. Flow of one build::

    base = images.resolve("busybox")                     # FROM (NotFound: pull it)
    key = "build-..."; mount = images.prepare_rootfs(key, base.id)   # COPY/ADD/WORKDIR
    ... write into the mounted rootfs ...
    img = await images.create_image(cfg, parent=base.id, layer_dir=images.upper_dir(key))
    images.remove_rootfs(key)
    await images.tag(img.id, "app:1", None)
    await images.delete(stage_tip.id, force=False, noprune=True)   # clean-up
    """

    @property
    def id_mapping(self) -> IdentityMapping | None: ...  # `--userns-remap`: the ids files get

    def parse_target(self, repo: str, tag: str | None) -> Reference: ...
    def resolve(self, ref: str) -> Image: ...
    def get(self, image_id: str) -> Image | None: ...
    def parent_ids(self) -> set[str]: ...
    async def create_image(
        self, config: dict[str, Any], *, parent: str = ..., layer_dir: Path | None = ...
    ) -> Image: ...
    async def tag(self, source: str, repo: str, tag: str | None) -> Image: ...
    async def delete(self, ref: str, *, force: bool = ..., noprune: bool = ...) -> list[dict[str, str]]: ...
    def prepare_rootfs(self, key: str, image_id: str) -> Mount: ...
    def upper_dir(self, key: str) -> Path: ...
    def remove_rootfs(self, key: str) -> None: ...


class BaseImagePuller(Protocol):
    """The distribution service, as the builder uses it: pull a base image that is not here
    (or always, with `pull=1`), with the credentials of the request's `X-Registry-Config`."""

    def pull_for_build(self, image: str, registry_config: str | None) -> AsyncIterator[Mapping[str, Any]]: ...


class StepRunner(Protocol):
    """Runs RUN steps' containers. Flow of one step::

        async with runner.container(spec, remove=True) as cid:   # created; removed on exit
            code = await runner.run(cid, sink)                    # started, output to sink, exited
            ... commit images.upper_dir(cid) when code == 0 ...

    Leaving the block removes the container when `remove` says so, also when the step
    failed or was cancelled; a container of a daemon that died mid-step is removed by
    `remove_interrupted` at the next start."""

    def container(self, spec: RunSpec, *, remove: bool) -> contextlib.AbstractAsyncContextManager[str]: ...
    async def run(self, container_id: str, output: OutputSink) -> int: ...
    async def remove_interrupted(self) -> None: ...
