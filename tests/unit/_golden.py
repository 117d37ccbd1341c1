"""Golden files for the pure planners' output (tests/unit/golden/).

`check(name, text)` compares a planner's output with its golden file and fails on any
change, so a change of an nft plan, an IPAM decision, a stream frame or an error body is
always a visible diff in review. `UPDATE_GOLDEN=1` rewrites the files instead (then read
the diff before committing it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"


def updating() -> bool:
    return os.environ.get("UPDATE_GOLDEN") == "1"


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if updating():
        path.write_text(text)
        return
    assert path.exists(), f"no golden file {path}: run with UPDATE_GOLDEN=1 and review it"
    want = path.read_text()
    assert text == want, f"{name} changed (UPDATE_GOLDEN=1 rewrites it after review)"


def check_json(name: str, value: object) -> None:
    check(name, json.dumps(value, indent=2, sort_keys=True) + "\n")
