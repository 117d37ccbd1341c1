"""Restart policies and the supervisor that restarts exited containers with Docker's back-off.

The policy decision is pure (`Policy.should_restart`, `Policy.should_start_on_boot`);
`Supervisor` owns the per-container back-off and the pending delayed starts, and must
not touch records: the container service calls it at each start (`started`) and exit
(`schedule`), and hands it the coroutine that does the start. Its clock and sleep are
injectable, so the back-off is tested without waiting.

Docker's back-off (moby's restartmanager): the first restart waits 100 ms, each next
one twice as long, at most 1 minute; an exit after the container ran at least 10 s
starts the sequence again. A user's `start` forgets the sequence, and a user's `stop`
or `kill` cancels the policy until that next `start`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from dockyard.errdefs import InvalidArgument

log = logging.getLogger(__name__)

NO, ALWAYS, UNLESS_STOPPED, ON_FAILURE = "no", "always", "unless-stopped", "on-failure"
INITIAL_DELAY = 0.1
MAX_DELAY = 60.0
RESET_AFTER = 10.0  # seconds of running that reset the back-off


@dataclass(frozen=True)
class Policy:
    name: str = NO
    max_retries: int = 0  # on-failure only; 0 means no limit

    @classmethod
    def of(cls, host_config: dict[str, Any]) -> Policy:
        rp = host_config.get("RestartPolicy") or {}
        return cls(str(rp.get("Name") or NO), int(rp.get("MaximumRetryCount") or 0))

    def should_restart(self, exit_code: int, manually_stopped: bool, restart_count: int, cancelled: bool) -> bool:
        """At an exit while the daemon runs. `cancelled`: a user's stop, or a kill with
        SIGKILL or the stop signal, ended the policy until the next start (moby's
        ExitOnNext); any other kill still counts as a manual stop for unless-stopped."""
        if cancelled:
            return False
        return self._wants(exit_code, manually_stopped, restart_count)

    def should_start_on_boot(self, exit_code: int, manually_stopped: bool, restart_count: int) -> bool:
        """For a stopped container when the daemon starts: moby asks a fresh restart
        manager, so `always` comes back even after a user's stop; `unless-stopped` not."""
        return self._wants(exit_code, manually_stopped, restart_count)

    def _wants(self, exit_code: int, manually_stopped: bool, restart_count: int) -> bool:
        if self.name == ALWAYS:
            return True
        if self.name == UNLESS_STOPPED:
            return not manually_stopped
        if self.name == ON_FAILURE:
            return exit_code != 0 and (self.max_retries == 0 or restart_count < self.max_retries)
        return False


def validate(rp: dict[str, Any] | None, auto_remove: bool = False) -> None:
    """Docker's checks of a RestartPolicy (moby's container.ValidateRestartPolicy)."""
    rp = rp or {}
    name = str(rp.get("Name") or "")
    count = int(rp.get("MaximumRetryCount") or 0)
    if name not in ("", NO, ALWAYS, UNLESS_STOPPED, ON_FAILURE):
        raise InvalidArgument(
            f"invalid restart policy: unknown policy '{name}'; "
            "use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
        )
    if count and name != ON_FAILURE:
        raise InvalidArgument("invalid restart policy: maximum retry count can only be used with 'on-failure'")
    if count < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    if auto_remove and name not in ("", NO):
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")


@dataclass
class Backoff:
    """One container's delay sequence: 0.1, 0.2, 0.4 ... 60 s; reset by a 10 s run."""

    delay: float = 0.0

    def next(self, ran_for: float) -> float:
        if ran_for >= RESET_AFTER:
            self.delay = 0.0
        self.delay = INITIAL_DELAY if self.delay == 0 else min(self.delay * 2, MAX_DELAY)
        return self.delay


@dataclass
class _Entry:
    backoff: Backoff = field(default_factory=Backoff)
    started_at: float | None = None
    pending: asyncio.Task[None] | None = None


class Supervisor:
    """Pending restarts, one per container, each a task that sleeps its back-off and then
    calls `start(cid)`.

    Flow: the service calls `started(cid)` whenever the container's process starts (a
    user's start with `reset=True`), and at an exit its policy asks for, `schedule(cid)`,
    which returns the delay. `cancel(cid)` drops a pending restart (stop, kill, rm);
    `close()` drops them all at daemon shutdown.
    """

    def __init__(
        self,
        start: Callable[[str], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._start = start
        self._clock = clock
        self._sleep = sleep
        self._entries: dict[str, _Entry] = {}

    def __repr__(self) -> str:
        return f"<Supervisor {len(self._entries)} containers, {len(self.pending_ids())} pending>"

    def statistics(self) -> dict[str, int]:
        return {"containers": len(self._entries), "pending": len(self.pending_ids())}

    def pending_ids(self) -> list[str]:
        return [cid for cid, e in self._entries.items() if e.pending is not None and not e.pending.done()]

    def started(self, cid: str, *, reset: bool = False) -> None:
        entry = self._entries.setdefault(cid, _Entry())
        if reset:
            entry.backoff = Backoff()
        entry.started_at = self._clock()

    def ran_for(self, cid: str) -> float:
        entry = self._entries.get(cid)
        if entry is None or entry.started_at is None:
            return 0.0  # started by an earlier daemon: no run time known, keep backing off
        return self._clock() - entry.started_at

    def schedule(self, cid: str) -> float:
        """Start the container again after its next back-off delay; returns the delay."""
        entry = self._entries.setdefault(cid, _Entry())
        delay = entry.backoff.next(self.ran_for(cid))
        self.cancel(cid)
        entry.pending = asyncio.get_running_loop().create_task(self._later(cid, delay))
        return delay

    async def _later(self, cid: str, delay: float) -> None:
        await self._sleep(delay)
        entry = self._entries.get(cid)
        if entry is not None:
            entry.pending = None  # the start may schedule the next one itself
        try:
            await self._start(cid)
        except Exception:  # the task's root: the start reports its own failure on the record
            log.exception("restart of %s failed", cid[:12])

    def cancel(self, cid: str) -> bool:
        """Drop a pending restart; True when there was one."""
        entry = self._entries.get(cid)
        if entry is None or entry.pending is None or entry.pending.done():
            return False
        entry.pending.cancel()
        entry.pending = None
        return True

    def forget(self, cid: str) -> None:
        self.cancel(cid)
        self._entries.pop(cid, None)

    async def close(self) -> None:
        tasks = [e.pending for e in self._entries.values() if e.pending is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._entries.clear()
