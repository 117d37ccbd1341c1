"""Helpers every command module uses: the client from the click context, exit statuses, parsing.

Must not import daemon code; only `dockyard.client` and `dockyard.errdefs`.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import click

from dockyard import errdefs
from dockyard.client import Client, is_from_daemon


class StatusError(Exception):
    """Exit with `code`, optionally printing `message` on stderr first."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class State:
    """Per-invocation state: the client and the exit code used for daemon errors."""

    current: State | None = None

    def __init__(self, host: str | None) -> None:
        self.client = Client(host)
        self.error_code = 1  # run/create switch this to 125, as docker does
        State.current = self


def state() -> State:
    found = click.get_current_context().find_object(State)
    assert found is not None, "the dockyard group makes a State for every command"
    return found


def client() -> Client:
    return state().client


def error_text(err: BaseException) -> str:
    msg = str(err)
    if is_from_daemon(err):
        return f"Error response from daemon: {msg}"
    return msg


def for_each(names: Iterable[str], action: Callable[[str], Any], echo: bool = True) -> None:
    """Apply `action` to each name; print the name on success, report errors, exit 1 if any failed.

    This is how docker's stop/kill/rm/pause/... behave with several arguments.
    """
    failed = False
    for name in names:
        try:
            action(name)
        except errdefs.DockyardError as err:
            failed = True
            click.echo(error_text(err), err=True)
            continue
        if echo:
            click.echo(name)
    if failed:
        raise StatusError(1)


_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtpb]?)(i?b?)$", re.IGNORECASE)


def parse_bytes(value: str, flag: str = "") -> int:
    """docker's RAMInBytes: `512m`, `1g`, `1024` (binary multiples)."""
    m = _SIZE_RE.match(value.strip())
    if not m:
        raise click.BadParameter(f"invalid size: '{value}'", param_hint=flag or None)
    num, unit = float(m.group(1)), m.group(2).lower()
    mult = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}[unit]
    return int(num * mult)


_DUR_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DUR_NS = {"ns": 1, "us": 1000, "µs": 1000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_duration_ns(value: str) -> int:
    """Go's time.ParseDuration, in nanoseconds."""
    v = value.strip()
    if v in ("0", ""):
        return 0
    pos, total = 0, 0.0
    for m in _DUR_RE.finditer(v):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DUR_NS[m.group(2)]
        pos = m.end()
    if pos != len(v):
        raise click.BadParameter(f'time: invalid duration "{value}"')
    return int(total)


def parse_since(value: str | None, now: float | None = None) -> str | None:
    """docker's `--since/--until`: a Go duration relative to now, RFC 3339 or a Unix timestamp."""
    if not value:
        return None
    now = time.time() if now is None else now
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return value
    if _DUR_RE.match(value):
        try:
            return f"{now - parse_duration_ns(value) / 1e9:.9f}"
        except click.BadParameter:
            pass
    from dockyard.cli.formatting import parse_time

    for candidate in (value, value + "T00:00:00Z", value + "Z"):
        try:
            ts = parse_time(candidate)
        except ValueError:
            continue
        if ts is not None:
            return f"{ts:.9f}"
    raise click.BadParameter(f"invalid time: {value}")


def parse_kv(values: Iterable[str], flag: str) -> dict[str, str]:
    """Repeated `key=value` options (--label, --opt, ...) as a dict."""
    out: dict[str, str] = {}
    for v in values:
        k, _, val = v.partition("=")
        if not k:
            raise click.BadParameter(f"invalid argument {v!r}", param_hint=flag)
        out[k] = val
    return out


def parse_filters(values: Iterable[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in values:
        if "=" not in v:
            raise click.BadParameter(f"bad format of filter (expected name=value): {v}")
        k, _, val = v.partition("=")
        out.setdefault(k.strip().lower(), []).append(val)
    return out


def write_binary(chunks: Iterable[bytes], output: str | None, what: str) -> None:
    """Write a tar stream to `-o FILE` or to stdout, refusing a terminal like docker does."""
    if output and output != "-":
        with open(output, "wb") as f:
            f.writelines(chunks)
        return
    if sys.stdout.isatty():
        raise StatusError(1, "cowardly refusing to save to a terminal. Use the -o flag or redirect")
    out = sys.stdout.buffer
    for c in chunks:
        out.write(c)
    out.flush()
