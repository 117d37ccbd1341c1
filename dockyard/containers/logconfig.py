"""A container's `HostConfig.LogConfig`: which log drivers and options are honoured, and the
plan conmon gets from them. Pure: no files, no processes.

conmon writes the container's log (its k8s-file format; `logs.py` reads it), so what can
be honoured is what conmon does:

- `json-file` (Docker's default; `""` means it): the log at `LogPath`, with `max-size`
  (conmon's `--log-size-max`: at the limit the file starts over) and `max-file` (the
  files conmon drops are kept, up to that many in all, by `logrotate.py`);
  `compress=false`.
- `none`: no log at all (conmon `-l none`); `docker logs` answers Docker's 501.

Without a driver in the request, daemon.json's `log-driver` and `log-opts` apply (checked
the same way when the daemon starts, which refuses to run with settings it cannot honour).
Everything else is refused at create with a message saying so, never stored and ignored:
other drivers (Docker's own words for an unknown one), `local` (its own file format),
compressed rotation, and the options that would change each line's content (`labels`,
`env`, `tag`, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dockyard.errdefs import InvalidArgument

JSON_FILE, NONE = "json-file", "none"
_JSON_FILE_OPTS = {"max-file", "max-size", "compress", "labels", "labels-regex", "env", "env-regex", "tag"}
_HONOURED = {"max-file", "max-size", "compress", "mode"}
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


@dataclass(frozen=True)
class LogPlan:
    """What conmon is told: its log driver, and the size at which the file starts over
    (-1: no limit)."""

    driver: str  # "k8s-file" or "none"
    max_size: int = -1
    max_files: int = 1  # files kept, the current one included (logrotate.py keeps the others)


def parse_size(value: str) -> int:
    """Docker's units.RAMInBytes: `10m`, `1.5g`, `512k`, `100` (binary units)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(?:i?b)?\s*", value.lower())
    if not m:
        raise InvalidArgument(f"invalid size: '{value}'")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def normalize(log_config: dict[str, Any] | None, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The stored LogConfig: `{"Type": driver, "Config": {opts}}`, validated. Without a
    driver the daemon's default (daemon.json `log-driver`) applies, and with the default
    driver its `log-opts` fill the options not given (moby's mergeAndVerifyLogConfig)."""
    lc = log_config or {}
    default_driver = str((defaults or {}).get("Type") or "") or JSON_FILE
    driver = str(lc.get("Type") or "") or default_driver
    opts = {str(k): str(v) for k, v in (lc.get("Config") or {}).items()}
    if driver == default_driver:
        opts = {**{str(k): str(v) for k, v in ((defaults or {}).get("Config") or {}).items()}, **opts}
    validate(driver, opts)
    return {"Type": driver, "Config": opts}


def validate(driver: str, opts: dict[str, str]) -> None:
    if driver == NONE:
        if opts:
            raise InvalidArgument(f"log opts are not supported with the none log driver: {', '.join(sorted(opts))}")
        return
    if driver == "local":
        raise InvalidArgument(
            "the local log driver is not supported (its file format is Docker's own); "
            "use json-file, with max-size and max-file for a bounded log"
        )
    if driver != JSON_FILE:
        raise InvalidArgument(f"logger: no log driver named '{driver}' is registered")
    mode = opts.get("mode", "blocking")
    if mode not in ("", "blocking"):
        if mode == "non-blocking":
            raise InvalidArgument("logger: logging mode non-blocking is not supported: the log is always written in full")
        raise InvalidArgument(f"logger: logging mode not supported: {mode}")
    for key in opts:
        if key not in _JSON_FILE_OPTS and key not in ("mode",):
            raise InvalidArgument(f"unknown log opt '{key}' for json-file log driver")
        if key not in _HONOURED:
            raise InvalidArgument(f"log opt '{key}' of the json-file log driver is not supported")
    if "max-size" in opts and parse_size(opts["max-size"]) <= 0:
        raise InvalidArgument("max-size must be a positive number")
    if "max-file" in opts:
        try:
            files = int(opts["max-file"])
        except ValueError:
            raise InvalidArgument(f"invalid value for max-file: '{opts['max-file']}'") from None
        if files < 1:
            raise InvalidArgument("max-file cannot be less than 1")
    if opts.get("compress", "false").lower() not in ("false", "0", ""):
        raise InvalidArgument("compress is not supported: the log is never rotated into compressed files")


def plan(log_config: dict[str, Any]) -> LogPlan:
    if log_config.get("Type") == NONE:
        return LogPlan("none")
    opts = log_config.get("Config") or {}
    if not opts.get("max-size"):
        return LogPlan("k8s-file")  # max-file means nothing without max-size, as in Docker
    return LogPlan("k8s-file", parse_size(opts["max-size"]), int(opts.get("max-file") or 1))


def readable(log_config: dict[str, Any]) -> bool:
    return log_config.get("Type") != NONE
