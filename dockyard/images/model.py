"""The image as the rest of the daemon sees it: an immutable `Image` record and the
image errors. Owns no state; `store.py` builds these from its rows."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dockyard.errdefs import Conflict, NotFound
from dockyard.images.layers import chain_ids
from dockyard.timefmt import parse_rfc3339

__all__ = [
    "DOCKER_VERSION",
    "Image",
    "ImageDeleteConflict",
    "ImageNotFound",
    "dumps",
    "parse_created",
    "short",
]

DOCKER_VERSION = "27.5.0"  # what images made here record as `docker_version`


class ImageNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"No such image: {ref}")
        self.ref = ref


class ImageDeleteConflict(Conflict):
    def __init__(self, message: str, *, used: bool) -> None:
        super().__init__(message)
        self.used = used


@dataclass(frozen=True)
class Image:
    id: str
    config: dict[str, Any]
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...] = ()
    parent: str = ""
    size: int = 0
    last_tag_time: float | None = None
    config_bytes: bytes = field(default=b"", repr=False, compare=False)

    @property
    def short_id(self) -> str:
        return short(self.id)

    @property
    def diff_ids(self) -> list[str]:
        return list((self.config.get("rootfs") or {}).get("diff_ids") or [])

    @property
    def chain_ids(self) -> list[str]:
        return chain_ids(self.diff_ids)

    @property
    def created(self) -> float:
        return parse_created(self.config.get("created"))

    @property
    def labels(self) -> dict[str, str]:
        return dict((self.config.get("config") or {}).get("Labels") or {})

    def __repr__(self) -> str:
        return f"<Image {self.short_id} {list(self.repo_tags)}>"


def parse_created(value: Any) -> float:
    if not value:
        return 0.0
    try:
        return parse_rfc3339(str(value))
    except ValueError:
        return 0.0


def short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def dumps(doc: dict[str, Any]) -> bytes:
    """An image config as it is hashed: compact JSON."""
    return json.dumps(doc, separators=(",", ":")).encode()
