"""Service and task logs across nodes.

Owns reading a task's log wherever its container runs: a task on this node is read from
its container's log file; a task on another node is asked of that node's endpoint
(`GET https://<addr>:2377/logs/<task>`, mutual TLS with this node's certificate: only a
node of the cluster may read them). Both give Docker's multiplexed frames; lines carry
the task's swarm labels as "details" when asked.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from dockyard.cluster import ca
from dockyard.containers.logs import STDERR, STDOUT, read_log

log = logging.getLogger(__name__)

LOG_PORT = 2377


@dataclass(frozen=True)
class LogQuery:
    stdout: bool = True
    stderr: bool = True
    details: bool = False
    timestamps: bool = False
    tail: int | None = None

    def params(self) -> dict[str, str]:
        return {"stdout": str(int(self.stdout)), "stderr": str(int(self.stderr)), "details": str(int(self.details)),
                "timestamps": str(int(self.timestamps)), "tail": "all" if self.tail is None else str(self.tail)}  # fmt: skip

    @classmethod
    def from_params(cls, q: Any) -> LogQuery:
        tail = q.get("tail", "all")
        return cls(q.get("stdout") == "1", q.get("stderr") == "1", q.get("details") == "1", q.get("timestamps") == "1",
                   None if tail in ("all", "") or not tail.lstrip("-").isdigit() else int(tail))  # fmt: skip


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


async def local_frames(
    task: dict[str, Any], node_id: str, log_path: str, q: LogQuery
) -> AsyncIterator[bytes]:
    prefix = (f"com.docker.swarm.node.id={node_id},com.docker.swarm.service.id={task['ServiceID']},"
              f"com.docker.swarm.task.id={task['ID']} ").encode() if q.details else b""  # fmt: skip
    async for batch in read_log(Path(log_path), tail=q.tail):
        out = bytearray()
        for e in batch:
            if (e.stream == STDOUT and not q.stdout) or (e.stream == STDERR and not q.stderr):
                continue
            ts = e.timestamp.replace(b"+00:00", b"Z") + b" " if q.timestamps else b""
            out += frame(e.stream, ts + prefix + e.data)
        if out:
            yield bytes(out)


async def remote_frames(files: ca.NodeFiles, addr: str, task_id: str, q: LogQuery) -> AsyncIterator[bytes]:
    ctx = ca.client_context(files)
    url = f"https://{addr}:{LOG_PORT}/logs/{task_id}"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http,
            http.get(url, params=q.params(), ssl=ctx) as resp,
        ):
            if resp.status != 200:
                log.warning("logs of task %s on %s: status %d", task_id, addr, resp.status)
                return
            async for chunk in resp.content.iter_any():
                yield chunk
    except (aiohttp.ClientError, OSError, TimeoutError) as err:
        # a node that is down cannot give its logs; the others' still come
        log.info("logs of task %s on %s: %s", task_id, addr, err)
