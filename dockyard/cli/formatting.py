"""Output formatting shared by commands: docker-style tables, `--format` templates, human units.

Owns how rows become text (tabwriter alignment, `table` headers, `{{json .}}`); it must not talk
to the daemon.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from dockyard.cli._template import Template, TemplateError, go_str
from dockyard.timefmt import human_duration

__all__ = [
    "Template",
    "TemplateError",
    "bytes_size",
    "ellipsis",
    "go_str",
    "human_duration",
    "human_size",
    "parse_time",
    "print_json",
    "render",
    "tabwrite",
    "trunc_id",
]


def trunc_id(ident: str) -> str:
    if ":" in ident:
        ident = ident.split(":", 1)[1]
    return ident[:12]


def ellipsis(s: str, width: int) -> str:
    if len(s) <= width:
        return s
    return s[: width - 1] + "…"


def _scaled(size: float, base: float, units: list[str], precision: int) -> str:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return f"{size:.{precision}g}{units[i]}"


def human_size(size: float, precision: int = 3) -> str:
    """go-units HumanSizeWithPrecision: decimal units (kB, MB, GB)."""
    return _scaled(float(size), 1000.0, ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"], precision)


def bytes_size(size: float) -> str:
    """go-units BytesSize: binary units (KiB, MiB, GiB)."""
    return _scaled(float(size), 1024.0, ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"], 4)


def parse_time(value: str | float | None) -> float | None:
    """Parse an RFC 3339 (nanoseconds allowed) or Unix timestamp into epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    v = value.strip()
    try:
        return float(v)
    except ValueError:
        pass
    if v.startswith("0001-01-01"):
        return None
    main, frac, tz = v, "", ""
    if v.endswith("Z"):
        main, tz = v[:-1], "+00:00"
    elif len(v) > 19 and v[-6] in "+-":
        main, tz = v[:-6], v[-6:]
    if "." in main:
        main, frac = main.split(".", 1)
    dt = _dt.datetime.fromisoformat(main + (tz or "+00:00"))
    return dt.timestamp() + (float("0." + frac) if frac else 0.0)


# -- tables ---------------------------------------------------------------------------------


def tabwrite(lines: Iterable[str], out: TextIO, minwidth: int = 10, padding: int = 3) -> None:
    """Go text/tabwriter as docker configures it: (minwidth 10, tabwidth 1, padding 3, ' ')."""
    rows = [line.split("\t") for line in lines]
    ncols = max((len(r) for r in rows), default=0)
    widths = [minwidth] * ncols
    for r in rows:
        for i, cell in enumerate(r[:-1]):
            widths[i] = max(widths[i], len(cell) + padding)
    for r in rows:
        cells = [c.ljust(widths[i]) for i, c in enumerate(r[:-1])]
        out.write("".join(cells) + r[-1] + "\n")


class _Headers:
    """Template dot used to render a table's header row: every field renders as its header."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._h = headers

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._h.get(name, _upper_snake(name))

    def to_json(self) -> str:
        return ""

    def Label(self, name: str = "", *a: Any) -> str:
        return name or "LABEL"


def _upper_snake(name: str) -> str:
    out = ""
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out += " "
        out += ch.upper()
    return out


def _unescape(fmt: str) -> str:
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


def render(
    items: Iterable[Any],
    fmt: str | None,
    *,
    default: str,
    headers: Mapping[str, str],
    out: TextIO | None = None,
) -> None:
    """Print `items` with `fmt` (docker semantics: `table ...` aligns and adds headers)."""
    out = out or sys.stdout
    fmt = fmt or default
    if fmt == "json":
        fmt = "{{json .}}"
    elif fmt == "table":
        fmt = default
    fmt = _unescape(fmt)
    if fmt.startswith("table"):
        body = fmt[len("table") :].strip()
        tmpl = Template(body)
        lines = [tmpl.render(_Headers(headers))]
        lines += [tmpl.render(item) for item in items]
        expanded: list[str] = []
        for line in lines:
            expanded.extend(line.split("\n"))
        tabwrite(expanded, out)
        return
    tmpl = Template(fmt)
    for item in items:
        out.write(tmpl.render(item) + "\n")


def print_json(value: Any, out: TextIO | None = None) -> None:
    """docker inspect's JSON: 4-space indent, no HTML escaping."""
    (out or sys.stdout).write(json.dumps(value, indent=4, ensure_ascii=False) + "\n")
