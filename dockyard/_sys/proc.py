"""Every child process the daemon runs goes through here.

argv lists only, never a shell; stdin is empty unless given; a timeout is required; on
cancellation the child gets SIGTERM, then SIGKILL after a grace period; stderr is captured
into the raised error.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
from dataclasses import dataclass

from dockyard.errdefs import Internal

log = logging.getLogger(__name__)


class ProcessFailed(Internal):
    def __init__(self, argv: list[str], returncode: int, stderr: bytes) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
        text = stderr.decode(errors="replace").strip().splitlines()
        detail = text[-1] if text else f"exit status {returncode}"
        super().__init__(f"{argv[0]} {argv[1] if len(argv) > 1 else ''}: {detail}".strip())


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: bytes


async def run(
    argv: list[str],
    *,
    timeout: float,
    stdin: bytes = b"",
    check: bool = True,
    pass_fds: tuple[int, ...] = (),
    env: dict[str, str] | None = None,
) -> Completed:
    log.debug("run %s", argv)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=pass_fds,
        env=env,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate(stdin)
    except (asyncio.CancelledError, TimeoutError):
        await _terminate(proc)
        raise
    assert proc.returncode is not None
    if check and proc.returncode != 0:
        raise ProcessFailed(argv, proc.returncode, err)
    return Completed(proc.returncode, out, err)


async def _terminate(proc: asyncio.subprocess.Process, grace: float = 2.0) -> None:
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(grace):
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
