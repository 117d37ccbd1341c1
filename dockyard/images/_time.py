"""Time values found in image configs and filters (RFC 3339, Unix seconds, Go durations)."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)$")
_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rfc3339(value: str) -> float:
    m = _RFC3339.match(value)
    if not m:
        raise ValueError(value)
    tz = m.group(3) or "Z"
    base = datetime.fromisoformat(m.group(1) + ("+00:00" if tz == "Z" else tz))
    frac = float("0." + m.group(2)) if m.group(2) else 0.0
    return base.timestamp() + frac


def parse_time_value(value: str) -> float:
    """A filter's `until`: Unix seconds[.frac], RFC 3339, or a duration meaning "ago"."""
    try:
        return float(value)
    except ValueError:
        pass
    m = _DURATION.match(value)
    if m:
        return time.time() - float(m.group(1)) * _UNITS[m.group(2)]
    return parse_rfc3339(value)


def rfc3339_now() -> str:
    secs, nanos = divmod(time.time_ns(), 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{nanos:09d}Z"


def format_ts(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond * 1000:09d}Z"
