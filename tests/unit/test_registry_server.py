"""Our registry server in process, request by request, written from the distribution spec's text.

Also drives the daemon's registry client against it (Bearer tokens from our token endpoint,
Basic auth, chunked uploads, mounts), so both sides of the protocol are checked together.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from dockyard.registry import spec
from dockyard.registry.client import AuthConfig, RegistryClient, Unauthorized
from dockyard.registry.server import FilesystemStorage, Htpasswd, RegistryConfig, TokenIssuer, make_app

Run = Callable[[Callable[[TestClient], Awaitable[None]]], None]


def _digest(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


@pytest.fixture
def run(tmp_path: Path) -> Run:
    def go(body: Callable[[TestClient], Awaitable[None]], cfg: RegistryConfig | None = None) -> None:
        async def main() -> None:
            app = make_app(FilesystemStorage(tmp_path / "reg"), cfg)
            async with TestClient(TestServer(app)) as client:
                await body(client)

        asyncio.run(main())

    return go  # type: ignore[return-value]


async def _push_blob(c: TestClient, repo: str, data: bytes) -> str:
    d = _digest(data)
    r = await c.post(f"/v2/{repo}/blobs/uploads/?digest={d}", data=data)
    assert r.status == 201, await r.text()
    return d


async def _code(r: Any) -> str:
    return str((await r.json())["errors"][0]["code"])


def _manifest(config: str, layers: list[tuple[str, int]], **extra: Any) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": spec.MT_OCI_MANIFEST,
        "config": {"mediaType": spec.MT_OCI_CONFIG, "digest": config, "size": 2},
        "layers": [{"mediaType": spec.MT_OCI_LAYER, "digest": d, "size": s} for d, s in layers],
        **extra,
    }
    return json.dumps(doc).encode()


async def _image(c: TestClient, repo: str, tag: str, payload: bytes = b"layer") -> tuple[str, bytes]:
    cfg = await _push_blob(c, repo, b"{}")
    layer = await _push_blob(c, repo, payload)
    body = _manifest(cfg, [(layer, len(payload))])
    r = await c.put(f"/v2/{repo}/manifests/{tag}", data=body, headers={"Content-Type": spec.MT_OCI_MANIFEST})
    assert r.status == 201, await r.text()
    assert r.headers["Docker-Content-Digest"] == _digest(body)
    return _digest(body), body


def test_version_check(run: Run) -> None:
    async def body(c: TestClient) -> None:
        r = await c.get("/v2/")
        assert r.status == 200
        assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"

    run(body)


def test_monolithic_post_put_and_get_with_range(run: Run) -> None:
    async def body(c: TestClient) -> None:
        data = b"0123456789"
        d = _digest(data)
        r = await c.post("/v2/a/b/blobs/uploads/")
        assert r.status == 202 and r.headers["Location"].startswith("/v2/a/b/blobs/uploads/")
        r = await c.put(
            r.headers["Location"] + f"?digest={d}",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert r.status == 201 and r.headers["Docker-Content-Digest"] == d
        assert r.headers["Location"] == f"/v2/a/b/blobs/{d}"
        r = await c.head(f"/v2/a/b/blobs/{d}")
        assert r.status == 200 and r.headers["Content-Length"] == "10"
        r = await c.get(f"/v2/a/b/blobs/{d}", headers={"Range": "bytes=2-4"})
        assert r.status == 206 and await r.read() == b"234"
        assert r.headers["Content-Range"] == "bytes 2-4/10"
        r = await c.get(f"/v2/a/b/blobs/{d}", headers={"Range": "bytes=20-"})
        assert r.status == 416
        # blobs are per repository: another repository does not see it
        r = await c.head(f"/v2/other/blobs/{d}")
        assert r.status == 404

    run(body)


def test_chunked_upload_status_and_out_of_order(run: Run) -> None:
    async def body(c: TestClient) -> None:
        data = b"a" * 100 + b"b" * 50
        r = await c.post("/v2/x/blobs/uploads/")
        loc = r.headers["Location"]
        r = await c.patch(
            loc,
            data=data[:100],
            headers={"Content-Range": "0-99", "Content-Type": "application/octet-stream"},
        )
        assert r.status == 202 and r.headers["Range"] == "0-99"
        loc = r.headers["Location"]
        r = await c.get(loc)
        assert r.status == 204 and r.headers["Range"] == "0-99"
        r = await c.patch(loc, data=data[:10], headers={"Content-Range": "200-209"})
        assert r.status == 416
        r = await c.patch(loc, data=data[100:], headers={"Content-Range": "100-149"})
        assert r.status == 202 and r.headers["Range"] == "0-149"
        r = await c.put(loc + f"?digest={_digest(data)}")
        assert r.status == 201
        r = await c.get(f"/v2/x/blobs/{_digest(data)}")
        assert await r.read() == data
        r = await c.get(loc)  # the session is gone once closed
        assert r.status == 404 and await _code(r) == "BLOB_UPLOAD_UNKNOWN"

    run(body)


def test_last_chunk_in_put_and_cancel(run: Run) -> None:
    async def body(c: TestClient) -> None:
        r = await c.post("/v2/x/blobs/uploads/")
        loc = r.headers["Location"]
        await c.patch(loc, data=b"abc", headers={"Content-Range": "0-2"})
        r = await c.put(loc + f"?digest={_digest(b'abcdef')}", data=b"def", headers={"Content-Range": "3-5"})
        assert r.status == 201
        r = await c.post("/v2/x/blobs/uploads/")
        loc = r.headers["Location"]
        r = await c.delete(loc)
        assert r.status == 204
        r = await c.patch(loc, data=b"x")
        assert r.status == 404 and await _code(r) == "BLOB_UPLOAD_UNKNOWN"

    run(body)


def test_bad_digest_and_unknown_blob(run: Run) -> None:
    async def body(c: TestClient) -> None:
        r = await c.post(f"/v2/x/blobs/uploads/?digest={_digest(b'other')}", data=b"content")
        assert r.status == 400 and await _code(r) == "DIGEST_INVALID"
        r = await c.get(f"/v2/x/blobs/{_digest(b'content')}")  # nothing was stored
        assert r.status == 404 and await _code(r) == "BLOB_UNKNOWN"
        r = await c.get("/v2/x/blobs/sha256:nothex")
        assert r.status == 400 and await _code(r) == "DIGEST_INVALID"
        r = await c.get("/v2/UPPER/tags/list")
        assert r.status == 400 and await _code(r) == "NAME_INVALID"

    run(body)


def test_blob_delete(run: Run) -> None:
    async def body(c: TestClient) -> None:
        d = await _push_blob(c, "x", b"bye")
        r = await c.delete(f"/v2/x/blobs/{d}")
        assert r.status == 202
        r = await c.head(f"/v2/x/blobs/{d}")
        assert r.status == 404
        r = await c.delete(f"/v2/x/blobs/{d}")
        assert r.status == 404 and await _code(r) == "BLOB_UNKNOWN"

    run(body)


def test_cross_repo_mount(run: Run) -> None:
    async def body(c: TestClient) -> None:
        d = await _push_blob(c, "src", b"shared")
        r = await c.post(f"/v2/dst/blobs/uploads/?mount={d}&from=src")
        assert r.status == 201 and r.headers["Docker-Content-Digest"] == d
        assert (await c.head(f"/v2/dst/blobs/{d}")).status == 200
        # a source without the blob: an upload session is opened instead (202)
        r = await c.post(f"/v2/dst2/blobs/uploads/?mount={_digest(b'missing')}&from=src")
        assert r.status == 202 and "Location" in r.headers

    run(body)


def test_manifests_by_tag_and_digest(run: Run) -> None:
    async def body(c: TestClient) -> None:
        digest, raw = await _image(c, "app", "v1")
        for ref in ("v1", digest):
            r = await c.get(f"/v2/app/manifests/{ref}", headers={"Accept": spec.MT_OCI_MANIFEST})
            assert r.status == 200 and await r.read() == raw
            assert r.headers["Docker-Content-Digest"] == digest
            assert r.headers["Content-Type"] == spec.MT_OCI_MANIFEST
            r = await c.head(f"/v2/app/manifests/{ref}")
            assert r.status == 200 and r.headers["Content-Length"] == str(len(raw))
        r = await c.get("/v2/app/manifests/nope")
        assert r.status == 404 and await _code(r) == "MANIFEST_UNKNOWN"
        r = await c.get("/v2/never/manifests/v1")
        assert r.status == 404 and await _code(r) == "NAME_UNKNOWN"
        # delete by tag removes only the tag; by digest the manifest
        assert (await c.delete("/v2/app/manifests/v1")).status == 202
        assert (await c.get(f"/v2/app/manifests/{digest}")).status == 200
        assert (await c.delete(f"/v2/app/manifests/{digest}")).status == 202
        r = await c.get(f"/v2/app/manifests/{digest}")
        assert r.status == 404 and await _code(r) == "MANIFEST_UNKNOWN"

    run(body)


def test_manifest_errors(run: Run) -> None:
    async def body(c: TestClient) -> None:
        cfg = await _push_blob(c, "m", b"{}")
        missing = _digest(b"never pushed")
        raw = _manifest(cfg, [(missing, 12)])
        r = await c.put("/v2/m/manifests/v1", data=raw, headers={"Content-Type": spec.MT_OCI_MANIFEST})
        assert r.status == 400 and await _code(r) == "MANIFEST_BLOB_UNKNOWN"
        assert (await c.get("/v2/m/manifests/v1")).status == 404  # nothing stored
        r = await c.put(
            "/v2/m/manifests/v1", data=b"{not json", headers={"Content-Type": spec.MT_OCI_MANIFEST}
        )
        assert r.status == 400 and await _code(r) == "MANIFEST_INVALID"
        r = await c.put(
            "/v2/m/manifests/v1",
            data=json.dumps({"schemaVersion": 1, "fsLayers": []}).encode(),
            headers={"Content-Type": spec.MT_SCHEMA1},
        )
        assert r.status == 400 and await _code(r) == "MANIFEST_INVALID"
        good = _manifest(cfg, [])
        r = await c.put(
            f"/v2/m/manifests/{_digest(b'x')}", data=good, headers={"Content-Type": spec.MT_OCI_MANIFEST}
        )
        assert r.status == 400 and await _code(r) == "DIGEST_INVALID"
        r = await c.put(
            f"/v2/m/manifests/{_digest(good)}", data=good, headers={"Content-Type": spec.MT_OCI_MANIFEST}
        )
        assert r.status == 201
        # an index may only reference manifests the repository has
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": spec.MT_OCI_INDEX,
                "manifests": [{"mediaType": spec.MT_OCI_MANIFEST, "digest": missing, "size": 1}],
            }
        )
        r = await c.put("/v2/m/manifests/multi", data=index, headers={"Content-Type": spec.MT_OCI_INDEX})
        assert r.status == 400 and await _code(r) == "MANIFEST_BLOB_UNKNOWN"

    run(body)


def test_tags_pagination_and_catalog(run: Run) -> None:
    async def body(c: TestClient) -> None:
        for t in ("c", "a", "b", "d"):
            await _image(c, "lib/t", t)
        r = await c.get("/v2/lib/t/tags/list")
        assert await r.json() == {"name": "lib/t", "tags": ["a", "b", "c", "d"]}
        r = await c.get("/v2/lib/t/tags/list?n=2")
        assert (await r.json())["tags"] == ["a", "b"]
        assert r.headers["Link"] == '</v2/lib/t/tags/list?n=2&last=b>; rel="next"'
        r = await c.get("/v2/lib/t/tags/list?n=2&last=b")
        assert (await r.json())["tags"] == ["c", "d"]
        r = await c.get("/v2/lib/t/tags/list?n=5&last=d")
        assert (await r.json())["tags"] == []
        r = await c.get("/v2/unknown/tags/list")
        assert r.status == 404 and await _code(r) == "NAME_UNKNOWN"
        r = await c.get("/v2/_catalog?n=10")
        assert (await r.json())["repositories"] == ["lib/t"]

    run(body)


def test_referrers(run: Run) -> None:
    async def body(c: TestClient) -> None:
        subject, subject_raw = await _image(c, "r", "v1")
        cfg = await _push_blob(c, "r", b"{}")
        art = _manifest(
            cfg,
            [],
            artifactType="application/x-sbom",
            subject={"mediaType": spec.MT_OCI_MANIFEST, "digest": subject, "size": len(subject_raw)},
        )
        r = await c.put(
            f"/v2/r/manifests/{_digest(art)}", data=art, headers={"Content-Type": spec.MT_OCI_MANIFEST}
        )
        assert r.status == 201 and r.headers["OCI-Subject"] == subject
        r = await c.get(f"/v2/r/referrers/{subject}")
        doc = await r.json(content_type=None)
        assert r.headers["Content-Type"] == spec.MT_OCI_INDEX
        assert [m["digest"] for m in doc["manifests"]] == [_digest(art)]
        assert doc["manifests"][0]["artifactType"] == "application/x-sbom"
        r = await c.get(f"/v2/r/referrers/{subject}?artifactType=application/other")
        assert (await r.json(content_type=None))["manifests"] == []
        assert r.headers["OCI-Filters-Applied"] == "artifactType"

    run(body)


def test_gc_removes_unreferenced_blobs(run: Run, tmp_path: Path) -> None:
    holder: dict[str, str] = {}

    async def body(c: TestClient) -> None:
        await _image(c, "g", "v1", payload=b"kept")
        holder["orphan"] = await _push_blob(c, "g", b"orphan")
        holder["kept"] = _digest(b"kept")

    run(body)
    removed = FilesystemStorage(tmp_path / "reg").gc()
    assert removed == [holder["orphan"]]
    blobs = {p.name for p in (tmp_path / "reg" / "blobs" / "sha256").iterdir()}
    assert holder["kept"].removeprefix("sha256:") in blobs


# -- auth, through the daemon's own client ------------------------------------------------------


def _users(tmp_path: Path) -> Htpasswd:
    return Htpasswd({"alice": Htpasswd.hash("s3cret")})


async def _client_roundtrip(base: str, auth: AuthConfig) -> None:
    data = b"layer bytes " * 1000
    d = _digest(data)
    async with RegistryClient("127.0.0.1", insecure=True, auth=auth, endpoint=base) as rc:
        await rc.login()
        assert not await rc.blob_exists("team/app", d)

        with tempfile.NamedTemporaryFile() as f:
            f.write(data)
            f.flush()
            await rc.upload_blob("team/app", d, Path(f.name), chunk_size=5000)
        assert await rc.blob_exists("team/app", d)
        assert await rc.mount_blob("team/other", d, "team/app")
        got = await rc.read_blob("team/other", d)
        assert got == data
        cfg = b"{}"
        with tempfile.NamedTemporaryFile() as f:
            f.write(cfg)
            f.flush()
            await rc.upload_blob("team/app", _digest(cfg), Path(f.name))
        raw = _manifest(_digest(cfg), [(d, len(data))])
        digest = await rc.put_manifest("team/app", "v1", raw, spec.MT_OCI_MANIFEST)
        m = await rc.get_manifest("team/app", "v1")
        assert m.digest == digest and m.body == raw


def _serve(cfg: RegistryConfig, tmp_path: Path, body: Callable[[str], Awaitable[None]]) -> None:
    async def main() -> None:
        server = TestServer(make_app(FilesystemStorage(tmp_path / "reg"), cfg), host="127.0.0.1")
        await server.start_server()
        try:
            await body(f"http://127.0.0.1:{server.port}")
        finally:
            await server.close()

    asyncio.run(main())


def test_bearer_token_flow(tmp_path: Path) -> None:
    cfg = RegistryConfig("token", _users(tmp_path), TokenIssuer.from_root(tmp_path))

    async def body(base: str) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as s:
            r = await s.get(base + "/v2/team/app/tags/list")
            assert r.status == 401
            (ch,) = spec.parse_challenges(r.headers["WWW-Authenticate"])
            assert ch.scheme == "bearer" and ch.params["realm"] == base + "/auth/token"
            assert ch.params["scope"] == "repository:team/app:pull"
            # anonymous tokens carry no access; wrong passwords get no token at all
            r = await s.get(ch.params["realm"], params={"scope": ch.params["scope"]})
            tok = (await r.json())["token"]
            r = await s.get(base + "/v2/team/app/tags/list", headers={"Authorization": f"Bearer {tok}"})
            assert r.status == 401
            bad = base64.b64encode(b"alice:wrong").decode()
            r = await s.get(ch.params["realm"], headers={"Authorization": f"Basic {bad}"})
            assert r.status == 401
        await _client_roundtrip(base, AuthConfig("alice", "s3cret"))
        async with RegistryClient(
            "127.0.0.1", insecure=True, auth=AuthConfig("alice", "nope"), endpoint=base
        ) as rc:
            with pytest.raises(Unauthorized):
                await rc.login()
        # docker's identity tokens: the OAuth2 refresh_token grant
        async with aiohttp.ClientSession() as s:
            r = await s.post(
                base + "/auth/token",
                data={"grant_type": "password", "username": "alice", "password": "s3cret", "service": "x"},
            )
            refresh = (await r.json())["refresh_token"]
        async with RegistryClient(
            "127.0.0.1", insecure=True, auth=AuthConfig(identity_token=refresh), endpoint=base
        ) as rc:
            m = await rc.get_manifest("team/app", "v1")
            assert m.media_type == spec.MT_OCI_MANIFEST

    _serve(cfg, tmp_path, body)


def test_htpasswd_basic_auth(tmp_path: Path) -> None:
    cfg = RegistryConfig("htpasswd", _users(tmp_path))

    async def body(base: str) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as s:
            r = await s.get(base + "/v2/")
            assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Basic ")
            assert await _code(r) == "UNAUTHORIZED"
        await _client_roundtrip(base, AuthConfig("alice", "s3cret"))
        async with RegistryClient(
            "127.0.0.1", insecure=True, auth=AuthConfig("alice", "x"), endpoint=base
        ) as rc:
            with pytest.raises(Unauthorized):
                await rc.login()

    _serve(cfg, tmp_path, body)


def test_client_verifies_blob_digest(tmp_path: Path) -> None:
    async def body(base: str) -> None:
        store = FilesystemStorage(tmp_path / "reg")
        d = _digest(b"good")
        async with RegistryClient("127.0.0.1", insecure=True, endpoint=base) as rc:
            with tempfile.NamedTemporaryFile() as f:
                f.write(b"good")
                f.flush()
                await rc.upload_blob("v/x", d, Path(f.name))
            # corrupt the stored blob behind the server's back
            (store.root / "blobs" / "sha256" / d.removeprefix("sha256:")).write_bytes(b"evil")
            from dockyard.registry.client import BlobDigestMismatch

            with pytest.raises(BlobDigestMismatch):
                await rc.read_blob("v/x", d)

    _serve(RegistryConfig(), tmp_path, body)


def test_oversized_manifest_and_unsupported_method(run: Run) -> None:
    async def body(c: TestClient) -> None:
        big = b"{" + b" " * (4 << 20) + b"}"
        r = await c.put("/v2/app/manifests/v1", data=big, headers={"Content-Type": spec.MT_OCI_MANIFEST})
        assert r.status == 413 and await _code(r) == "SIZE_INVALID"
        r = await c.get("/v2/app/manifests/v1")
        assert r.status == 404, "nothing was stored"
        r = await c.request("PATCH", "/v2/app/manifests/v1", data=b"{}")
        assert r.status == 405 and await _code(r) == "UNSUPPORTED"

    run(body)


def test_token_without_the_action_is_denied(tmp_path: Path) -> None:
    """A valid token that grants pull only: a push answers 403 DENIED (not a new challenge)."""
    issuer = TokenIssuer.from_root(tmp_path)
    cfg = RegistryConfig("token", _users(tmp_path), issuer)

    async def body(base: str) -> None:
        import aiohttp

        pull_only = issuer.issue("alice", [("repository", "team/app", {"pull"})], service="x")
        async with aiohttp.ClientSession() as s:
            headers = {"Authorization": f"Bearer {pull_only}"}
            r = await s.post(base + "/v2/team/app/blobs/uploads/", headers=headers)
            assert r.status == 403
            assert (await r.json())["errors"][0]["code"] == "DENIED"
            r = await s.get(base + "/v2/team/app/tags/list", headers=headers)
            assert r.status in (200, 404)  # allowed: pulling (the repository is just empty)

    _serve(cfg, tmp_path, body)
