"""Typed progress events of pull, push and load: what happened, not how Docker prints it.

The API layer (`api/progress.py`) renders them as Docker's JSON progress lines; the
services only yield these. Each is a frozen dataclass."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "Event",
    "ImageLoaded",
    "LayerEvent",
    "LayerPhase",
    "PullDone",
    "PullStarted",
    "PushDone",
    "PushStarted",
    "RepoDigest",
]


class LayerPhase(enum.Enum):
    # pull
    ALREADY_EXISTS = "Already exists"
    PULLING = "Pulling fs layer"
    DOWNLOADING = "Downloading"
    VERIFYING = "Verifying Checksum"
    DOWNLOADED = "Download complete"
    EXTRACTING = "Extracting"
    PULLED = "Pull complete"
    # push
    PREPARING = "Preparing"
    PUSHING = "Pushing"
    PUSHED = "Pushed"
    EXISTS_REMOTE = "Layer already exists"
    MOUNTED = "Mounted from"
    # load
    LOADING = "Loading layer"

    @property
    def is_push(self) -> bool:
        return self in _PUSH


_PUSH = {
    LayerPhase.PREPARING,
    LayerPhase.PUSHING,
    LayerPhase.PUSHED,
    LayerPhase.EXISTS_REMOTE,
    LayerPhase.MOUNTED,
}


@dataclass(frozen=True)
class LayerEvent:
    """A layer (`digest`: compressed digest for pull, diff ID for push and load) reached
    `phase`; `current`/`total` are bytes for the phases that move; `source` is the
    repository a mount came from."""

    phase: LayerPhase
    digest: str
    current: int | None = None
    total: int | None = None
    source: str = ""


@dataclass(frozen=True)
class PullStarted:
    path: str  # the repository path on the registry ("library/busybox")
    target: str  # the tag or digest asked for


@dataclass(frozen=True)
class RepoDigest:
    digest: str  # the manifest digest the image is known by


@dataclass(frozen=True)
class PullDone:
    reference: str  # as the user wrote it (familiar form)
    up_to_date: bool


@dataclass(frozen=True)
class PushStarted:
    repository: str  # "127.0.0.1:5000/bb"


@dataclass(frozen=True)
class PushDone:
    tag: str
    digest: str
    size: int  # of the manifest


@dataclass(frozen=True)
class ImageLoaded:
    """An image of a `docker load` is in: `reference` tagged (replacing image `replaced`),
    or, without a reference, known by `image_id` alone."""

    image_id: str
    reference: str = ""
    replaced: str | None = None


Event = LayerEvent | PullStarted | RepoDigest | PullDone | PushStarted | PushDone | ImageLoaded
