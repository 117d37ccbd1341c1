"""The import contracts hold (import-linter, contracts in pyproject.toml's
[tool.importlinter]): nothing imports upward, api/ touches no system, the registry server
runs alone, clients never import daemon code, and no module cycle hides in a function body.

A known breach is an `ignore_imports` entry with a comment naming its issue; an entry that
no longer matches an import fails here too, so a fixed breach must also lose its entry.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def test_import_contracts_are_kept() -> None:
    assert LINT_IMPORTS.exists(), f"{LINT_IMPORTS} is missing: pip install -e '.[test]'"
    # the checkout under test, not whatever `dockyard` the virtualenv has installed
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout
