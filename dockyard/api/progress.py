"""Docker's JSON progress messages, rendered from the typed events of pull, push and load
(`images/progress.py`). The one place that knows their wire shapes: key order, the
12-hex layer IDs, the `progressDetail` that the CLI draws bars from.

    {"status": "Pulling from library/busybox", "id": "latest"}
    {"status": "Pulling fs layer", "id": "<12 hex>", "progressDetail": {}}
    {"status": "Downloading", "id": "<12 hex>", "progressDetail": {"current": n, "total": t}}
    {"status": "Preparing", "progressDetail": {}, "id": "<12 hex>"}      (push: id last)
    {"status": "Loading layer", "id": "<12 hex>", "progressDetail": {"current": n, "total": n}}
    {"status": "Digest: sha256:..."}  {"status": "Status: Downloaded newer image for bb:1"}
    {"status": "1: digest: sha256:... size: 527"}  {"progressDetail": {}, "aux": {...}}
    {"stream": "Loaded image: bb:1\\n"}
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from dockyard.images.progress import (
    Event,
    ImageLoaded,
    LayerEvent,
    LayerPhase,
    PullDone,
    PullStarted,
    PushDone,
    PushStarted,
    RepoDigest,
)

__all__ = ["messages", "render"]

Message = dict[str, Any]


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def _layer(ev: LayerEvent) -> Message:
    status = f"{ev.phase.value} {ev.source}" if ev.phase is LayerPhase.MOUNTED else ev.phase.value
    detail: dict[str, int] = {}
    if ev.current is not None:
        detail = {"current": ev.current, "total": ev.total if ev.total is not None else ev.current}
    if ev.phase.is_push:
        return {"status": status, "progressDetail": detail, "id": _short(ev.digest)}
    return {"status": status, "id": _short(ev.digest), "progressDetail": detail}


def render(ev: Event) -> list[Message]:
    """The JSON messages (usually one) of an event."""
    if isinstance(ev, LayerEvent):
        return [_layer(ev)]
    if isinstance(ev, PullStarted):
        out: Message = {"status": f"Pulling from {ev.path}"}
        if ev.target:
            out["id"] = ev.target
        return [out]
    if isinstance(ev, RepoDigest):
        return [{"status": f"Digest: {ev.digest}"}]
    if isinstance(ev, PullDone):
        how = "Image is up to date for" if ev.up_to_date else "Downloaded newer image for"
        return [{"status": f"Status: {how} {ev.reference}"}]
    if isinstance(ev, PushStarted):
        return [{"status": f"The push refers to repository [{ev.repository}]"}]
    if isinstance(ev, PushDone):
        return [
            {"status": f"{ev.tag}: digest: {ev.digest} size: {ev.size}"},
            {"progressDetail": {}, "aux": {"Tag": ev.tag, "Digest": ev.digest, "Size": ev.size}},
        ]
    if isinstance(ev, ImageLoaded):
        if not ev.reference:
            return [{"stream": f"Loaded image ID: {ev.image_id}\n"}]
        lines = []
        if ev.replaced is not None:
            lines.append(
                {
                    "stream": f"The image {ev.reference} already exists, renaming the old one "
                    f"with ID {ev.replaced} to empty string\n"
                }
            )
        lines.append({"stream": f"Loaded image: {ev.reference}\n"})
        return lines
    raise TypeError(f"no rendering for {ev!r}")


async def messages(events: AsyncIterator[Event]) -> AsyncGenerator[Message, None]:
    """A stream of events as a stream of Docker messages (closing it closes `events`)."""
    try:
        async for ev in events:
            for msg in render(ev):
                yield msg
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
