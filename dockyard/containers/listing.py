"""The `GET /containers/json` view: Docker's list entry shape, its filters and status text."""

from __future__ import annotations

import re
import time
from typing import Any

from dockyard.containers import health
from dockyard.errdefs import InvalidArgument
from dockyard.filters import labels_match
from dockyard.timefmt import human_duration, parse_rfc3339

FILTERS = {
    "id", "name", "label", "status", "ancestor", "exited", "before", "since", "health",
    "network", "volume", "publish", "expose", "is-task",
}  # fmt: skip
STATUSES = {"created", "restarting", "running", "removing", "paused", "exited", "dead"}


def status_text(rec: dict[str, Any], now: float | None = None) -> str:
    st = rec["State"]
    now = now or time.time()
    if st["Status"] == "running":
        up = human_duration(now - parse_rfc3339(st["StartedAt"]))
        return f"Up {up} (Paused)" if st["Paused"] else f"Up {up}{health.ps_suffix(rec)}"
    if st["Status"] == "paused":
        return f"Up {human_duration(now - parse_rfc3339(st['StartedAt']))} (Paused)"
    if st["Status"] == "exited":
        if st["FinishedAt"].startswith("0001"):
            return "Created"
        return f"Exited ({st['ExitCode']}) {human_duration(now - parse_rfc3339(st['FinishedAt']))} ago"
    if st["Status"] == "created":
        return "Created"
    if st["Status"] == "restarting":
        return f"Restarting ({st['ExitCode']}) {human_duration(now - parse_rfc3339(st['FinishedAt']))} ago"
    if st["Status"] == "removing":
        return "Removal In Progress"
    if st["Status"] == "dead":
        return "Dead"
    return str(st["Status"])


def entry(rec: dict[str, Any], image_ids: dict[str, str] | None = None) -> dict[str, Any]:
    cfg, hc = rec["Config"], rec["HostConfig"]
    command = " ".join([rec["Path"], *rec["Args"]])
    ports = []
    for port, binds in (rec["NetworkSettings"].get("Ports") or {}).items():
        num, _, proto = port.partition("/")
        for b in binds or [None]:
            p: dict[str, Any] = {"PrivatePort": int(num), "Type": proto or "tcp"}
            if b:
                p.update(IP=b.get("HostIp") or "0.0.0.0", PublicPort=int(b.get("HostPort") or 0))
            ports.append(p)
    return {
        "Id": rec["Id"],
        "Names": [rec["Name"]],
        "Image": cfg["Image"],
        "ImageID": rec["Image"],
        "Command": command,
        "Created": int(parse_rfc3339(rec["Created"])),
        "Ports": ports,
        "Labels": cfg.get("Labels") or {},
        "State": rec["State"]["Status"],
        "Status": status_text(rec),
        "HostConfig": {"NetworkMode": hc.get("NetworkMode", "bridge")},
        "NetworkSettings": {"Networks": rec["NetworkSettings"].get("Networks") or {}},
        "Mounts": rec.get("Mounts") or [],
    }


def _name_match(pattern: str, name: str) -> bool:
    """Docker matches the filter as a regular expression against "/name" and "name", so
    `name=^/web$` and `name=^web$` are both exact and `name=web` is a substring."""
    try:
        rx = re.compile(pattern)
    except re.error:
        return pattern.lstrip("/") in name.lstrip("/")
    return bool(rx.search(name) or rx.search(name.lstrip("/")))


def apply_filters(
    records: list[dict[str, Any]], f: dict[str, list[str]], resolve: Any, image_matches: Any
) -> list[dict[str, Any]]:
    """records newest first; resolve(ref) gives a record (for before/since)."""
    for key in f:
        if key not in FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'")
    for s in f.get("status", []):
        if s not in STATUSES:
            raise InvalidArgument(f"invalid filter 'status={s}'")
    for h in f.get("health", []):
        if h not in (health.STARTING, health.HEALTHY, health.UNHEALTHY, health.NONE):
            raise InvalidArgument(f"Unrecognised filter value for health: {h}")
    out = records
    if "id" in f:
        out = [r for r in out if any(r["Id"].startswith(x) for x in f["id"])]
    if "name" in f:
        out = [r for r in out if any(_name_match(x, r["Name"]) for x in f["name"])]
    if "label" in f:
        out = [r for r in out if labels_match(r["Config"].get("Labels") or {}, f["label"])]
    if "status" in f:
        out = [r for r in out if r["State"]["Status"] in f["status"]]
    if "health" in f:
        out = [r for r in out if health.status_of(r) in f["health"]]
    if "exited" in f:
        try:
            codes = {int(x) for x in f["exited"]}
        except ValueError:
            raise InvalidArgument("invalid filter 'exited'") from None
        out = [r for r in out if r["State"]["Status"] == "exited" and r["State"]["ExitCode"] in codes]
    if "ancestor" in f:
        out = [r for r in out if any(image_matches(r, a) for a in f["ancestor"])]
    if "before" in f:
        ref = resolve(f["before"][0])
        out = [r for r in out if r["Created"] < ref["Created"]]
    if "since" in f:
        ref = resolve(f["since"][0])
        out = [r for r in out if r["Created"] > ref["Created"]]
    if "network" in f:
        out = [r for r in out if set(f["network"]) & set((r["NetworkSettings"].get("Networks") or {}).keys())]
    return out
