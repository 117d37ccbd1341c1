"""A short crash series in CI (>= 30 SIGKILLs of the daemon mid-operation); a longer one by
hand: DOCKYARD_CRASH_KILLS=300 (and DOCKYARD_CRASH_SEED) — see tests/crash/harness.py."""

from __future__ import annotations

import collections
import os
import time

import pytest

from tests.crash.harness import run_series

KILLS = int(os.environ.get("DOCKYARD_CRASH_KILLS", "30"))
SEED = int(os.environ.get("DOCKYARD_CRASH_SEED", str(int(time.time()))))


@pytest.mark.timeout(max(300, KILLS * 12))
def test_crash_series(capsys):
    start = time.monotonic()
    outcomes = run_series(KILLS, SEED)
    took = time.monotonic() - start
    by_op = collections.Counter((o.op, o.acked) for o in outcomes)
    with capsys.disabled():
        print(f"\ncrash series: {len(outcomes)} kills, seed {SEED}, {took:.0f} s; (op, acked): {dict(sorted(by_op.items()))}")
    assert len(outcomes) == KILLS
