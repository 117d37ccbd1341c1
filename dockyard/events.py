"""The event bus: a bounded history for `since` and live subscribers for `/events`.

Bottom layer (like errdefs): every service publishes here, `api/routes/system.py` reads it.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

HISTORY = 1024


class EventBus:
    def __init__(self) -> None:
        self._history: collections.deque[dict[str, Any]] = collections.deque(maxlen=HISTORY)
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()

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
        self._history.append(ev)
        for q in self._subscribers:
            q.put_nowait(ev)

    def history(self) -> list[dict[str, Any]]:
        return list(self._history)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(q)
