"""`docker ps` STATUS texts, as Docker's State.String() writes them."""

from __future__ import annotations

from dockyard.containers.listing import status_text
from dockyard.timefmt import parse_rfc3339

T0 = "2026-01-01T00:00:00.000000000Z"
NOW = parse_rfc3339(T0)


def rec(status: str, *, paused: bool = False, code: int = 0, started: str = T0, finished: str = T0) -> dict:
    return {
        "State": {
            "Status": status,
            "Paused": paused,
            "ExitCode": code,
            "StartedAt": started,
            "FinishedAt": finished,
        }
    }


def test_texts() -> None:
    assert status_text(rec("running"), NOW + 0.5) == "Up Less than a second"
    assert status_text(rec("running"), NOW + 5) == "Up 5 seconds"
    assert status_text(rec("paused", paused=True), NOW + 90) == "Up About a minute (Paused)"
    assert status_text(rec("exited", code=3), NOW + 120) == "Exited (3) 2 minutes ago"
    assert (
        status_text(rec("created", started="0001-01-01T00:00:00Z", finished="0001-01-01T00:00:00Z"))
        == "Created"
    )
    assert status_text(rec("restarting", code=1), NOW + 1) == "Restarting (1) 1 second ago"
    assert status_text(rec("removing")) == "Removal In Progress"
    assert status_text(rec("dead")) == "Dead"
    assert status_text(rec("running"), NOW + 3600 * 5) == "Up 5 hours"
