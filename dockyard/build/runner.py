"""The RUN container runner: turns a `RunSpec` into a container of the container service,
runs it with its output streamed, and removes it.

Owns what every RUN container is besides its spec (Docker's create body: no entrypoint,
stdout and stderr attached, no labels, never a health probe) and the `build-runs/` marks:
one empty file per RUN container while its step runs, so that a daemon that dies mid-step
leaves a note for the next one to remove that container. It decides nothing about steps
and knows no image config; it talks to the container service only through `Containers`.

    <data-root>/build-runs/<container id>     a RUN step's container while it runs
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from dockyard import errdefs
from dockyard.build.model import RunSpec
from dockyard.build.ports import OutputSink

__all__ = ["ContainerStepRunner", "Containers"]

log = logging.getLogger(__name__)

_STDERR = 2  # Docker's stream number, as the attach connection reports it


class AttachStream(Protocol):
    async def recv(self) -> tuple[int, bytes] | None: ...
    def close(self) -> None: ...


class Containers(Protocol):
    """The container service, as the runner uses it."""

    async def create(self, body: dict[str, Any], name: str | None) -> tuple[str, list[str]]: ...
    async def open_attach(self, ref: str) -> tuple[dict[str, Any], AttachStream | None]: ...
    async def start_container(self, ref: str) -> None: ...
    async def wait(self, ref: str, condition: str = ...) -> dict[str, Any]: ...
    async def remove(self, ref: str, force: bool = ...) -> None: ...


class ContainerStepRunner:
    """The `StepRunner` over the container service. Flow::

        runner = ContainerStepRunner(containers, data_root / "build-runs")
        await runner.remove_interrupted()                 # daemon start
        async with runner.container(spec, remove=True) as cid:
        code = await runner.run(cid, sink)
    """

    def __init__(self, containers: Containers, marks: Path) -> None:
        self._containers = containers
        self._marks = marks
        # RUN containers of builds the previous daemon was running when it died
        self._interrupted = sorted(p.name for p in marks.iterdir()) if marks.is_dir() else []
        shutil.rmtree(marks, ignore_errors=True)
        marks.mkdir(mode=0o700, parents=True, exist_ok=True)

    async def remove_interrupted(self) -> None:
        """Daemon start: remove the RUN containers of builds cut short by the last daemon's
        end (a build does not outlive its request; its container would otherwise stay
        behind, adopted like any other)."""
        for cid in self._interrupted:
            try:
                await self._containers.remove(cid, force=True)
                log.info("removed the container %s of an interrupted build", cid[:12])
            except errdefs.NotFound:
                pass
            except errdefs.DockyardError as err:
                log.warning("could not remove the container %s of an interrupted build: %s", cid[:12], err)
        self._interrupted = []

    @contextlib.asynccontextmanager
    async def container(self, spec: RunSpec, *, remove: bool) -> AsyncIterator[str]:
        cid, _ = await self._containers.create(_create_body(spec), None)
        mark = self._marks / cid  # a daemon that dies mid-step leaves it for the next one
        mark.touch()
        try:
            yield cid
        finally:
            if remove:
                await asyncio.shield(self._remove(cid))
            mark.unlink(missing_ok=True)

    async def run(self, container_id: str, output: OutputSink) -> int:
        cid = container_id
        # attach before the start, so that no output is lost
        attach = asyncio.ensure_future(self._containers.open_attach(cid))
        await asyncio.sleep(0)
        try:
            await self._containers.start_container(cid)
        except BaseException:
            attach.cancel()
            with contextlib.suppress(BaseException):
                await attach
            raise
        _rec, conn = await attach
        if conn is not None:
            await _stream(conn, output)
        rec = await self._containers.wait(cid, "not-running")
        return int(rec["State"].get("ExitCode") or 0)

    async def _remove(self, cid: str) -> None:
        try:
            await self._containers.remove(cid, force=True)
        except errdefs.NotFound:
            pass
        except Exception:
            log.exception("removing build container %s", cid[:12])


async def _stream(conn: AttachStream, output: OutputSink) -> None:
    # one decoder a stream: a character split across chunks waits for its other bytes
    decoders = {n: codecs.getincrementaldecoder("utf-8")(errors="replace") for n in (1, _STDERR)}
    try:
        while (chunk := await conn.recv()) is not None:
            n = _STDERR if chunk[0] == _STDERR else 1
            text = decoders[n].decode(chunk[1])
            if text:
                await output(text, n == _STDERR)
        for n, decoder in decoders.items():
            tail = decoder.decode(b"", final=True)
            if tail:
                await output(tail, n == _STDERR)
    finally:
        conn.close()


def _create_body(spec: RunSpec) -> dict[str, Any]:
    """The container service's create request for a RUN step's container."""
    r = spec.resources
    host: dict[str, Any] = {"NetworkMode": spec.network_mode}
    if spec.extra_hosts:
        host["ExtraHosts"] = list(spec.extra_hosts)
    for key, val in (("ShmSize", r.shm_size), ("Memory", r.memory), ("MemorySwap", r.memory_swap),
                     ("CpuShares", r.cpu_shares), ("CpusetCpus", r.cpuset_cpus), ("CpuPeriod", r.cpu_period),
                     ("CpuQuota", r.cpu_quota)):  # fmt: skip
        if val:
            host[key] = val
    return {
        "Image": spec.image,
        "Cmd": list(spec.argv),
        "Entrypoint": [""],
        "Env": list(spec.env),
        "WorkingDir": spec.workdir,
        "User": spec.user,
        "AttachStdout": True,
        "AttachStderr": True,
        "Labels": {},
        "Healthcheck": {"Test": ["NONE"]},  # a RUN step is no service: never probe it
        "HostConfig": host,
    }
