"""Restart policies and Docker's back-off, on a fake clock: no sleeping."""

from __future__ import annotations

import asyncio

import pytest

from dockyard import errdefs
from dockyard.containers.restart import Backoff, Policy, Supervisor, validate


def test_backoff_doubles_from_100ms_to_one_minute() -> None:
    b = Backoff()
    delays = [b.next(ran_for=0.5) for _ in range(12)]
    assert delays[:5] == [0.1, 0.2, 0.4, 0.8, 1.6]
    assert delays[-1] == 60.0 and max(delays) == 60.0
    assert delays[9] == 51.2 and delays[10] == 60.0


def test_backoff_resets_after_a_ten_second_run() -> None:
    b = Backoff()
    for _ in range(4):
        b.next(ran_for=1)
    assert b.next(ran_for=9.9) == 1.6
    assert b.next(ran_for=10.0) == 0.1
    assert b.next(ran_for=0) == 0.2


@pytest.mark.parametrize(
    ("policy", "code", "manual", "count", "cancelled", "want"),
    [
        (Policy("no"), 1, False, 0, False, False),
        (Policy("always"), 0, False, 5, False, True),
        (Policy("always"), 0, True, 0, False, True),  # a kill with another signal: always goes on
        (Policy("always"), 137, True, 0, True, False),  # stop / kill: policy ended
        (Policy("unless-stopped"), 0, False, 0, False, True),
        (Policy("unless-stopped"), 0, True, 0, False, False),
        (Policy("on-failure"), 0, False, 0, False, False),
        (Policy("on-failure"), 3, False, 100, False, True),  # no maximum
        (Policy("on-failure", 2), 3, False, 1, False, True),
        (Policy("on-failure", 2), 3, False, 2, False, False),
    ],
)
def test_should_restart(policy: Policy, code: int, manual: bool, count: int, cancelled: bool, want: bool) -> None:
    assert policy.should_restart(code, manual, count, cancelled) is want


def test_on_boot_always_comes_back_even_after_a_stop_unless_stopped_not() -> None:
    assert Policy("always").should_start_on_boot(137, True, 0)
    assert not Policy("unless-stopped").should_start_on_boot(137, True, 0)
    assert Policy("unless-stopped").should_start_on_boot(0, False, 0)
    assert not Policy("no").should_start_on_boot(1, False, 0)


@pytest.mark.parametrize(
    ("rp", "auto_remove", "message"),
    [
        ({"Name": "sometimes"}, False,
         "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"),
        ({"Name": "always", "MaximumRetryCount": 3}, False,
         "invalid restart policy: maximum retry count can only be used with 'on-failure'"),
        ({"Name": "on-failure", "MaximumRetryCount": -1}, False,
         "invalid restart policy: maximum retry count cannot be negative"),
        ({"Name": "always"}, True, "can't create 'AutoRemove' container with restart policy"),
    ],
)  # fmt: skip
def test_validation_messages(rp: dict[str, object], auto_remove: bool, message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument) as err:
        validate(rp, auto_remove)
    assert str(err.value) == message


def test_valid_policies_pass() -> None:
    for rp in ({}, {"Name": ""}, {"Name": "no"}, {"Name": "on-failure", "MaximumRetryCount": 3}):
        validate(rp, auto_remove=rp.get("Name") in (None, "", "no"))


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_supervisor_backs_off_and_resets_with_the_clock() -> None:
    async def main() -> None:
        t = FakeTime()
        starts: list[str] = []

        async def start(cid: str) -> None:
            starts.append(cid)
            sup.started(cid)

        sup = Supervisor(start, clock=t.clock, sleep=t.sleep)
        sup.started("c", reset=True)
        for _ in range(4):  # crashes right away: 0.1, 0.2, 0.4, 0.8
            t.now += 0.01
            sup.schedule("c")
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        assert t.slept == [0.1, 0.2, 0.4, 0.8]
        assert starts == ["c"] * 4
        t.now += 10  # ran 10 s: the next back-off starts over
        assert sup.schedule("c") == 0.1
        assert sup.cancel("c") and not sup.cancel("c")
        assert sup.pending_ids() == []
        sup.started("c", reset=True)  # a user's start forgets the sequence
        assert sup.schedule("c") == 0.1
        await sup.close()
        assert starts == ["c"] * 4

    asyncio.run(main())
