"""The package type-checks under `mypy --strict` (settings in pyproject.toml): a change
that breaks a signature somewhere fails here, not in production."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_mypy_strict_finds_nothing() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "mypy", "dockyard"], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-2000:]
