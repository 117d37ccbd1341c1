"""The container state machine: one transition table and the guards that read it.

Every operation does the same steps: reload the record, check the guard here, act,
persist. A wrong state raises `Conflict` (or `NotModified` where Docker answers 304)
naming the container and its current state.
"""

from __future__ import annotations

from typing import Any

from dockyard.errdefs import Conflict, NotModified

CREATED, RUNNING, PAUSED, RESTARTING, REMOVING, EXITED, DEAD = (
    "created", "running", "paused", "restarting", "removing", "exited", "dead",
)  # fmt: skip

# operation -> statuses it may start from
ALLOWED: dict[str, frozenset[str]] = {
    "start": frozenset({CREATED, EXITED}),
    "stop": frozenset({RUNNING, PAUSED, RESTARTING}),
    "kill": frozenset({RUNNING, PAUSED, RESTARTING}),
    "pause": frozenset({RUNNING}),
    "unpause": frozenset({PAUSED}),
    "exec": frozenset({RUNNING}),
    "remove": frozenset({CREATED, EXITED, DEAD}),
    "attach": frozenset({CREATED, RUNNING, EXITED, PAUSED, RESTARTING}),
}


def status(record: dict[str, Any]) -> str:
    return str(record["State"]["Status"])


def short(record: dict[str, Any]) -> str:
    return str(record["Id"][:12])


def check(op: str, record: dict[str, Any]) -> None:
    st = status(record)
    if st in ALLOWED[op]:
        return
    cid = short(record)
    if op == "start":
        if st == PAUSED:
            raise Conflict(f"cannot start a paused container {cid}, try unpause instead")
        if st == RUNNING:
            raise NotModified(f"container {cid} is already started")
        raise Conflict(f"cannot start container {cid}: state is {st}")
    if op == "stop":
        raise NotModified(f"container {cid} is already stopped")
    if op == "kill":
        raise Conflict(f"Container {record['Id']} is not running")
    if op == "pause":
        if st == PAUSED:
            raise Conflict(f"Container {record['Id']} is already paused")
        raise Conflict(f"Container {record['Id']} is not running")
    if op == "unpause":
        raise Conflict(f"Container {record['Id']} is not paused")
    if op == "exec":
        if st == PAUSED:
            raise Conflict(f"Container {record['Id']} is paused, unpause the container before exec")
        raise Conflict(f"Container {record['Id']} is not running")
    if op == "remove":
        raise Conflict(
            f"cannot remove container \"{record['Name']}\": container is {st}: "
            "stop the container before removing or force remove"
        )
    raise Conflict(f"cannot {op} container {cid}: state is {st}")
