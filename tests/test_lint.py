"""ruff finds nothing in dockyard/ and tests/ with the rule set of pyproject.toml
([tool.ruff.lint]; the ruff version is pinned in the test extras)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

RUFF = Path(sys.executable).parent / "ruff"


def test_ruff_check_finds_nothing() -> None:
    assert RUFF.exists(), f"{RUFF} is missing: pip install -e '.[test]'"
    res = subprocess.run(
        [str(RUFF), "check", "--no-cache", "--output-format", "concise", "dockyard", "tests"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
