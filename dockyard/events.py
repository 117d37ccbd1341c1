"""The event bus: a bounded history for `since` and bounded live subscribers for `/events`.

Bottom layer (like errdefs): every service publishes here, `api/routes/system.py` reads it.
Each event is encoded once, at publish; the history and every subscriber's queue hold that
line, and both are bounded in events and in bytes (a container's events carry its labels). A
subscriber that falls behind by more than `QUEUE_EVENTS` events or `QUEUE_BYTES` bytes (a
client that stopped reading: its socket and the server's write buffer are full) is dropped:
it leaves the bus, its queue is ended, and its owner's `on_drop` runs (the route aborts the
connection). The daemon's memory never holds more than those bounds for one client.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

HISTORY = 1024  # events kept for `since`, and at most HISTORY_BYTES of them (labels can be large)
HISTORY_BYTES = 8 << 20
QUEUE_EVENTS = 1024
QUEUE_BYTES = 4 << 20


class Subscription:
    """One `/events` client's queue. `get` returns (event, encoded line), or None once dropped."""

    def __init__(self, on_drop: Callable[[], None] | None) -> None:
        self._queue: asyncio.Queue[tuple[dict[str, Any], bytes] | None] = asyncio.Queue()
        self._bytes = 0
        self._on_drop = on_drop
        self.dropped = False

    def __repr__(self) -> str:
        return f"<Subscription {self._queue.qsize()} events {self._bytes} bytes{' dropped' if self.dropped else ''}>"

    def statistics(self) -> dict[str, int]:
        return {"events": self._queue.qsize(), "bytes": self._bytes}

    def offer(self, ev: dict[str, Any], line: bytes) -> bool:
        """Queue an event; False (and the subscription ended) when it is too far behind."""
        if self._queue.qsize() >= QUEUE_EVENTS or self._bytes + len(line) > QUEUE_BYTES:
            self._drop()
            return False
        self._bytes += len(line)
        self._queue.put_nowait((ev, line))
        return True

    def _drop(self) -> None:
        self.dropped = True
        while not self._queue.empty():  # free what it held at once
            self._queue.get_nowait()
        self._bytes = 0
        self._queue.put_nowait(None)
        if self._on_drop is not None:
            self._on_drop()

    async def get(self) -> tuple[dict[str, Any], bytes] | None:
        item = await self._queue.get()
        if item is not None:
            self._bytes -= len(item[1])
        return item


class EventBus:
    def __init__(self) -> None:
        self._history: collections.deque[tuple[dict[str, Any], bytes]] = collections.deque()
        self._history_bytes = 0
        self._subscribers: set[Subscription] = set()

    def statistics(self) -> dict[str, int]:
        return {"history": len(self._history), "history_bytes": self._history_bytes,
                "subscribers": len(self._subscribers)}  # fmt: skip

    def publish(self, type: str, action: str, actor_id: str, attributes: dict[str, str] | None = None) -> None:
        now = time.time_ns()
        ev: dict[str, Any] = {
            "Type": type,
            "Action": action,
            "Actor": {"ID": actor_id, "Attributes": dict(attributes or {})},
            "scope": "local",
            "time": now // 1_000_000_000,
            "timeNano": now,
        }
        # Older clients read these top-level fields of container/image events.
        if type == "container":
            ev["status"] = action
            ev["id"] = actor_id
            ev["from"] = (attributes or {}).get("image", "")
        elif type == "image":
            ev["status"] = action
            ev["id"] = actor_id
        line = json.dumps(ev).encode() + b"\n"
        self._history.append((ev, line))
        self._history_bytes += len(line)
        while len(self._history) > HISTORY or (self._history_bytes > HISTORY_BYTES and len(self._history) > 1):
            self._history_bytes -= len(self._history.popleft()[1])
        for sub in list(self._subscribers):
            if not sub.offer(ev, line):
                self._subscribers.discard(sub)
                log.warning("events subscriber dropped: it fell %d events or %d bytes behind", QUEUE_EVENTS, QUEUE_BYTES)

    def history(self) -> list[tuple[dict[str, Any], bytes]]:
        """The kept events, oldest first, each with its encoded line."""
        return list(self._history)

    def subscribe(self, on_drop: Callable[[], None] | None = None) -> Subscription:
        sub = Subscription(on_drop)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)
