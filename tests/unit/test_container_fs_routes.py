"""The file-system and process routes in process, over a fake container service."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import tarfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from dockyard import errdefs
from dockyard.api import keys
from dockyard.api.app import create_app
from dockyard.api.routes import container_fs


class FakeContainers:
    id_mapping = None  # no --userns-remap

    def __init__(self, root: Path, running: bool = False) -> None:
        self.rootfs = root / "rootfs"
        (self.rootfs / "etc").mkdir(parents=True)
        (self.rootfs / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
        self.root = root
        self.rec: dict[str, Any] = {
            "Id": "c" * 64, "Name": "/web", "Mounts": [], "Config": {}, "HostConfig": {},
            "State": {"Running": running, "Pid": 0},
        }  # fmt: skip

    def get(self, ref: str) -> dict[str, Any]:
        if ref not in ("web", "c" * 64):
            raise errdefs.NotFound(f"No such container: {ref}")
        return self.rec

    def bundle(self, cid: str) -> Path:
        return self.root / "bundle"

    def publish(self, rec: dict[str, Any], action: str, **attrs: str) -> None:
        pass

    @contextlib.asynccontextmanager
    async def rootfs_mounted(
        self, ref: str, *, announce_volumes: bool = False
    ) -> AsyncIterator[tuple[dict[str, Any], Path]]:
        yield self.get(ref), self.rootfs


class FakeImages:
    def changes(self, cid: str) -> list[dict[str, Any]]:
        return [{"Path": "/etc", "Kind": 0}]


Body = Callable[[TestClient], Awaitable[None]]


@pytest.fixture
def run(tmp_path: Path) -> Callable[[Body], None]:
    """run(body): body(client) against a fresh app, on a fresh loop (no async plugin needed)."""

    def runner(body: Body) -> None:
        async def main() -> None:
            services = {keys.CONTAINERS: FakeContainers(tmp_path), keys.IMAGES: FakeImages()}
            app = create_app(services, [container_fs.routes])
            async with TestClient(TestServer(app)) as client:
                await body(client)

        asyncio.run(main())

    return runner


def test_archive_head_get_put(run: Callable[[Body], None]) -> None:
    run(_archive_head_get_put)


async def _archive_head_get_put(client: TestClient) -> None:
    r = await client.head("/v1.47/containers/web/archive", params={"path": "/etc/passwd"})
    assert r.status == 200
    stat = json.loads(base64.b64decode(r.headers["X-Docker-Container-Path-Stat"]))
    assert stat["name"] == "passwd" and stat["size"] == 26
    r = await client.get("/containers/web/archive", params={"path": "/etc"})
    assert r.status == 200 and r.headers["Content-Type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(await r.read())) as tf:
        assert "etc/passwd" in tf.getnames()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("new")
        ti.size = 2
        tf.addfile(ti, io.BytesIO(b"hi"))
    r = await client.put("/containers/web/archive", params={"path": "/etc"}, data=buf.getvalue())
    assert r.status == 200
    r = await client.get("/containers/web/archive", params={"path": "/etc/new"})
    with tarfile.open(fileobj=io.BytesIO(await r.read())) as tf:
        assert tf.extractfile("new").read() == b"hi"  # type: ignore[union-attr]


def test_archive_errors(run: Callable[[Body], None]) -> None:
    run(_archive_errors)


async def _archive_errors(client: TestClient) -> None:
    r = await client.get("/containers/web/archive", params={"path": "/nope"})
    assert (r.status, (await r.json())["message"]) == (404, "Could not find the file /nope in container web")
    r = await client.get("/containers/web/archive")
    assert r.status == 400
    r = await client.put("/containers/web/archive", params={"path": "/etc/passwd"}, data=b"")
    assert (r.status, (await r.json())["message"]) == (400, "extraction point is not a directory")
    r = await client.get("/containers/nope/archive", params={"path": "/"})
    assert r.status == 404


def test_export_and_changes(run: Callable[[Body], None]) -> None:
    run(_export_and_changes)


async def _export_and_changes(client: TestClient) -> None:
    r = await client.get("/containers/web/export")
    with tarfile.open(fileobj=io.BytesIO(await r.read())) as tf:
        assert "etc/passwd" in tf.getnames()
    r = await client.get("/containers/web/changes")
    assert await r.json() == [{"Path": "/etc", "Kind": 0}]


def test_top_and_stats_when_stopped(run: Callable[[Body], None]) -> None:
    run(_top_and_stats_when_stopped)


async def _top_and_stats_when_stopped(client: TestClient) -> None:
    r = await client.get("/containers/web/top")
    assert (r.status, (await r.json())["message"]) == (409, f"Container {'c' * 64} is not running")
    r = await client.get("/containers/web/stats", params={"stream": "0"})
    body = await r.json()
    assert (body["name"], body["read"], body["memory_stats"]) == ("/web", "0001-01-01T00:00:00Z", {})
    r = await client.get("/containers/web/stats")  # a stream: one zeroed object, then the end
    lines = (await r.read()).splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["id"] == "c" * 64
    r = await client.get("/containers/web/stats", params={"stream": "1", "one-shot": "1"})
    assert r.status == 400
