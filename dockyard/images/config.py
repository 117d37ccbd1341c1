"""Image config helpers: Dockerfile-style `changes` for import and commit (sans-IO).

Owns the parsing of `--change` lines (`CMD ["sh"]`, `ENV A=1 B=2`, `EXPOSE 80/udp`, ...)
and their effect on the `config` part of an image config, plus the defaults dockerd
shows for an image's container config. It does no IO and knows nothing of HTTP.
"""

from __future__ import annotations

import copy
import json
import posixpath
import shlex
from typing import Any

from dockyard.errdefs import InvalidArgument

__all__ = ["ALLOWED_CHANGES", "apply_changes", "full_container_config", "parse_change"]

ALLOWED_CHANGES = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")

# The container Config keys dockerd prints for an image, in its order, with its zero values.
_CONFIG_DEFAULTS: dict[str, Any] = {
    "Hostname": "",
    "Domainname": "",
    "User": "",
    "AttachStdin": False,
    "AttachStdout": False,
    "AttachStderr": False,
    "Tty": False,
    "OpenStdin": False,
    "StdinOnce": False,
    "Env": None,
    "Cmd": None,
    "Image": "",
    "Volumes": None,
    "WorkingDir": "",
    "Entrypoint": None,
    "OnBuild": None,
    "Labels": None,
}


def full_container_config(cfg: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(_CONFIG_DEFAULTS)
    out.update(cfg or {})
    return out


def _json_or_shell(rest: str) -> list[str]:
    s = rest.strip()
    if s.startswith("["):
        try:
            val = json.loads(s)
        except (json.JSONDecodeError, RecursionError):
            val = None
        if isinstance(val, list) and all(isinstance(x, str) for x in val):
            return val
    return ["/bin/sh", "-c", s]


def _words(rest: str) -> list[str]:
    try:
        return shlex.split(rest, posix=True)
    except ValueError as err:
        raise InvalidArgument(f"invalid change {rest!r}: {err}") from None


def _pairs(instr: str, rest: str) -> list[tuple[str, str]]:
    """`K=V K2="v 2"`, or the legacy single `K V` form."""
    words = _words(rest)
    if not words:
        raise InvalidArgument(f"{instr} requires at least one argument")
    if "=" not in words[0]:
        key, _, value = rest.strip().partition(" ")
        if not value.strip() and instr == "ENV":
            raise InvalidArgument(f"{instr} names can not be blank")
        return [(key, value.strip())]
    out = []
    for w in words:
        k, sep, v = w.partition("=")
        if not sep or not k:
            raise InvalidArgument(f"{instr} names can not be blank" if not k else f"invalid {instr} {w!r}")
        out.append((k, v))
    return out


def parse_change(line: str) -> tuple[str, str]:
    line = line.strip()
    instr, _, rest = line.partition(" ")
    instr = instr.upper()
    if not instr:
        raise InvalidArgument("invalid change: empty line")
    if instr not in ALLOWED_CHANGES:
        raise InvalidArgument(f"{instr.lower()} is not a valid change command")
    return instr, rest.strip()


def apply_changes(config: dict[str, Any] | None, changes: list[str]) -> dict[str, Any]:
    """Apply Dockerfile-style lines to an image's `config` (a copy is returned)."""
    cfg: dict[str, Any] = copy.deepcopy(config or {})
    cmd_set = False
    for line in changes:
        if not line.strip():
            continue
        instr, rest = parse_change(line)
        if instr == "CMD":
            cfg["Cmd"] = _json_or_shell(rest)
            cmd_set = True
        elif instr == "ENTRYPOINT":
            ep = _json_or_shell(rest)
            cfg["Entrypoint"] = ep if rest.strip() else None
            if not cmd_set:  # dockerd: a new ENTRYPOINT drops an inherited CMD
                cfg["Cmd"] = None
        elif instr == "ENV":
            env = list(cfg.get("Env") or [])
            for k, v in _pairs(instr, rest):
                env = [e for e in env if e.partition("=")[0] != k] + [f"{k}={v}"]
            cfg["Env"] = env
        elif instr == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            for k, v in _pairs(instr, rest):
                labels[k] = v
            cfg["Labels"] = labels
        elif instr == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for p in _words(rest):
                port, _, proto = p.partition("/")
                lo, _, hi = port.partition("-")
                if not lo.isdigit() or (hi and not hi.isdigit()):
                    raise InvalidArgument(f"invalid containerPort: {port}")
                proto = (proto or "tcp").lower()
                for n in range(int(lo), int(hi or lo) + 1):
                    ports[f"{n}/{proto}"] = {}
            cfg["ExposedPorts"] = ports
        elif instr == "USER":
            if not rest:
                raise InvalidArgument("USER requires exactly one argument")
            cfg["User"] = rest
        elif instr == "WORKDIR":
            if not rest:
                raise InvalidArgument("WORKDIR requires exactly one argument")
            cfg["WorkingDir"] = posixpath.normpath(posixpath.join("/", cfg.get("WorkingDir") or "/", rest))
        elif instr == "VOLUME":
            vols = dict(cfg.get("Volumes") or {})
            items = _json_or_shell(rest) if rest.startswith("[") else _words(rest)
            if items[:2] == ["/bin/sh", "-c"]:
                items = _words(rest)
            for v in items:
                if not v.strip():
                    raise InvalidArgument("VOLUME specified can not be an empty string")
                vols[v] = {}
            cfg["Volumes"] = vols
        elif instr == "STOPSIGNAL":
            if not rest:
                raise InvalidArgument("STOPSIGNAL requires exactly one argument")
            cfg["StopSignal"] = rest
        elif instr == "ONBUILD":
            sub, _, _ = rest.partition(" ")
            if sub.upper() in ("ONBUILD", "FROM", "MAINTAINER"):
                raise InvalidArgument(f"{sub.upper()} isn't allowed as an ONBUILD trigger")
            cfg["OnBuild"] = list(cfg.get("OnBuild") or []) + [rest]
    return cfg
