"""Which executor runs each Dockerfile instruction.

Owns the table from instruction to executor (metadata steps in `metadata.py`, RUN in
`runstep.py`, WORKDIR/COPY/ADD in `filesteps.py`) and nothing else; the parser has
already refused unknown instructions.
"""

from __future__ import annotations

from dockyard.build import filesteps, metadata, runstep
from dockyard.build.dockerfile import Instruction
from dockyard.build.imageconfig import StageState
from dockyard.build.session import BuildSession, Executor

__all__ = ["run_step"]

_EXECUTORS: dict[str, Executor] = {**metadata.EXECUTORS, **runstep.EXECUTORS, **filesteps.EXECUTORS}


async def run_step(b: BuildSession, s: StageState, ins: Instruction) -> None:
    await _EXECUTORS[ins.cmd](b, s, ins)
