"""The container state machine: every status change through one table, Docker's errors."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard import errdefs
from dockyard.containers import state


def rec(status: str) -> dict[str, Any]:
    r: dict[str, Any] = {"Id": "a" * 64, "Name": "/web", "State": {"Status": status}}
    r["State"].update(state._FLAGS[status])
    return r


def test_transitions_set_docker_flags() -> None:
    r = rec(state.CREATED)
    assert state.transition(r, "start", Pid=42) == state.RUNNING
    assert r["State"] == {"Status": "running", "Running": True, "Paused": False, "Restarting": False, "Dead": False, "Pid": 42}
    state.transition(r, "pause")
    assert r["State"]["Paused"] and r["State"]["Running"]
    state.transition(r, "schedule_restart", ExitCode=1)
    # Docker counts a restarting container as running
    assert (r["State"]["Status"], r["State"]["Running"], r["State"]["Restarting"], r["State"]["Paused"]) == (
        "restarting", True, True, False,
    )  # fmt: skip
    state.transition(r, "start")
    state.transition(r, "exit")
    assert not r["State"]["Running"]
    state.transition(r, "remove")
    assert r["State"]["Status"] == "removing"
    state.transition(r, "remove_failed")
    assert r["State"]["Status"] == "dead" and r["State"]["Dead"]
    state.transition(r, "remove")


@pytest.mark.parametrize(
    ("status", "event"),
    [("created", "pause"), ("exited", "exit"), ("running", "remove"), ("restarting", "pause"),
     ("removing", "start"), ("dead", "start"), ("paused", "start"), ("exited", "schedule_restart")],
)  # fmt: skip
def test_moves_not_in_the_table_are_refused(status: str, event: str) -> None:
    r = rec(status)
    with pytest.raises(state.BadTransition):
        state.transition(r, event)
    assert r["State"]["Status"] == status


def test_every_status_reachable_and_flags_known() -> None:
    targets = set(state.TRANSITIONS.values()) | {state.CREATED}
    assert targets == set(state.STATES) == set(state._FLAGS)


@pytest.mark.parametrize(
    ("op", "status", "exc", "message"),
    [
        ("start", "running", errdefs.NotModified, "container aaaaaaaaaaaa is already started"),
        ("start", "restarting", errdefs.NotModified, "container aaaaaaaaaaaa is already started"),
        ("start", "paused", errdefs.Conflict, "cannot start a paused container aaaaaaaaaaaa, try unpause instead"),
        ("start", "dead", errdefs.Conflict, "container is marked for removal and cannot be started"),
        ("stop", "exited", errdefs.NotModified, "container aaaaaaaaaaaa is already stopped"),
        ("exec", "restarting", errdefs.Conflict,
         f"Container {'a' * 64} is restarting, wait until the container is running"),
        ("remove", "restarting", errdefs.Conflict,
         'cannot remove container "/web": container is restarting: stop the container before removing or force remove'),
        ("remove", "paused", errdefs.Conflict,
         'cannot remove container "/web": container is paused and must be unpaused first'),
        ("remove", "removing", errdefs.Conflict, "removal of container aaaaaaaaaaaa is already in progress"),
    ],
)  # fmt: skip
def test_guards_raise_dockers_errors(op: str, status: str, exc: type[Exception], message: str) -> None:
    with pytest.raises(exc) as err:
        state.check(op, rec(status))
    assert str(err.value) == message


def test_allowed() -> None:
    for st in ("created", "exited", "dead"):
        state.check("remove", rec(st))
    for st in ("running", "paused", "restarting"):
        state.check("stop", rec(st))
        state.check("kill", rec(st))
