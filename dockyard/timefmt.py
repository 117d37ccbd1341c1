"""Docker's time formats on the wire: RFC 3339 with nanoseconds, and time query parameters.

Bottom layer: the API parses parameters with it, containers parse their logs with it.
"""

from __future__ import annotations

import functools
import re
import time
from datetime import datetime

ZERO_TIME = "0001-01-01T00:00:00Z"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)$")
_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def rfc3339(ts_ns: int | None) -> str:
    """Unix nanoseconds as Docker prints them: 2024-01-02T03:04:05.123456789Z."""
    if not ts_ns:
        return ZERO_TIME
    secs, nanos = divmod(ts_ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return f"{base}.{nanos:09d}Z"


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")


@functools.lru_cache(maxsize=8192)  # listings parse the same Created/StartedAt stamps again and again
def parse_rfc3339(value: str) -> float:
    """RFC 3339 (any number of fraction digits) to Unix seconds."""
    m = _RFC3339.match(value)
    if not m:
        raise ValueError(value)
    tz = m.group(3) or "Z"
    base = datetime.fromisoformat(m.group(1) + ("+00:00" if tz == "Z" else tz))
    frac = float("0." + m.group(2)) if m.group(2) else 0.0
    return base.timestamp() + frac


def now_rfc3339() -> str:
    return rfc3339(time.time_ns())


def format_ts(ts: float) -> str:
    """Unix seconds (float) as RFC 3339 with nanoseconds."""
    return rfc3339(round(ts * 1_000_000_000))


def parse_time_param(value: str) -> float:
    """`since`/`until`: Unix seconds[.nanos], RFC 3339, or a Go duration meaning "ago"."""
    try:
        return float(value)
    except ValueError:
        pass
    m = _DURATION.match(value)
    if m:
        return time.time() - float(m.group(1)) * _UNITS[m.group(2)]
    return parse_rfc3339(value)


def human_duration(seconds: float) -> str:
    """Go's units.HumanDuration, which `docker ps` shows (the daemon in Status, the CLI in CREATED)."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"
