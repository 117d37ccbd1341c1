"""What a build reports while it runs: typed progress events, in the order they happen.

The builder emits these through an `Emit` callback (awaited, so a slow client slows the
build instead of piling up output); the API layer alone renders them as Docker's
JSON-stream messages (`api/buildprogress.py`). Failures are not events: they are raised,
and the API reports them in the stream once it has started.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BuildEvent", "CacheHit", "ContainerRemoved", "Emit", "ImageBuilt", "Output", "PullProgress",
    "QuietImageID", "RunStarted", "StepImage", "StepStarted", "SuccessfullyBuilt", "SuccessfullyTagged",
    "TriggersRunning", "UnusedBuildArgs",
]  # fmt: skip


@dataclass(frozen=True)
class StepStarted:
    """Step `number` of `total` starts; `instruction` is the Dockerfile line as written."""

    number: int
    total: int
    instruction: str


@dataclass(frozen=True)
class TriggersRunning:
    """The base image's ONBUILD triggers (`count` of them) run before the stage's steps."""

    count: int


@dataclass(frozen=True)
class CacheHit:
    """The step's image came from the build cache (or a cache-from source)."""


@dataclass(frozen=True)
class StepImage:
    """The step (or a stage's base) ended on this image."""

    image_id: str


@dataclass(frozen=True)
class RunStarted:
    """A RUN step's container was created and is about to start."""

    container_id: str


@dataclass(frozen=True)
class Output:
    """A piece of a RUN container's output, decoded as UTF-8 (a character split across
    chunks is held back until it is whole)."""

    text: str
    stderr: bool = False


@dataclass(frozen=True)
class ContainerRemoved:
    """A RUN step's container was removed after the step."""

    container_id: str


@dataclass(frozen=True)
class PullProgress:
    """A progress message of the pull of a base image, as the distribution service gives it."""

    message: Mapping[str, Any]


@dataclass(frozen=True)
class UnusedBuildArgs:
    """`--build-arg`s that no ARG consumed, sorted."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class ImageBuilt:
    """The build's result (Docker's `aux` record)."""

    image_id: str


@dataclass(frozen=True)
class SuccessfullyBuilt:
    image_id: str


@dataclass(frozen=True)
class SuccessfullyTagged:
    """`name` is the tag in its familiar form (`app:1`, not `docker.io/library/app:1`)."""

    name: str


@dataclass(frozen=True)
class QuietImageID:
    """A quiet build's (`-q`) only line of output: the image ID."""

    image_id: str


BuildEvent = (
    StepStarted | TriggersRunning | CacheHit | StepImage | RunStarted | Output | ContainerRemoved | PullProgress
    | UnusedBuildArgs | ImageBuilt | SuccessfullyBuilt | SuccessfullyTagged | QuietImageID
)  # fmt: skip
Emit = Callable[[BuildEvent], Awaitable[None]]
