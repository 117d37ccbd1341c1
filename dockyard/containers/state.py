"""The container state machine: one transition table and the guards that read it.

Everything that changes `State.Status` goes through `transition` here, which checks the
move against `TRANSITIONS` and sets the flags Docker derives from the status (Running,
Paused, Restarting, Dead) in one place, so no caller can leave them disagreeing. Users'
operations are checked first with `check`, which raises Docker's error for the current
state: `Conflict` (or `NotModified` where Docker answers 304) naming the container.

    created ──start──► running ──pause──► paused ──unpause──► running
       │                 │  ▲                │
       │               exit │ restart        exit
       │                 ▼  │                ▼
       │     exited ◄──cancel── restarting   exited
       │       │
       └───────┴──remove──► removing ──fail──► dead ──remove──► removing

A restarting container counts as running (Running is true), as in Docker: every check
that keeps `rm`, `start` and `update` away from a running one keeps them away from it too.
"""

from __future__ import annotations

from typing import Any

from dockyard.errdefs import Conflict, Internal, NotModified

CREATED, RUNNING, PAUSED, RESTARTING, REMOVING, EXITED, DEAD = (
    "created", "running", "paused", "restarting", "removing", "exited", "dead",
)  # fmt: skip
STATES = (CREATED, RUNNING, PAUSED, RESTARTING, REMOVING, EXITED, DEAD)

# (from status, event) -> new status: the only moves a record's status can make
TRANSITIONS: dict[tuple[str, str], str] = {
    (CREATED, "start"): RUNNING,
    (EXITED, "start"): RUNNING,
    (RESTARTING, "start"): RUNNING,  # the supervisor's delayed start
    (RUNNING, "pause"): PAUSED,
    (PAUSED, "unpause"): RUNNING,
    (RUNNING, "exit"): EXITED,
    (PAUSED, "exit"): EXITED,
    (RUNNING, "schedule_restart"): RESTARTING,
    (PAUSED, "schedule_restart"): RESTARTING,
    (RESTARTING, "cancel_restart"): EXITED,  # stopped, killed or failed to start while waiting
    (CREATED, "remove"): REMOVING,
    (EXITED, "remove"): REMOVING,
    (DEAD, "remove"): REMOVING,
    (REMOVING, "remove_failed"): DEAD,
}

# the flags Docker's State carries beside the status, as each status implies them
_FLAGS: dict[str, dict[str, bool]] = {
    CREATED: {"Running": False, "Paused": False, "Restarting": False, "Dead": False},
    RUNNING: {"Running": True, "Paused": False, "Restarting": False, "Dead": False},
    PAUSED: {"Running": True, "Paused": True, "Restarting": False, "Dead": False},
    RESTARTING: {"Running": True, "Paused": False, "Restarting": True, "Dead": False},
    EXITED: {"Running": False, "Paused": False, "Restarting": False, "Dead": False},
    REMOVING: {"Running": False, "Paused": False, "Restarting": False, "Dead": False},
    DEAD: {"Running": False, "Paused": False, "Restarting": False, "Dead": True},
}

# user operation -> statuses it may start from
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


class BadTransition(Internal):
    """A move the table does not have: a bug in the caller, not a user's mistake."""


def status(record: dict[str, Any]) -> str:
    return str(record["State"]["Status"])


def short(record: dict[str, Any]) -> str:
    return str(record["Id"][:12])


def can(event: str, current: str) -> bool:
    return (current, event) in TRANSITIONS


def transition(record: dict[str, Any], event: str, **fields: Any) -> str:
    """Move the record's status by `event` (in memory; the caller persists) and set the
    flags the new status implies, plus any other State `fields` (Pid, ExitCode, times)."""
    current = status(record)
    new = TRANSITIONS.get((current, event))
    if new is None:
        raise BadTransition(f"container {short(record)}: no transition {event!r} from state {current}")
    record["State"].update(Status=new, **_FLAGS[new], **fields)
    return new


def check(op: str, record: dict[str, Any]) -> None:
    st = status(record)
    if st in ALLOWED[op]:
        return
    cid = short(record)
    if op == "start":
        if st == PAUSED:
            raise Conflict(f"cannot start a paused container {cid}, try unpause instead")
        if st in (RUNNING, RESTARTING):
            raise NotModified(f"container {cid} is already started")
        if st in (REMOVING, DEAD):
            raise Conflict("container is marked for removal and cannot be started")
        raise Conflict(f"cannot start container {cid}: state is {st}")
    if op == "stop":
        raise NotModified(f"container {cid} is already stopped")
    if op == "kill":
        raise Conflict(f"Container {record['Id']} is not running")
    if op == "pause":
        if st == PAUSED:
            raise Conflict(f"Container {record['Id']} is already paused")
        if st == RESTARTING:
            raise Conflict(f"Container {record['Id']} is restarting, wait until the container is running")
        raise Conflict(f"Container {record['Id']} is not running")
    if op == "unpause":
        raise Conflict(f"Container {record['Id']} is not paused")
    if op == "exec":
        if st == PAUSED:
            raise Conflict(f"Container {record['Id']} is paused, unpause the container before exec")
        if st == RESTARTING:
            raise Conflict(f"Container {record['Id']} is restarting, wait until the container is running")
        raise Conflict(f"Container {record['Id']} is not running")
    if op == "remove":
        if st == REMOVING:
            raise Conflict(f"removal of container {cid} is already in progress")
        if st == PAUSED:
            raise Conflict(f"cannot remove container \"{record['Name']}\": container is paused and must be unpaused first")
        raise Conflict(
            f"cannot remove container \"{record['Name']}\": container is {st}: "
            "stop the container before removing or force remove"
        )
    raise Conflict(f"cannot {op} container {cid}: state is {st}")
