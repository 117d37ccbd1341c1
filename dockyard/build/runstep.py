"""The executor of RUN: the step's container spec, its cache key, and its commit.

Owns what a RUN step is made of (the command in its shell or exec form, heredocs, the
build args in effect, the history comment dockerd writes, the `RunSpec` of its container)
and when its container is removed (`rm`, `forcerm`). Running the container is the step
runner's (`runner.py`).
"""

from __future__ import annotations

import json
import re

from dockyard.build import progress
from dockyard.build.cache import cache_key
from dockyard.build.cachelookup import cached
from dockyard.build.dockerfile import Instruction
from dockyard.build.imageconfig import StageState
from dockyard.build.model import BuildError, RunSpec
from dockyard.build.session import BuildSession, Executor

__all__ = ["EXECUTORS", "do_run"]


def _command(s: StageState, ins: Instruction) -> tuple[list[str], list[str]]:
    """(argv, shell): the exec form's words (no shell), or the stage's shell and the script."""
    if ins.json:
        return list(ins.args), []
    text = ins.args[0]
    if ins.heredocs:
        if len(ins.heredocs) == 1 and re.fullmatch(r"<<-?\s*['\"]?\w+['\"]?", text.strip()):
            text = ins.heredocs[0].content
        else:
            text = text + "\n" + "".join(h.content + h.name + "\n" for h in ins.heredocs)
    return [*s.shell, text], s.shell


async def do_run(b: BuildSession, s: StageState, ins: Instruction) -> None:
    cmd, shell = _command(s, ins)
    args = s.run_args()
    created_by = (f"|{len(args)} {' '.join(args)} " if args else "") + " ".join(cmd)
    key = cache_key(s.image_id, created_by, extra=json.dumps(s.config.get("Env") or []))
    if await cached(b, s, key, created_by):
        return
    if not s.image_id:
        await b.base_image(s)
    o = b.opts
    spec = RunSpec(
        image=s.image_id,
        argv=tuple(cmd),
        shell=tuple(shell),
        env=(*(s.config.get("Env") or []), *args),
        user=s.config.get("User") or "",
        workdir=s.config.get("WorkingDir") or "",
        network_mode=o.run_network(),
        extra_hosts=tuple(o.extrahosts),
        resources=o.resources(),
    )
    remove = o.rm or o.forcerm
    runner = b.svc.runner
    async with runner.container(spec, remove=remove) as cid:
        await b.emit(progress.RunStarted(cid))
        code = await runner.run(cid, b.output)
        if code != 0:
            raise BuildError(f"The command '{' '.join(cmd)}' returned a non-zero code: {code}", code)
        before = s.layers
        await b.commit(s, created_by, b.svc.images.upper_dir(cid))
        b.record(key, s, created_by=created_by, layers_before=before)
    if remove:
        await b.emit(progress.ContainerRemoved(cid))
    await b.emit(progress.StepImage(s.image_id))


EXECUTORS: dict[str, Executor] = {"RUN": do_run}
