"""Healthcheck rules without containers: defaults, merge with the image, validation,
how results move the status (start period, retries, a log of 5), ps texts."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard import errdefs
from dockyard.containers import health
from dockyard.containers.health import Result, Settings

T0 = "2026-01-01T00:00:00Z"


def at(seconds: float) -> str:
    return f"2026-01-01T00:00:{seconds:09.6f}Z"


def test_defaults_and_argv() -> None:
    s = Settings.of({"Healthcheck": {"Test": ["CMD-SHELL", "curl -f x"]}})
    assert s is not None
    assert (s.argv, s.interval, s.timeout, s.start_period, s.start_interval, s.retries) == (
        ("/bin/sh", "-c", "curl -f x"), 30.0, 30.0, 0.0, 5.0, 3,
    )  # fmt: skip
    shell = Settings.of({"Healthcheck": {"Test": ["CMD-SHELL", "x"]}, "Shell": ["/bin/ash", "-eo"]})
    assert shell is not None and shell.argv == ("/bin/ash", "-eo", "x")
    cmd = Settings.of({"Healthcheck": {"Test": ["CMD", "true", "a b"], "Interval": 200_000_000, "Retries": 1}})
    assert cmd is not None and cmd.argv == ("true", "a b") and cmd.interval == 0.2 and cmd.retries == 1
    assert Settings.of({"Healthcheck": {"Test": ["NONE"]}}) is None
    assert Settings.of({}) is None


def test_merge_with_image() -> None:
    image = {"Test": ["CMD", "true"], "Interval": 5, "Retries": 7}
    assert health.merge_config(None, image) == image
    assert health.merge_config({"Interval": 9}, image) == {"Test": ["CMD", "true"], "Interval": 9, "Retries": 7}
    assert health.merge_config({"Test": ["NONE"]}, image)["Test"] == ["NONE"]  # type: ignore[index]
    assert health.merge_config(None, None) is None


@pytest.mark.parametrize(
    ("hc", "message"),
    [({"Interval": 999_999}, "Interval in Healthcheck cannot be less than 1ms"),
     ({"Timeout": 1}, "Timeout in Healthcheck cannot be less than 1ms"),
     ({"StartPeriod": 5}, "StartPeriod in Healthcheck cannot be less than 1ms"),
     ({"StartInterval": 5}, "StartInterval in Healthcheck cannot be less than 1ms"),
     ({"Retries": -1}, "Retries in Healthcheck cannot be negative")],
)  # fmt: skip
def test_validation(hc: dict[str, Any], message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument) as err:
        health.validate(hc)
    assert str(err.value) == message


def test_results_move_the_status() -> None:
    s = Settings(("true",), 1, 1, start_period=10, start_interval=0.5, retries=2)
    st: dict[str, Any] = {"StartedAt": T0}
    health.on_start(st, True)
    assert st["Health"] == {"Status": "starting", "FailingStreak": 0, "Log": []}
    # failures within the start period do not count while starting
    assert health.apply_result(st, s, Result(at(1), at(1.1), 1, "no")) == "starting"
    assert st["Health"]["FailingStreak"] == 0
    assert s.next_interval(1.2, "starting") == 0.5 and s.next_interval(11, "starting") == 1
    assert health.apply_result(st, s, Result(at(11), at(11.1), 1, "no")) == "starting"
    assert health.apply_result(st, s, Result(at(12), at(12.1), 2, "no")) == "unhealthy"
    assert health.apply_result(st, s, Result(at(13), at(13.1), 0, "ok")) == "healthy"
    assert st["Health"]["FailingStreak"] == 0
    for i in range(6):
        health.apply_result(st, s, Result(at(14 + i), at(14.5 + i), 1, str(i)))
    assert len(st["Health"]["Log"]) == 5 and st["Health"]["Log"][-1]["Output"] == "5"
    assert st["Health"]["Status"] == "unhealthy" and st["Health"]["FailingStreak"] == 6
    health.on_start(st, True)  # a restart: starting again, the log kept
    assert st["Health"]["Status"] == "starting" and len(st["Health"]["Log"]) == 5
    health.on_start(st, False)
    assert "Health" not in st


def test_ps_texts_and_timeout_text() -> None:
    def r(status: str | None) -> dict[str, Any]:
        return {"State": {"Health": {"Status": status}} if status else {}}

    assert health.ps_suffix(r("starting")) == " (health: starting)"
    assert health.ps_suffix(r("healthy")) == " (healthy)"
    assert health.ps_suffix(r(None)) == "" and health.status_of(r(None)) == "none"
    assert [health.timeout_text(x) for x in (0.5, 1, 30, 90, 1.25, 3600)] == ["500ms", "1s", "30s", "1m30s", "1.25s", "1h0m0s"]
