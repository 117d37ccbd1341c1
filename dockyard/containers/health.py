"""Healthchecks: the `Config.Healthcheck` rules, `State.Health` bookkeeping, and the monitor
that probes each running container that has one.

The pure part (merge with the image's, validation, the probe's argv, how a result moves
the status) follows moby's daemon/health.go. `HealthMonitor` owns one task per running
container with a healthcheck; it runs each probe through `ExecService.probe` (an exec
under its own conmon, killed with its whole process tree at the timeout) and records
the result on the container under the container's lock. It must not start, stop or
restart containers: the container service tells it when one starts or is unpaused
(`watch`) and when it ends or is paused (`unwatch`); as in Docker, only running, unpaused
containers are probed, and an adopted one starts over at "starting".

    State.Health = {"Status": "starting" | "healthy" | "unhealthy",
                    "FailingStreak": n, "Log": [last 5 {Start, End, ExitCode, Output}]}
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dockyard.errdefs import DockyardError, InvalidArgument
from dockyard.timefmt import now_rfc3339, parse_rfc3339

log = logging.getLogger(__name__)

STARTING, HEALTHY, UNHEALTHY, NONE = "starting", "healthy", "unhealthy", "none"
SECOND = 1_000_000_000
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_START_INTERVAL = 5 * SECOND
DEFAULT_RETRIES = 3
MIN_DURATION = 1_000_000  # 1ms, moby's container.MinimumDuration
MAX_LOG_ENTRIES = 5
MAX_OUTPUT = 4096  # bytes of a probe's output kept, as Docker's limitedBuffer


def validate(hc: dict[str, Any] | None) -> None:
    """The request's Healthcheck, as moby's verifyContainerSettings checks it."""
    if not hc:
        return
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        v = int(hc.get(key) or 0)
        if v != 0 and v < MIN_DURATION:
            raise InvalidArgument(f"{key} in Healthcheck cannot be less than 1ms")
    if int(hc.get("Retries") or 0) < 0:
        raise InvalidArgument("Retries in Healthcheck cannot be negative")
    test = hc.get("Test")
    if test is not None and not isinstance(test, list):
        raise InvalidArgument("Healthcheck Test must be a list of strings")


def merge_config(user: dict[str, Any] | None, image: dict[str, Any] | None) -> dict[str, Any] | None:
    """The container's Healthcheck: the user's fields over the image's (moby's merge)."""
    if not user:
        return dict(image) if image else None
    out = dict(user)
    if image:
        if not out.get("Test"):
            out["Test"] = image.get("Test")
        for key in ("Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"):
            if not out.get(key) and image.get(key):
                out[key] = image[key]
    return out


@dataclass(frozen=True)
class Settings:
    """A healthcheck with Docker's defaults filled in; times in seconds."""

    argv: tuple[str, ...]
    interval: float
    timeout: float
    start_period: float
    start_interval: float
    retries: int

    @classmethod
    def of(cls, config: dict[str, Any]) -> Settings | None:
        """None when the container has no (or a disabled) healthcheck."""
        hc = config.get("Healthcheck") or {}
        test = list(hc.get("Test") or [])
        if not test:
            return None
        if test[0] == "CMD" and len(test) > 1:
            argv = tuple(test[1:])
        elif test[0] == "CMD-SHELL" and len(test) > 1:
            argv = (*(config.get("Shell") or ["/bin/sh", "-c"]), " ".join(test[1:]))
        else:
            return None  # NONE, or a form Docker does not run either

        def ns(key: str, default: int) -> float:
            return (int(hc.get(key) or 0) or default) / SECOND

        return cls(
            argv=argv,
            interval=ns("Interval", DEFAULT_INTERVAL),
            timeout=ns("Timeout", DEFAULT_TIMEOUT),
            start_period=ns("StartPeriod", 0),
            start_interval=ns("StartInterval", DEFAULT_START_INTERVAL),
            retries=int(hc.get("Retries") or 0) or DEFAULT_RETRIES,
        )

    def next_interval(self, since_start: float, status: str) -> float:
        """StartInterval while starting within the start period, else Interval."""
        if since_start < self.start_period and status == STARTING:
            return self.start_interval
        return self.interval


@dataclass(frozen=True)
class Result:
    start: str
    end: str
    exit_code: int
    output: str

    def entry(self) -> dict[str, Any]:
        return {"Start": self.start, "End": self.end, "ExitCode": self.exit_code, "Output": self.output}


def fresh() -> dict[str, Any]:
    return {"Status": STARTING, "FailingStreak": 0, "Log": []}


def on_start(state: dict[str, Any], active: bool) -> None:
    """At each start: starting again (the log is kept), or no Health without a check."""
    if not active:
        state.pop("Health", None)
        return
    h = state.get("Health") or fresh()
    h.update(Status=STARTING, FailingStreak=0)
    state["Health"] = h


def apply_result(state: dict[str, Any], settings: Settings, result: Result) -> str:
    """Fold a probe's result into State.Health; returns the new status. Failures while
    starting within the start period do not count (moby's handleProbeResult)."""
    h = state.get("Health") or fresh()
    h["Log"] = [*(h.get("Log") or []), result.entry()][-MAX_LOG_ENTRIES:]
    if result.exit_code == 0:
        h.update(FailingStreak=0, Status=HEALTHY)
    else:
        counts = True
        if h["Status"] == STARTING:
            since_start = parse_rfc3339(result.start) - parse_rfc3339(state["StartedAt"])
            counts = since_start >= settings.start_period
        if counts:
            h["FailingStreak"] = int(h.get("FailingStreak") or 0) + 1
            if h["FailingStreak"] >= settings.retries:
                h["Status"] = UNHEALTHY
    state["Health"] = h
    return str(h["Status"])


def status_of(record: dict[str, Any]) -> str:
    """For `ps --filter health=`: the status, or "none" without a healthcheck."""
    h = record["State"].get("Health")
    return str(h["Status"]) if h else NONE


def ps_suffix(record: dict[str, Any]) -> str:
    """What `docker ps` adds after "Up ...": " (healthy)", " (health: starting)"."""
    h = record["State"].get("Health")
    if not h:
        return ""
    return " (health: starting)" if h["Status"] == STARTING else f" ({h['Status']})"


def timeout_text(seconds: float) -> str:
    """Go's Duration.String() for the whole or millisecond timeouts users give."""
    ms = round(seconds * 1000)
    if ms < 1000:
        return f"{ms}ms"
    s, ms = divmod(ms, 1000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    sec = f"{s}.{ms:03d}".rstrip("0").rstrip(".") + "s"
    return (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + sec


# probe(cid, argv, timeout) -> (exit code, output, timed out)
Probe = Callable[[str, list[str], float], Awaitable[tuple[int, bytes, bool]]]
# record(cid, started_at, settings, result): fold a result into the record, if still that
# run of the container; returns the health status after it
Record = Callable[[str, str, Settings, Result], Awaitable[str]]


class HealthMonitor:
    """One probing task per running container with a healthcheck.

    Flow: `watch(cid, config, started_at)` at each start (after the daemon's reconcile:
    `enable()` first); the task sleeps the interval, probes, hands the result to
    `record`, and again; `unwatch(cid)` at the exit; `close()` at shutdown.
    """

    def __init__(self, probe: Probe, record: Record, clock: Callable[[], float] = time.time) -> None:
        self._probe = probe
        self._record = record
        self._clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._enabled = False

    def __repr__(self) -> str:
        return f"<HealthMonitor {len(self._tasks)} watched{'' if self._enabled else ' disabled'}>"

    def statistics(self) -> dict[str, int]:
        return {"watched": len(self._tasks)}

    def enable(self) -> None:
        self._enabled = True

    def watch(self, cid: str, config: dict[str, Any], state: dict[str, Any]) -> None:
        settings = Settings.of(config)
        self.unwatch(cid)
        if settings is None or not self._enabled:
            return
        started_at = str(state["StartedAt"])
        self._tasks[cid] = asyncio.get_running_loop().create_task(self._run(cid, settings, started_at))

    def unwatch(self, cid: str) -> None:
        task = self._tasks.pop(cid, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, cid: str, settings: Settings, started_at: str) -> None:
        status = STARTING
        t0 = parse_rfc3339(started_at)
        while True:
            await asyncio.sleep(settings.next_interval(self._clock() - t0, status))
            start = now_rfc3339()
            try:
                code, output, timed_out = await self._probe(cid, list(settings.argv), settings.timeout)
            except DockyardError as err:  # not running any more, or the runtime refused
                code, output, timed_out = -1, str(err).encode(), False
            text = output[:MAX_OUTPUT].decode(errors="replace") + ("..." if len(output) > MAX_OUTPUT else "")
            if timed_out:
                code = -1
                limit = timeout_text(settings.timeout)
                text = f"Health check exceeded timeout ({limit})" + (f": {text}" if text else "")
            result = Result(start, now_rfc3339(), code, text)
            try:
                status = await self._record(cid, started_at, settings, result)
            except DockyardError as err:
                log.debug("health of %s not recorded: %s", cid[:12], err)
