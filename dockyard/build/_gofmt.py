"""Go's formatting and parsing of the values dockerd writes into build history.

Owns the exact text of Go's `%q` (of a `[]string`, of a rune, of HEALTHCHECK's
`HealthConfig`) and of `time.Duration` (`String()` and `ParseDuration`), so that history
comments match dockerd's byte for byte. Pure functions.
"""

from __future__ import annotations

import json
import re
from typing import Any

from dockyard.build.model import BuildError

__all__ = ["go_healthcheck", "go_quote_list", "parse_duration"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def go_quote_list(items: list[str]) -> str:
    """Go's %q of a []string: `["a" "b"]`, as dockerd writes CMD/ENTRYPOINT in history."""
    return "[" + " ".join(json.dumps(i) for i in items) + "]"


def parse_duration(value: str, flag: str) -> int:
    """Go's time.ParseDuration, in nanoseconds (HEALTHCHECK's flags)."""
    if value in ("0", ""):
        return 0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(value):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(value):
        raise BuildError(f'time: invalid duration "{value}"')
    return int(total)


def go_healthcheck(hc: dict[str, Any]) -> str:
    """`fmt.Sprintf("%q", *container.HealthConfig)`, dockerd's HEALTHCHECK history comment."""
    durations = " ".join(json.dumps(_go_duration(int(hc.get(k) or 0)), ensure_ascii=False)
                         for k in ("Interval", "Timeout", "StartPeriod", "StartInterval"))  # fmt: skip
    return f"&{{{go_quote_list(hc.get('Test') or [])} {durations} {_go_quote_rune(int(hc.get('Retries') or 0))}}}"


def _go_duration(ns: int) -> str:
    """Go's time.Duration.String()."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _go_frac(ns, size) + unit
    h, rem = divmod(ns, 3600 * 10**9)
    m, rem = divmod(rem, 60 * 10**9)
    out = _go_frac(rem, 10**9) + "s"
    if h or m:
        out = f"{m}m" + out
    if h:
        out = f"{h}h" + out
    return sign + out


def _go_frac(value: int, size: int) -> str:
    whole, frac = divmod(value, size)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(size)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def _go_quote_rune(n: int) -> str:
    """Go's %q of an int (a rune literal), as dockerd prints Retries."""
    special = {
        7: "\\a",
        8: "\\b",
        9: "\\t",
        10: "\\n",
        11: "\\v",
        12: "\\f",
        13: "\\r",
        39: "\\'",
        92: "\\\\",
    }
    if n in special:
        return f"'{special[n]}'"
    if 0x20 <= n < 0x7F or (n >= 0xA0 and chr(n).isprintable()):
        return f"'{chr(n)}'"
    if n < 0x80:
        return f"'\\x{n:02x}'"
    return f"'\\u{n:04x}'" if n <= 0xFFFF else f"'\\U{n:08x}'"
