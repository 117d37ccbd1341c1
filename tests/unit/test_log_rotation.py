"""Keeping the files conmon drops at max-size (simulated as conmon does it: a new file
renamed over ctr.log), and reading the log across them."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from dockyard.containers.logrotate import rotate_nowait, rotated_files
from dockyard.containers.logs import read_log


def conmon_starts_over(log: Path, lines: list[str]) -> None:
    tmp = log.with_name(log.name + ".tmp")
    tmp.write_text("".join(f"2026-01-01T00:00:00.{i:09d}Z stdout F {t}\n" for i, t in enumerate(lines)))
    os.rename(tmp, log)


def read(log: Path, tail: int | None = None) -> list[str]:
    async def main() -> list[str]:
        out = []
        async for batch in read_log(log, tail=tail):
            out += [e.data.decode().strip() for e in batch]
        return out

    return asyncio.run(main())


def test_rotation_keeps_max_files(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    conmon_starts_over(log, ["a0", "a1"])
    assert not rotate_nowait(log, 3)  # pins the current file
    for prefix in "bcd":
        conmon_starts_over(log, [f"{prefix}0", f"{prefix}1"])
        assert rotate_nowait(log, 3)
        assert not rotate_nowait(log, 3)
    assert [p.name for p in rotated_files(log)] == ["ctr.log.2", "ctr.log.1"]
    assert read(log) == ["b0", "b1", "c0", "c1", "d0", "d1"]
    assert read(log, tail=3) == ["c1", "d0", "d1"]
    assert read(log, tail=2) == ["d0", "d1"]
    assert read(log, tail=0) == []
    assert read(log, tail=100) == ["b0", "b1", "c0", "c1", "d0", "d1"]


def test_two_files(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    conmon_starts_over(log, ["a"])
    rotate_nowait(log, 2)
    conmon_starts_over(log, ["b"])
    rotate_nowait(log, 2)
    conmon_starts_over(log, ["c"])
    rotate_nowait(log, 2)
    assert read(log) == ["b", "c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ctr.log", "ctr.log.1", "ctr.log.cur"]
