"""The registry's HTTP face: an aiohttp app serving the OCI distribution API under /v2/.

Owns request parsing, authentication challenges, content negotiation and the error body
(`{"errors": [...]}` from `spec.ERRORS`). Storage is reached only through the `Storage`
protocol; nothing here touches files. Names contain slashes, so one catch-all route
parses `/v2/<tail>` against the spec's suffixes (`/blobs/uploads/…`, `/manifests/…`).

Every value that becomes a storage path is checked here against the spec's grammar
first (names, tags, digests of sha256/sha512, upload ids, a manifest's subject and
descriptors), with the registry's error codes; the storage driver checks again itself.

Auth modes: none; `htpasswd` (Basic challenge); `token` (Bearer challenge pointing at our
own `/auth/token` endpoint, which checks htpasswd credentials and issues signed tokens).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from dockyard.registry import spec
from dockyard.registry.server.auth import Htpasswd, TokenIssuer, allowed
from dockyard.registry.server.storage import Storage
from dockyard.registry.spec import RegistryError

__all__ = ["RegistryConfig", "make_app"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
MAX_MANIFEST = spec.MAX_MANIFEST
SERVICE = "dockyard-registry"


@dataclass
class RegistryConfig:
    auth: str = "none"  # none | htpasswd | token
    users: Htpasswd | None = None
    tokens: TokenIssuer | None = None
    realm: str | None = None  # token endpoint URL; default: this server's /auth/token


STORAGE: web.AppKey[Storage] = web.AppKey("storage")
CONFIG: web.AppKey[RegistryConfig] = web.AppKey("config")

_ROUTES = [
    ("blob", re.compile(r"^(?P<name>.+)/blobs/(?P<digest>[^/]+)$")),
    ("uploads", re.compile(r"^(?P<name>.+)/blobs/uploads/?$")),
    ("upload", re.compile(r"^(?P<name>.+)/blobs/uploads/(?P<uuid>[^/]+)$")),
    ("manifest", re.compile(r"^(?P<name>.+)/manifests/(?P<ref>[^/]+)$")),
    ("tags", re.compile(r"^(?P<name>.+)/tags/list$")),
    ("referrers", re.compile(r"^(?P<name>.+)/referrers/(?P<digest>[^/]+)$")),
]


def _error(err: RegistryError, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(spec.error_body([err]), status=err.status, headers=headers)


def _match(tail: str) -> tuple[str, dict[str, str]]:
    if tail == "_catalog":
        return "catalog", {}
    # /blobs/uploads/ must win over /blobs/<digest>
    for kind, rx in sorted(_ROUTES, key=lambda r: r[0] not in ("uploads", "upload")):
        m = rx.match(tail)
        if m:
            return kind, m.groupdict()
    raise web.HTTPNotFound()


def _action(method: str) -> str:
    return {"GET": "pull", "HEAD": "pull", "DELETE": "delete"}.get(method, "push")


class _Handler:
    def __init__(self, storage: Storage, cfg: RegistryConfig) -> None:
        self.st = storage
        self.cfg = cfg

    # -- auth -----------------------------------------------------------------------------

    def _challenge(self, request: web.Request, scope: str | None) -> RegistryError:
        err = RegistryError("UNAUTHORIZED")
        if self.cfg.auth == "htpasswd":
            err.headers = {"WWW-Authenticate": f'Basic realm="{SERVICE}"'}  # type: ignore[attr-defined]
        else:
            realm = self.cfg.realm or f"{request.scheme}://{request.host}/auth/token"
            value = f'Bearer realm="{realm}",service="{SERVICE}"'
            if scope:
                value += f',scope="{scope}"'
            err.headers = {"WWW-Authenticate": value}  # type: ignore[attr-defined]
        return err

    def _basic_user(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return None
        try:
            user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        assert self.cfg.users is not None
        return user if self.cfg.users.check(user, pw) else None

    async def authorize(self, request: web.Request, kind: str, name: str) -> None:
        if self.cfg.auth == "none":
            return
        if kind == "base":
            scope = None
        elif kind == "catalog":
            scope = "registry:catalog:*"
        else:
            actions = {"pull"} if _action(request.method) == "pull" else {"pull", _action(request.method)}
            scope = f"repository:{name}:{','.join(sorted(actions))}"
        if self.cfg.auth == "htpasswd":
            if await asyncio.to_thread(self._basic_user, request) is None:
                raise self._challenge(request, scope)
            return
        header = request.headers.get("Authorization", "")
        claims = None
        if header.lower().startswith("bearer ") and self.cfg.tokens is not None:
            claims = self.cfg.tokens.verify(header[7:].strip())
        if claims is None:
            raise self._challenge(request, scope)
        if scope is None:
            return
        k, n, actions = spec.parse_scope(scope)
        if not all(allowed(claims, k, n, a) for a in actions):
            err = self._challenge(request, scope)
            if claims.get("sub"):
                err = RegistryError("DENIED")
            raise err

    async def token(self, request: web.Request) -> web.Response:
        """The token endpoint: GET with Basic credentials (or none: anonymous, granted nothing),
        or POST with the OAuth2 password / refresh_token grant (docker's identity tokens)."""
        assert self.cfg.tokens is not None and self.cfg.users is not None
        bad = _error(RegistryError("UNAUTHORIZED", "invalid username or password"))
        if request.method == "POST":
            form = await request.post()
            scopes = str(form.get("scope", "")).split()
            if form.get("grant_type") == "refresh_token":
                claims = self.cfg.tokens.verify(str(form.get("refresh_token", "")))
                if not claims or claims.get("aud") != "refresh":
                    return bad
                user = str(claims.get("sub", ""))
            else:
                user = str(form.get("username", ""))
                if not user or not await asyncio.to_thread(
                    self.cfg.users.check, user, str(form.get("password", ""))
                ):
                    return bad
        else:
            scopes = [s for sc in request.query.getall("scope", []) for s in sc.split(" ") if s]
            user = ""
            if request.headers.get("Authorization"):
                found = await asyncio.to_thread(self._basic_user, request)
                if not found:
                    return bad
                user = found
        access = []
        if user:  # an authenticated user may do anything; anonymous users get nothing
            for sc in scopes:
                kind, name, actions = spec.parse_scope(sc)
                access.append((kind, name, actions & {"pull", "push", "delete", "*"}))
        service = str(request.query.get("service", SERVICE))
        tok = self.cfg.tokens.issue(user, access, service=service)
        body: dict[str, Any] = {"token": tok, "access_token": tok, "expires_in": self.cfg.tokens.ttl}
        if user and (request.method == "POST" or request.query.get("offline_token") == "true"):
            body["refresh_token"] = self.cfg.tokens.issue(user, [], service="refresh")
        return web.json_response(body)

    # -- dispatch -------------------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info.get("tail", "")
        try:
            if tail == "":
                await self.authorize(request, "base", "")
                return web.json_response({}, headers={"Docker-Distribution-API-Version": "registry/2.0"})
            kind, args = _match(tail)
            name = args.get("name", "")
            if kind != "catalog" and not spec.is_name(name):
                raise RegistryError("NAME_INVALID", detail={"name": name})
            if kind == "upload" and not spec.is_upload_id(args["uuid"]):
                raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": args["uuid"]})
            await self.authorize(request, kind, name)
            fn = getattr(self, f"{kind}_{request.method.lower()}", None)
            if fn is None:
                raise web.HTTPMethodNotAllowed(request.method, [])
            resp: web.StreamResponse = await fn(request, **args)
            return resp
        except RegistryError as err:
            return _error(err, getattr(err, "headers", None))

    # -- blobs ----------------------------------------------------------------------------

    def _digest(self, digest: str) -> str:
        # distribution answers every unparsable digest, unknown algorithms included, with
        # 400 DIGEST_INVALID; the message says which it was
        problem = spec.digest_problem(digest)
        if problem is not None:
            raise RegistryError("DIGEST_INVALID", problem, detail={"digest": digest})
        return digest

    async def blob_head(self, request: web.Request, name: str, digest: str) -> web.StreamResponse:
        return await self.blob_get(request, name, digest)

    async def blob_get(self, request: web.Request, name: str, digest: str) -> web.StreamResponse:
        digest = self._digest(digest)
        size = self.st.blob_size(digest)
        if size is None or not self.st.repo_has_blob(name, digest):
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": digest})
        headers = {
            "Docker-Content-Digest": digest,
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "Etag": f'"{digest}"',
        }
        start, end, status = 0, size - 1, 200
        if "Range" in request.headers:
            try:
                rng = spec.parse_range(request.headers["Range"], size)
            except RegistryError:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
            if rng is not None:
                start, end = rng
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = end - start + 1 if size else 0
        headers["Content-Length"] = str(length)
        resp = web.StreamResponse(status=status, headers=headers)
        if request.method == "HEAD":
            await resp.prepare(request)
            return resp
        await resp.prepare(request)
        f = await asyncio.to_thread(self.st.open_blob, digest)
        try:
            f.seek(start)
            left = length
            while left > 0:
                chunk = await asyncio.to_thread(f.read, min(_CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                await resp.write(chunk)
        finally:
            f.close()
        await resp.write_eof()
        return resp

    async def blob_delete(self, request: web.Request, name: str, digest: str) -> web.StreamResponse:
        digest = self._digest(digest)
        if not self.st.unlink_blob(name, digest):
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": digest})
        return web.Response(status=202, headers={"Docker-Content-Digest": digest})

    # -- uploads --------------------------------------------------------------------------

    def _upload_headers(self, name: str, uuid: str, size: int) -> dict[str, str]:
        return {
            "Location": f"/v2/{name}/blobs/uploads/{uuid}",
            "Range": f"0-{max(size - 1, 0)}",
            "Docker-Upload-UUID": uuid,
            "Content-Length": "0",
        }

    async def _receive(self, request: web.Request, name: str, uuid: str, offset: int) -> int:
        buf = bytearray()
        size = offset
        async for chunk in request.content.iter_chunked(1 << 16):
            buf += chunk
            if len(buf) >= _CHUNK:
                size = await asyncio.to_thread(self.st.append_upload, name, uuid, size, bytes(buf))
                buf.clear()
        if buf:
            size = await asyncio.to_thread(self.st.append_upload, name, uuid, size, bytes(buf))
        return size

    async def _finish(self, name: str, uuid: str, digest: str) -> web.Response:
        await asyncio.to_thread(self.st.commit_upload, name, uuid, digest)
        return web.Response(
            status=201,
            headers={
                "Location": f"/v2/{name}/blobs/{digest}",
                "Docker-Content-Digest": digest,
                "Content-Length": "0",
            },
        )

    async def uploads_post(self, request: web.Request, name: str) -> web.StreamResponse:
        q = request.query
        mount, source = q.get("mount"), q.get("from")
        if mount:
            mount = self._digest(mount)
            if source and not spec.is_name(source):
                raise RegistryError(
                    "NAME_INVALID", f"invalid source repository {source!r}", detail={"from": source}
                )
            if (
                source
                and self.st.repo_has_blob(source, mount)
                and self._may_pull(request, source)
            ):
                self.st.link_blob(name, mount)
                return web.Response(
                    status=201,
                    headers={"Location": f"/v2/{name}/blobs/{mount}", "Docker-Content-Digest": mount},
                )
            # no source (or it lacks the blob): fall back to an upload session, as the spec allows
        digest = q.get("digest")
        if digest and not mount:
            digest = self._digest(digest)  # before a session exists: a refusal leaves nothing
        uuid = await asyncio.to_thread(self.st.start_upload, name)
        if digest and not mount:
            await self._receive(request, name, uuid, 0)
            return await self._finish(name, uuid, digest)
        await request.read()
        return web.Response(status=202, headers=self._upload_headers(name, uuid, 0))

    def _may_pull(self, request: web.Request, source: str) -> bool:
        """A mount reads from the source repository: with tokens, the caller needs pull there too."""
        if self.cfg.auth != "token" or self.cfg.tokens is None:
            return True
        header = request.headers.get("Authorization", "")
        claims = self.cfg.tokens.verify(header[7:].strip())
        return bool(claims) and allowed(claims, "repository", source, "pull")  # type: ignore[arg-type]

    async def upload_get(self, request: web.Request, name: str, uuid: str) -> web.StreamResponse:
        st = await asyncio.to_thread(self.st.upload_state, name, uuid)
        return web.Response(status=204, headers=self._upload_headers(name, uuid, st.size))

    async def upload_patch(self, request: web.Request, name: str, uuid: str) -> web.StreamResponse:
        st = await asyncio.to_thread(self.st.upload_state, name, uuid)
        offset = st.size
        if "Content-Range" in request.headers:
            start, end = spec.parse_content_range(request.headers["Content-Range"])
            if start != st.size:
                return web.Response(status=416, headers=self._upload_headers(name, uuid, st.size))
            if request.content_length is not None and request.content_length != end - start + 1:
                return web.Response(status=416, headers=self._upload_headers(name, uuid, st.size))
            offset = start
        size = await self._receive(request, name, uuid, offset)
        return web.Response(status=202, headers=self._upload_headers(name, uuid, size))

    async def upload_put(self, request: web.Request, name: str, uuid: str) -> web.StreamResponse:
        digest = request.query.get("digest")
        if not digest:
            raise RegistryError("DIGEST_INVALID", "digest parameter is required")
        digest = self._digest(digest)
        st = await asyncio.to_thread(self.st.upload_state, name, uuid)
        if "Content-Range" in request.headers and request.content_length:
            start, _ = spec.parse_content_range(request.headers["Content-Range"])
            if start != st.size:
                return web.Response(status=416, headers=self._upload_headers(name, uuid, st.size))
        await self._receive(request, name, uuid, st.size)
        return await self._finish(name, uuid, digest)

    async def upload_delete(self, request: web.Request, name: str, uuid: str) -> web.StreamResponse:
        await asyncio.to_thread(self.st.upload_state, name, uuid)
        await asyncio.to_thread(self.st.cancel_upload, name, uuid)
        return web.Response(status=204, headers={"Docker-Upload-UUID": uuid})  # as distribution does

    # -- manifests ------------------------------------------------------------------------

    async def manifest_head(self, request: web.Request, name: str, ref: str) -> web.StreamResponse:
        return await self.manifest_get(request, name, ref)

    async def manifest_get(self, request: web.Request, name: str, ref: str) -> web.StreamResponse:
        if ":" in ref:
            self._digest(ref)
        elif not spec.is_tag(ref):
            raise RegistryError("MANIFEST_UNKNOWN", detail={"tag": ref})
        found = await asyncio.to_thread(self.st.get_manifest, name, ref)
        if found is None:
            if self.st.tags(name) is None:
                raise RegistryError("NAME_UNKNOWN", detail={"name": name})
            raise RegistryError("MANIFEST_UNKNOWN", detail={"reference": ref})
        digest, body = found
        media_type = _media_type(body)
        accept = [a.split(";")[0].strip() for h in request.headers.getall("Accept", []) for a in h.split(",")]
        # distribution: a tag whose index the client cannot take is "unknown" to it
        wants_index = not accept or media_type in accept or "*/*" in accept
        if ":" not in ref and media_type in spec.INDEX_TYPES and not wants_index:
            raise RegistryError("MANIFEST_UNKNOWN", f"manifest media type {media_type} not acceptable")
        headers = {
            "Docker-Content-Digest": digest,
            "Content-Type": media_type,
            "Etag": f'"{digest}"',
            "Content-Length": str(len(body)),
        }
        if request.method == "HEAD":
            resp = web.StreamResponse(status=200, headers=headers)
            await resp.prepare(request)
            return resp
        return web.Response(body=body, headers=headers)

    async def manifest_put(self, request: web.Request, name: str, ref: str) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > MAX_MANIFEST:
            raise RegistryError("SIZE_INVALID", "manifest too large", status=413)
        body = await request.content.read(MAX_MANIFEST + 1)
        if len(body) > MAX_MANIFEST:
            raise RegistryError("SIZE_INVALID", "manifest too large", status=413)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        tags = []
        if ":" in ref:
            if self._digest(ref) != digest:
                alg = ref.partition(":")[0]
                if alg != "sha256" or ref != digest:
                    raise RegistryError("DIGEST_INVALID", detail={"expected": ref, "actual": digest})
        else:
            if not spec.is_tag(ref):
                raise RegistryError("TAG_INVALID", detail={"tag": ref})
            tags.append(ref)
        for t in request.query.getall("tag", []):
            if not spec.is_tag(t):
                raise RegistryError("TAG_INVALID", detail={"tag": t})
            tags.append(t)
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise RegistryError("MANIFEST_INVALID", "manifest is not valid JSON") from None
        if not isinstance(doc, dict):
            raise RegistryError("MANIFEST_INVALID", "manifest is not a JSON object")
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        media_type = doc.get("mediaType") or content_type
        if doc.get("schemaVersion") == 1 or media_type == spec.MT_SCHEMA1:
            raise RegistryError("MANIFEST_INVALID", "schema 1 manifests are not supported")
        if not media_type:
            media_type = spec.MT_OCI_INDEX if "manifests" in doc else spec.MT_OCI_MANIFEST
        if doc.get("mediaType") and content_type and content_type != doc["mediaType"]:
            raise RegistryError("MANIFEST_INVALID", "mediaType does not match the Content-Type header")
        if media_type not in spec.MANIFEST_TYPES + spec.INDEX_TYPES:
            raise RegistryError("MANIFEST_INVALID", f"unsupported manifest media type {media_type}")
        subject = _check_subject(doc)
        missing = self._check_references(name, doc, media_type)
        if missing:
            raise RegistryError("MANIFEST_BLOB_UNKNOWN", detail={"digest": missing})
        descriptor: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(body)}
        artifact_type = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
        if artifact_type and not spec.is_media_type(str(artifact_type)):
            raise RegistryError("MANIFEST_INVALID", f"invalid artifactType {artifact_type!r}")
        if artifact_type:
            descriptor["artifactType"] = artifact_type
        if doc.get("annotations"):
            descriptor["annotations"] = doc["annotations"]
        await asyncio.to_thread(self.st.put_manifest, name, digest, body, tags, subject, descriptor)
        headers = {
            "Location": f"/v2/{name}/manifests/{digest}",
            "Docker-Content-Digest": digest,
            "Content-Length": "0",
        }
        if subject is not None:
            headers["OCI-Subject"] = str(subject.get("digest"))
        resp = web.Response(status=201, headers=headers)
        for t in tags[1 if ":" not in ref else 0 :]:
            resp.headers.add("OCI-Tag", t)
        return resp

    def _check_references(self, name: str, doc: dict[str, Any], media_type: str) -> str | None:
        """The first referenced blob or manifest this repository lacks (None when all present)."""
        if media_type in spec.INDEX_TYPES:
            descs = doc.get("manifests")
            if not isinstance(descs, list):
                raise RegistryError("MANIFEST_INVALID", "index has no manifests list")
            for d in descs:
                if not isinstance(d, dict):
                    raise RegistryError("MANIFEST_INVALID", "invalid descriptor")
                dg = _descriptor_digest(d)
                if self.st.get_manifest(name, dg) is None:
                    return dg
            return None
        config = doc.get("config")
        layers = doc.get("layers")
        if not isinstance(config, dict) or not isinstance(layers, list):
            raise RegistryError("MANIFEST_INVALID", "manifest needs config and layers")
        for d in [config, *layers]:
            if not isinstance(d, dict):
                raise RegistryError("MANIFEST_INVALID", "invalid descriptor")
            dg = _descriptor_digest(d)
            if d.get("urls"):  # foreign layers live elsewhere
                continue
            if not self.st.repo_has_blob(name, dg):
                return dg
        return None

    async def manifest_delete(self, request: web.Request, name: str, ref: str) -> web.StreamResponse:
        if ":" in ref:
            self._digest(ref)
        elif not spec.is_tag(ref):
            raise RegistryError("TAG_INVALID", detail={"tag": ref})
        if not await asyncio.to_thread(self.st.delete_manifest, name, ref):
            raise RegistryError("MANIFEST_UNKNOWN", detail={"reference": ref})
        return web.Response(status=202)

    # -- listings -------------------------------------------------------------------------

    def _page(self, request: web.Request, items: list[str], path: str) -> tuple[list[str], dict[str, str]]:
        n_raw, last = request.query.get("n"), request.query.get("last")
        if last:
            items = [i for i in items if i > last]
        headers: dict[str, str] = {}
        if n_raw is not None:
            try:
                n = int(n_raw)
                if n < 0:
                    raise ValueError
            except ValueError:
                raise RegistryError("PAGINATION_NUMBER_INVALID", detail={"n": n_raw}) from None
            if len(items) > n:
                items = items[:n]
                if n:
                    headers["Link"] = f'<{path}?{urlencode({"n": n, "last": items[-1]})}>; rel="next"'
        return items, headers

    async def tags_get(self, request: web.Request, name: str) -> web.StreamResponse:
        tags = await asyncio.to_thread(self.st.tags, name)
        if tags is None:
            raise RegistryError("NAME_UNKNOWN", detail={"name": name})
        page, headers = self._page(request, tags, f"/v2/{name}/tags/list")
        return web.json_response({"name": name, "tags": page}, headers=headers)

    async def catalog_get(self, request: web.Request) -> web.StreamResponse:
        repos = await asyncio.to_thread(self.st.repositories)
        page, headers = self._page(request, repos, "/v2/_catalog")
        return web.json_response({"repositories": page}, headers=headers)

    async def referrers_get(self, request: web.Request, name: str, digest: str) -> web.StreamResponse:
        digest = self._digest(digest)
        descs = await asyncio.to_thread(self.st.referrers, name, digest)
        headers = {"Content-Type": spec.MT_OCI_INDEX}
        want = request.query.get("artifactType")
        if want:
            descs = [d for d in descs if d.get("artifactType") == want]
            headers["OCI-Filters-Applied"] = "artifactType"
        body = {"schemaVersion": 2, "mediaType": spec.MT_OCI_INDEX, "manifests": descs}
        return web.Response(body=json.dumps(body).encode(), headers=headers)


def _descriptor_digest(d: dict[str, Any]) -> str:
    """A descriptor's digest, after its digest, mediaType and size pass the image spec."""
    dg = d.get("digest")
    if not isinstance(dg, str) or not spec.is_digest(dg):
        raise RegistryError("MANIFEST_INVALID", f"invalid digest {dg!r} in a descriptor")
    mt = d.get("mediaType")
    if mt is not None and (not isinstance(mt, str) or not spec.is_media_type(mt)):
        raise RegistryError("MANIFEST_INVALID", f"invalid mediaType {mt!r} in a descriptor")
    size = d.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise RegistryError("MANIFEST_INVALID", f"invalid size {size!r} in a descriptor")
    return dg


def _check_subject(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest's `subject` descriptor (its digest names a referrers directory)."""
    if "subject" not in doc or doc["subject"] is None:
        return None
    subject = doc["subject"]
    if not isinstance(subject, dict):
        raise RegistryError("MANIFEST_INVALID", "subject is not a descriptor")
    _descriptor_digest(subject)
    return subject


def _media_type(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return "application/octet-stream"
    mt = doc.get("mediaType")
    if mt:
        return str(mt)
    return spec.MT_OCI_INDEX if "manifests" in doc else spec.MT_OCI_MANIFEST


def make_app(storage: Storage, cfg: RegistryConfig | None = None) -> web.Application:
    cfg = cfg or RegistryConfig()
    h = _Handler(storage, cfg)

    @web.middleware
    async def headers(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            resp: web.StreamResponse = await handler(request)
        except web.HTTPNotFound:
            return _error(RegistryError("NAME_UNKNOWN", "page not found", status=404))
        except web.HTTPMethodNotAllowed:
            return _error(RegistryError("UNSUPPORTED", "method not allowed", status=405))
        if not resp.prepared:
            resp.headers.setdefault("Docker-Distribution-API-Version", "registry/2.0")
        return resp

    app = web.Application(middlewares=[headers], client_max_size=MAX_MANIFEST + 1)
    app[STORAGE] = storage
    app[CONFIG] = cfg
    app.router.add_route("*", "/v2/{tail:.*}", h.dispatch)
    app.router.add_route("*", "/v2", h.dispatch)
    if cfg.auth == "token":
        app.router.add_route("GET", "/auth/token", h.token)
        app.router.add_route("POST", "/auth/token", h.token)
    return app
