"""Concurrent transfers that report progress: pull's downloads and push's uploads."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Iterable
from typing import Any, TypeVar

M = TypeVar("M")


async def run_reporting(
    jobs: Iterable[Coroutine[Any, Any, None]], queue: asyncio.Queue[M]
) -> AsyncIterator[M]:
    """Runs the jobs concurrently and yields the messages they put on `queue` as they come;
    once all have ended, raises the first job's error. Closing the iterator cancels them."""
    done: Any = object()  # the end marker, put on the queue after the last job
    errors: list[BaseException] = []

    async def run_all() -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                for job in jobs:
                    tg.create_task(job)
        except BaseExceptionGroup as eg:
            errors.extend(eg.exceptions)
        finally:
            await queue.put(done)

    runner = asyncio.ensure_future(run_all())
    try:
        while (msg := await queue.get()) is not done:
            yield msg
    finally:
        if not runner.done():
            runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    if errors:
        raise errors[0]
