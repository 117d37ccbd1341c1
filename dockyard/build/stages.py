"""The stage graph of one build: which stages run, in what order, numbered how.

Owns the choice of stages (only those the target needs: its base and `COPY --from`
stages, transitively), their step numbers (dockerd counts the ARGs before the first FROM
as steps; only built stages are counted), running independent stages concurrently (a
stage waits for the stages it uses), a stage's start (its base: another stage, scratch,
or an image pulled if missing; ONBUILD triggers), and the clean-up at the end: images
the build made that are neither tagged nor anyone's parent are deleted, so a build leaves
no dangling image but the one it produced (their layers stay pinned by the cache).
"""

from __future__ import annotations

import asyncio
import json
import logging

from dockyard import errdefs
from dockyard.build import progress
from dockyard.build.dockerfile import Instruction, Stage, expand, parse
from dockyard.build.imageconfig import StageState, begin_stage, scratch_config
from dockyard.build.model import BuildError
from dockyard.build.session import BuildSession
from dockyard.build.steps import run_step

__all__ = ["StageGraph"]

log = logging.getLogger(__name__)

# Docker's predefined ARGs: usable with --build-arg without an ARG line, never reported unused
_PREDEFINED = {
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
}  # fmt: skip


class StageGraph:
    """Flow::

        graph = StageGraph(session)          # target chosen, stages numbered (BuildError if no target)
        image_id = await graph.execute()     # the target's image
        await graph.cleanup()                # always, also after a failure
    """

    def __init__(self, b: BuildSession) -> None:
        self.b = b
        df, opts = b.df, b.opts
        self.final = ""
        if opts.target:
            idx = df.stage_index(opts.target)
            if idx is None:
                raise BuildError(f"failed to reach build target {opts.target} in Dockerfile")
        else:
            idx = len(df.stages) - 1
        self.target = idx
        for k, v in sorted(opts.labels.items()):  # dockerd: a LABEL step per --label, on the target
            df.stages[idx].instructions.append(
                Instruction("LABEL", 0, f"LABEL {k}={v}", (k, v), literal=True)
            )
        self.needed = self._needed(idx)
        self.steps: dict[tuple[int, int], int] = {}
        n = len(df.meta_args)  # dockerd numbers the ARGs before the first FROM as steps
        for st in df.stages:
            if st.index not in self.needed:
                continue
            n += 1
            self.steps[(st.index, -1)] = n
            for i in range(len(st.instructions)):
                n += 1
                self.steps[(st.index, i)] = n
        self.total = n

    def _needed(self, target: int) -> set[int]:
        b, df = self.b, self.b.df
        need: set[int] = set()
        todo = [target]
        while todo:
            i = todo.pop()
            if i in need:
                continue
            need.add(i)
            st = df.stages[i]
            base = expand(st.base, b.meta_env(), df.escape, st.line)
            dep = b.stage_ref(base, i)
            if dep is not None:
                todo.append(dep)
            for ins in st.instructions:
                src = ins.flag("from")
                if ins.cmd == "COPY" and src:
                    dep = b.stage_ref(expand(src, b.meta_env(), df.escape, ins.line), i)
                    if dep is not None:
                        todo.append(dep)
        return need

    async def execute(self) -> str:
        b = self.b
        for n, ins in enumerate(b.df.meta_args, 1):
            await b.emit(progress.StepStarted(n, self.total, ins.original))
        loop = asyncio.get_running_loop()
        for i in self.needed:
            b.results[i] = loop.create_future()
        try:
            async with asyncio.TaskGroup() as tg:
                for i in sorted(self.needed):
                    tg.create_task(self._stage_task(i))
        except BaseExceptionGroup as group:
            raise _first(group) from None
        self.final = b.results[self.target].result()
        unused = sorted(k for k in b.opts.buildargs if k not in b.used_args and k not in _PREDEFINED)
        if unused:
            await b.emit(progress.UnusedBuildArgs(tuple(unused)))
        return self.final

    async def _stage_task(self, i: int) -> None:
        fut = self.b.results[i]
        try:
            fut.set_result(await self._run_stage(self.b.df.stages[i]))
        except BaseException as err:
            if not fut.done():
                fut.set_exception(err if isinstance(err, Exception) else asyncio.CancelledError())
                fut.exception()  # retrieved: other stages may never await it
            raise

    async def _run_stage(self, st: Stage) -> str:
        b = self.b
        base = expand(st.base, b.meta_env(), b.df.escape, st.line)
        s = StageState(st)
        dep = b.stage_ref(base, st.index)
        if dep is not None:
            s.image_id = await b.stage_image(dep)
        await b.emit(progress.StepStarted(self.steps[(st.index, -1)], self.total, st.original))
        if dep is not None:
            pass
        elif base.lower() == "scratch":
            s.image_id = ""
        else:
            if not base:
                raise BuildError("base name (" + st.base + ") should not be blank")
            s.image_id = await b.image(base, always_pull=b.opts.pull)
        if s.image_id:
            img = b.svc.images.get(s.image_id)
            if img is None:
                raise errdefs.NotFound(f"No such image: {s.image_id}")
            s.cfg = json.loads(img.config_bytes)
            await b.emit(progress.StepImage(s.image_id))
        else:
            s.cfg = scratch_config(b.opts.platform)
        triggers = begin_stage(s)
        if triggers:
            await b.emit(progress.TriggersRunning(len(triggers)))
            for t in triggers:
                await run_step(b, s, parse(f"FROM scratch\n{t}\n").stages[0].instructions[0])
        for i, ins in enumerate(st.instructions):
            await b.emit(progress.StepStarted(self.steps[(st.index, i)], self.total, ins.original))
            await run_step(b, s, ins)
        if not s.image_id:
            s.image_id = await b.commit(s, "", None)
        return s.image_id

    async def cleanup(self) -> None:
        """Delete images this build made that ended up untagged and childless."""
        images = self.b.svc.images
        keep = {self.final} if self.final else set()
        changed = True
        while changed:
            changed = False
            parents = images.parent_ids()
            for image_id in reversed(self.b.made):
                if image_id in keep or image_id in parents:
                    continue
                img = images.get(image_id)
                if img is None or img.repo_tags or img.repo_digests:
                    continue
                try:
                    await images.delete(image_id.removeprefix("sha256:"), force=False, noprune=True)
                    changed = True
                except errdefs.DockyardError as err:
                    log.debug("build clean-up kept %s: %s", image_id, err)


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The failure to report: a stage's own error rather than another stage's cancellation."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]
