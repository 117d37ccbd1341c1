"""A distribution-API client for one registry host: auth, manifests, blobs, uploads.

Owns the HTTP conversation with a registry: the `/v2/` ping that learns the auth scheme,
Bearer tokens per scope (cached until they expire) or Basic credentials, manifest fetch
with content negotiation, blob download streamed to a caller's sink with digest
verification, and pushes (HEAD → mount → POST/PUT). It does not know about images, layers
or the daemon's store; `images/pull.py` and `images/push.py` drive it.

A registry is not trusted: a manifest is read into memory only up to `spec.MAX_MANIFEST`
and a blob read whole (a config) only up to its cap, both checked against the declared
`Content-Length` first and against the bytes as they arrive (a chunked body has none); a
streamed blob stops at its descriptor's size. A digest is checked against the spec's
grammar before it becomes a URL here or a path in the daemon's blob store, and a
manifest's media type must be one this client knows.

Flow::

    async with RegistryClient("127.0.0.1:5000", insecure=True, auth=cfg) as rc:
        m = await rc.get_manifest("lib/bb", "latest")
        await rc.fetch_blob("lib/bb", digest, sink)          # sink(chunk) per chunk; verified at the end
        if not await rc.blob_exists("lib/bb2", digest): await rc.upload_blob("lib/bb2", digest, path)
        await rc.put_manifest("lib/bb2", "latest", body, media_type)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import ssl
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from dockyard import errdefs
from dockyard.registry import spec
from dockyard.registry.client.auth import AuthConfig, token_request

__all__ = ["Manifest", "RegistryClient", "RegistryRequestError", "Unauthorized"]

log = logging.getLogger(__name__)

ACCEPT = f"{spec.MT_DOCKER_MANIFEST}, {spec.MT_DOCKER_LIST}, {spec.MT_OCI_MANIFEST}, {spec.MT_OCI_INDEX}"
_CHUNK = 1 << 20


class Unauthorized(errdefs.PermissionDenied):
    """The registry refused the credentials (HTTP 401)."""


class RegistryRequestError(errdefs.DockyardError):
    """A registry answered with an error body; `code` is the first OCI error code."""

    def __init__(self, message: str, *, status: int, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ManifestUnknown(RegistryRequestError, errdefs.NotFound):
    pass


class BlobDigestMismatch(errdefs.InvalidArgument):
    pass


class ContentTooLarge(errdefs.InvalidArgument):
    """A registry sent (or announced) more bytes than the document may have."""


def _check_digest(digest: str, what: str) -> str:
    problem = spec.digest_problem(digest)
    if problem is not None:
        raise errdefs.InvalidArgument(f"{what}: {problem}")
    return digest


def _announced_too_large(r: aiohttp.ClientResponse, limit: int, what: str) -> None:
    if r.content_length is not None and r.content_length > limit:
        raise ContentTooLarge(f"{what} is too large: {r.content_length} bytes, the limit is {limit}")


async def _read_capped(r: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    """The body, refused as soon as it passes `limit` (a chunked body announces nothing)."""
    _announced_too_large(r, limit, what)
    out = bytearray()
    try:
        async for chunk in r.content.iter_chunked(1 << 16):
            out += chunk
            if len(out) > limit:
                raise ContentTooLarge(f"{what} is too large: more than {limit} bytes")
    except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as err:
        raise errdefs.Unavailable(f"reading {what} failed: {err}") from None
    return bytes(out)


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    body: bytes

    @property
    def doc(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


def _error_of(status: int, body: bytes) -> tuple[str, str]:
    try:
        errs = json.loads(body).get("errors") or []
        if errs:
            return str(errs[0].get("code", "")), str(errs[0].get("message", ""))
    except (ValueError, AttributeError):
        pass
    return "", body.decode(errors="replace")[:200]


class RegistryClient:
    def __init__(
        self,
        host: str,
        *,
        insecure: bool = False,
        auth: AuthConfig | None = None,
        endpoint: str | None = None,
        ca_file: str | None = None,
        verify: bool = True,
    ) -> None:
        """`host` is the reference's domain; `insecure` means plain HTTP; `endpoint` an
        explicit base URL (mirrors); `ca_file` the CA that signs the registry's certificate
        (instead of the system's); `verify=False` takes any certificate (dockerd's first
        try on an insecure registry)."""
        self.host = host
        self.auth = auth or AuthConfig()
        self.insecure = insecure
        self.ca_file = ca_file
        self.verify = verify
        if endpoint:
            self.base = endpoint.rstrip("/")
        else:
            api_host = "registry-1.docker.io" if host == "docker.io" else host
            self.base = ("http://" if insecure else "https://") + api_host
        self._session: aiohttp.ClientSession | None = None
        self._challenge: spec.Challenge | None = None
        self._pinged = False
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}

    def __repr__(self) -> str:
        return f"<RegistryClient {self.base}>"

    async def __aenter__(self) -> RegistryClient:
        timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_read=300)
        ssl_ctx: ssl.SSLContext | bool = (
            False if self.insecure or not self.verify else ssl.create_default_context(cafile=self.ca_file)
        )
        self._session = aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(ssl=ssl_ctx, limit=16), auto_decompress=False
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use `async with RegistryClient(...)`"
        return self._session

    # -- auth -----------------------------------------------------------------------------

    async def ping(self) -> None:
        """GET /v2/: learn the auth challenge (or that none is needed)."""
        try:
            async with self.session.get(self.base + "/v2/") as r:
                await r.read()
                self._pinged = True
                if r.status == 401:
                    self._challenge = _pick(r.headers.getall("WWW-Authenticate", []))
                elif r.status >= 400 and r.status != 404:
                    raise RegistryRequestError(
                        f"{self.base}/v2/ answered {r.status} {r.reason}", status=r.status
                    )
        except (TimeoutError, aiohttp.ClientConnectionError) as err:
            raise errdefs.Unavailable(f'Get "{self.base}/v2/": {err}') from None

    async def login(self) -> None:
        """Check the credentials: raise Unauthorized when the registry refuses them."""
        await self.ping()
        if self._challenge is None:
            return
        if self._challenge.scheme == "bearer":
            await self._token([])
        headers = await self._auth_headers([])
        async with self.session.get(self.base + "/v2/", headers=headers) as r:
            await r.read()
            if r.status == 401:
                raise Unauthorized(f"login attempt to {self.base}/v2/ failed with status: 401 Unauthorized")

    async def _token(self, scopes: list[str], *, refresh: bool = False) -> str:
        assert self._challenge is not None
        key = tuple(sorted(scopes))
        cached = self._tokens.get(key)
        if cached and not refresh and cached[1] > time.monotonic():
            return cached[0]
        realm = self._challenge.params.get("realm", "")
        if not realm:
            raise RegistryRequestError("bearer challenge without a realm", status=401)
        method, url, headers, body = token_request(
            realm, self._challenge.params.get("service"), scopes, self.auth
        )
        try:
            async with self.session.request(method, url, headers=headers, data=body) as r:
                data = await r.read()
                if r.status in (401, 403):
                    _, msg = _error_of(r.status, data)
                    raise Unauthorized(f"unauthorized: {msg or 'incorrect username or password'}")
                if r.status >= 400:
                    raise RegistryRequestError(
                        f"token request to {realm} failed: {r.status}", status=r.status
                    )
        except (TimeoutError, aiohttp.ClientConnectionError) as err:
            raise errdefs.Unavailable(f"token request to {realm} failed: {err}") from None
        doc = json.loads(data)
        token = str(doc.get("token") or doc.get("access_token") or "")
        ttl = float(doc.get("expires_in") or 60)
        self._tokens[key] = (token, time.monotonic() + max(ttl - 10, 5))
        return token

    async def _auth_headers(self, scopes: list[str], *, refresh: bool = False) -> dict[str, str]:
        if not self._pinged:
            await self.ping()
        ch = self._challenge
        if ch is None:
            return {}
        if ch.scheme == "basic":
            if not self.auth.username:
                return {}
            cred = base64.b64encode(f"{self.auth.username}:{self.auth.password}".encode()).decode()
            return {"Authorization": f"Basic {cred}"}
        if ch.scheme == "bearer":
            if self.auth.registry_token:
                return {"Authorization": f"Bearer {self.auth.registry_token}"}
            return {"Authorization": f"Bearer {await self._token(scopes, refresh=refresh)}"}
        return {}

    async def request(
        self,
        method: str,
        url: str,
        scopes: list[str],
        *,
        headers: dict[str, str] | None = None,
        data: Any = None,
        retry: bool = True,
    ) -> aiohttp.ClientResponse:
        """One request with auth; on a 401 the token is refreshed and a replayable request retried."""
        if url.startswith("/"):
            url = self.base + url
        h = {**(headers or {}), **await self._auth_headers(scopes)}
        try:
            r = await self.session.request(method, url, headers=h, data=data)
            if r.status == 401 and retry and (data is None or isinstance(data, bytes)):
                r.release()
                self._challenge = _pick(r.headers.getall("WWW-Authenticate", [])) or self._challenge
                h = {**(headers or {}), **await self._auth_headers(scopes, refresh=True)}
                r = await self.session.request(method, url, headers=h, data=data)
        except (TimeoutError, aiohttp.ClientConnectionError) as err:
            raise errdefs.Unavailable(f"{method} {url}: {err}") from None
        if r.status == 401:
            body = await r.read()
            _, msg = _error_of(r.status, body)
            raise Unauthorized(f"unauthorized: {msg or 'authentication required'}")
        return r

    async def _fail(self, r: aiohttp.ClientResponse, what: str) -> errdefs.DockyardError:
        body = await r.read()
        code, msg = _error_of(r.status, body)
        text = f"{what}: {msg}" if msg else f"{what}: {r.status} {r.reason}"
        if r.status == 403 or code == "DENIED":
            return errdefs.PermissionDenied(f"denied: {msg or 'requested access to the resource is denied'}")
        if r.status == 404 or code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN"):
            return ManifestUnknown(text, status=r.status, code=code)
        return RegistryRequestError(text, status=r.status, code=code)

    # -- pull side ------------------------------------------------------------------------

    @staticmethod
    def pull_scope(repo: str) -> list[str]:
        return [f"repository:{repo}:pull"]

    @staticmethod
    def push_scope(repo: str, *sources: str) -> list[str]:
        return [f"repository:{repo}:pull,push", *(f"repository:{s}:pull" for s in sources if s != repo)]

    async def get_manifest(self, repo: str, ref: str, *, scopes: list[str] | None = None) -> Manifest:
        if ":" in ref:
            _check_digest(ref, f"manifest reference for {repo}")
        elif not spec.is_tag(ref):
            raise errdefs.InvalidArgument(f"invalid tag {ref!r} for {repo}")
        r = await self.request(
            "GET", f"/v2/{repo}/manifests/{ref}", scopes or self.pull_scope(repo), headers={"Accept": ACCEPT}
        )
        async with r:
            if r.status != 200:
                raise await self._fail(r, f"manifest for {repo}:{ref}")
            body = await _read_capped(r, spec.MAX_MANIFEST, f"manifest for {repo}:{ref}")
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            if ":" in ref and ref != digest:
                raise BlobDigestMismatch(f"manifest digest mismatch: expected {ref}, got {digest}")
            mt = r.headers.get("Content-Type", "").split(";")[0].strip()
            try:
                doc = json.loads(body)
            except ValueError:
                raise errdefs.InvalidArgument(f"manifest for {repo}:{ref} is not JSON") from None
            if not isinstance(doc, dict):
                raise errdefs.InvalidArgument(f"manifest for {repo}:{ref} is not a JSON object")
            if doc.get("schemaVersion") == 1:
                raise errdefs.Unsupported(
                    f"manifest for {repo}:{ref} uses schema 1, which is no longer supported"
                )
            declared = doc.get("mediaType")
            if declared is not None:
                # the document's own word: it must be a manifest type we know
                if declared not in spec.MANIFEST_TYPES + spec.INDEX_TYPES:
                    raise errdefs.Unsupported(
                        f"manifest for {repo}:{ref} has unsupported media type {str(declared)[:100]!r}"
                    )
                mt = declared
            elif mt not in spec.MANIFEST_TYPES + spec.INDEX_TYPES:
                mt = spec.MT_OCI_INDEX if "manifests" in doc else spec.MT_OCI_MANIFEST
            return Manifest(digest, mt, body)

    async def head_manifest(self, repo: str, ref: str) -> str | None:
        r = await self.request(
            "HEAD", f"/v2/{repo}/manifests/{ref}", self.pull_scope(repo), headers={"Accept": ACCEPT}
        )
        async with r:
            if r.status == 404:
                return None
            if r.status != 200:
                raise await self._fail(r, f"manifest for {repo}:{ref}")
            return r.headers.get("Docker-Content-Digest")

    async def fetch_blob(
        self,
        repo: str,
        digest: str,
        sink: Callable[[bytes], Awaitable[None]],
        *,
        progress: Callable[[int], Awaitable[None]] | None = None,
        limit: int | None = None,
    ) -> int:
        """Stream the blob into sink; raise BlobDigestMismatch (after the last chunk) if it lies.

        `limit` (the descriptor's size, or a cap) bounds what is read: a registry that
        announces or sends more is cut off with ContentTooLarge."""
        _check_digest(digest, f"blob of {repo}")
        alg = digest.partition(":")[0]
        r = await self.request("GET", f"/v2/{repo}/blobs/{digest}", self.pull_scope(repo))
        async with r:
            if r.status != 200:
                raise await self._fail(r, f"blob {digest}")
            if limit is not None:
                _announced_too_large(r, limit, f"blob {digest}")
            h = hashlib.new(alg)
            n = 0
            buf = bytearray()
            try:
                async for chunk in r.content.iter_chunked(1 << 16):
                    h.update(chunk)
                    n += len(chunk)
                    if limit is not None and n > limit:
                        raise ContentTooLarge(f"blob {digest} is larger than {limit} bytes")
                    buf += chunk
                    if len(buf) >= _CHUNK:
                        await sink(bytes(buf))
                        buf.clear()
                        if progress is not None:
                            await progress(n)
            except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as err:
                raise errdefs.Unavailable(f"download of {digest} failed: {err}") from None
            if buf:
                await sink(bytes(buf))
            if progress is not None:
                await progress(n)
        got = f"{alg}:{h.hexdigest()}"
        if got != digest:
            raise BlobDigestMismatch(f"filesystem layer verification failed for digest {digest}")
        return n

    async def read_blob(self, repo: str, digest: str, limit: int = spec.MAX_CONFIG) -> bytes:
        """A small blob (an image config) whole in memory, at most `limit` bytes."""
        out = bytearray()

        async def sink(b: bytes) -> None:
            out.extend(b)

        await self.fetch_blob(repo, digest, sink, limit=limit)
        return bytes(out)

    # -- push side ------------------------------------------------------------------------

    async def blob_exists(self, repo: str, digest: str) -> bool:
        r = await self.request("HEAD", f"/v2/{repo}/blobs/{digest}", self.push_scope(repo))
        async with r:
            if r.status == 200:
                return True
            if r.status == 404:
                return False
            raise await self._fail(r, f"blob {digest}")

    async def mount_blob(self, repo: str, digest: str, source: str) -> bool:
        """Cross-repository mount: True when done (201); False when the registry opened an upload."""
        r = await self.request(
            "POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={source}", self.push_scope(repo, source)
        )
        async with r:
            await r.read()
            if r.status == 201:
                return True
            if r.status == 202 and r.headers.get("Location"):  # not mounted: drop the session it opened
                loc = _absolute(self.base, r.headers["Location"])
                try:
                    d = await self.request("DELETE", loc, self.push_scope(repo))
                    d.release()
                except errdefs.DockyardError:
                    pass
                return False
            if r.status in (202, 404, 400):
                return False
            raise await self._fail(r, f"mount of {digest} from {source}")

    async def upload_blob(
        self,
        repo: str,
        digest: str,
        path: Path,
        *,
        progress: Callable[[int], Awaitable[None]] | None = None,
        chunk_size: int | None = None,
    ) -> None:
        """POST a session, then one streamed PUT (or PATCH chunks of `chunk_size`, then PUT)."""
        scopes = self.push_scope(repo)
        r = await self.request("POST", f"/v2/{repo}/blobs/uploads/", scopes)
        async with r:
            await r.read()
            if r.status not in (202, 201):
                raise await self._fail(r, f"upload of {digest}")
            loc = _absolute(self.base, r.headers.get("Location", ""))
        size = path.stat().st_size
        sent = 0

        async def body(start: int, end: int) -> Any:
            nonlocal sent
            f = await asyncio.to_thread(open, path, "rb")
            try:
                f.seek(start)
                left = end - start
                while left > 0:
                    chunk = await asyncio.to_thread(f.read, min(_CHUNK, left))
                    if not chunk:
                        break
                    left -= len(chunk)
                    sent += len(chunk)
                    yield chunk
                    if progress is not None:
                        await progress(sent)
            finally:
                f.close()

        if chunk_size:
            offset = 0
            while offset < size:
                end = min(size, offset + chunk_size)
                r = await self.request(
                    "PATCH",
                    loc,
                    scopes,
                    data=body(offset, end),
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{end - 1}",
                        "Content-Length": str(end - offset),
                    },
                )
                async with r:
                    if r.status != 202:
                        raise await self._fail(r, f"upload of {digest}")
                    loc = _absolute(self.base, r.headers.get("Location", loc))
                offset = end
            put_data: Any = b""
            headers = {"Content-Length": "0"}
        else:
            put_data = body(0, size)
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        sep = "&" if "?" in loc else "?"
        r = await self.request("PUT", f"{loc}{sep}digest={digest}", scopes, data=put_data, headers=headers)
        async with r:
            if r.status not in (201, 204):
                raise await self._fail(r, f"upload of {digest}")

    async def upload_stream(self, repo: str, chunks: AsyncIterable[bytes], digest: Callable[[], str]) -> str:
        """POST a session, stream `chunks` in one PATCH (chunked encoding), then PUT the digest.

        For a blob whose digest is known only once it has been produced (a layer compressed
        while it uploads); `digest()` is called after the last chunk. Returns the digest."""
        scopes = self.push_scope(repo)
        r = await self.request("POST", f"/v2/{repo}/blobs/uploads/", scopes)
        async with r:
            await r.read()
            if r.status not in (202, 201):
                raise await self._fail(r, f"upload to {repo}")
            loc = _absolute(self.base, r.headers.get("Location", ""))
        r = await self.request(
            "PATCH", loc, scopes, data=chunks, headers={"Content-Type": "application/octet-stream"}
        )
        async with r:
            if r.status != 202:
                raise await self._fail(r, f"upload to {repo}")
            await r.read()
            loc = _absolute(self.base, r.headers.get("Location", loc))
        d = digest()
        sep = "&" if "?" in loc else "?"
        r = await self.request(
            "PUT", f"{loc}{sep}digest={d}", scopes, data=b"", headers={"Content-Length": "0"}
        )
        async with r:
            if r.status not in (201, 204):
                raise await self._fail(r, f"upload of {d}")
            await r.read()
        return d

    async def put_manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        r = await self.request(
            "PUT",
            f"/v2/{repo}/manifests/{ref}",
            self.push_scope(repo),
            data=body,
            headers={"Content-Type": media_type},
        )
        async with r:
            if r.status not in (200, 201, 202):
                raise await self._fail(r, f"manifest {repo}:{ref}")
            await r.read()
        return "sha256:" + hashlib.sha256(body).hexdigest()


def _pick(values: list[str]) -> spec.Challenge | None:
    challenges = [c for v in values for c in spec.parse_challenges(v)]
    for scheme in ("bearer", "basic"):
        for c in challenges:
            if c.scheme == scheme:
                return c
    return None


def _absolute(base: str, location: str) -> str:
    if location.startswith(("http://", "https://")):
        return location
    return base + (location if location.startswith("/") else "/" + location)
