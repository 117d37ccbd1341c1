"""A thin driver for any runc-compatible OCI runtime CLI.

It runs the runtime's verbs (start, kill, delete, pause, resume, state, update, exec) on a
bundle that already exists and decides nothing about container states. Failures become
`RuntimeFailed` (an Internal error) carrying argv, exit code and stderr.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from dockyard._sys import proc
from dockyard.errdefs import Internal

log = logging.getLogger(__name__)


class RuntimeFailed(Internal):
    pass


class OCIRuntime:
    def __init__(self, binary: str, root: Path) -> None:
        self.binary = binary
        self.root = root  # the runtime's state directory (--root)

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    async def _run(self, *args: str, timeout: float = 30, stdin: bytes = b"") -> bytes:
        try:
            res = await proc.run(self.argv(*args), timeout=timeout, stdin=stdin)
        except proc.ProcessFailed as err:
            msg = err.stderr.decode(errors="replace").strip()
            raise RuntimeFailed(f"{Path(self.binary).name} {args[0]} failed: {msg}") from err
        return res.stdout

    async def start(self, cid: str) -> None:
        await self._run("start", cid)

    async def kill(self, cid: str, signal: int, *, all: bool = False) -> None:
        await self._run("kill", *(["--all"] if all else []), cid, str(signal))

    async def delete(self, cid: str) -> None:
        await self._run("delete", "--force", cid)

    async def pause(self, cid: str) -> None:
        await self._run("pause", cid)

    async def resume(self, cid: str) -> None:
        await self._run("resume", cid)

    async def state(self, cid: str) -> dict[str, Any] | None:
        try:
            out = await self._run("state", cid)
        except RuntimeFailed:
            return None
        return json.loads(out)

    async def update(self, cid: str, resources: dict[str, Any]) -> None:
        await self._run("update", "--resources", "-", cid, stdin=json.dumps(resources).encode())

    async def ps(self, cid: str) -> list[int]:
        out = await self._run("ps", "--format", "json", cid)
        return list(json.loads(out) or [])
