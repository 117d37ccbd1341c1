"""The OCI distribution spec as data: media types, error codes, route grammar, challenges (sans-IO).

Owns what both sides of the registry protocol must agree on: the media types a manifest
may carry, the error code table (code -> HTTP status, message), the name/tag/digest
grammar, the `Content-Range`/`Range` forms, and the `WWW-Authenticate` challenge grammar.
It does no IO and imports nothing from aiohttp: the client and the server both use it.

Routes (distribution-spec v1.1)::

    GET            /v2/                                  version check, auth challenge
    GET HEAD DEL   /v2/<name>/blobs/<digest>
    POST           /v2/<name>/blobs/uploads/[?digest=|?mount=&from=]
    GET PATCH PUT DEL /v2/<name>/blobs/uploads/<uuid>
    GET HEAD PUT DEL  /v2/<name>/manifests/<tag or digest>
    GET            /v2/<name>/tags/list[?n=&last=]
    GET            /v2/<name>/referrers/<digest>[?artifactType=]
    GET            /v2/_catalog[?n=&last=]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "ARTIFACT_REFERENCE_TYPE",
    "ERRORS",
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "MAX_CONFIG",
    "MAX_MANIFEST",
    "MT_DOCKER_CONFIG",
    "MT_DOCKER_LAYER",
    "MT_DOCKER_LIST",
    "MT_DOCKER_MANIFEST",
    "MT_OCI_CONFIG",
    "MT_OCI_EMPTY",
    "MT_OCI_INDEX",
    "MT_OCI_LAYER",
    "MT_OCI_LAYER_GZIP",
    "MT_OCI_MANIFEST",
    "MT_SCHEMA1",
    "Challenge",
    "RegistryError",
    "digest_problem",
    "error_body",
    "is_digest",
    "is_media_type",
    "is_name",
    "is_tag",
    "is_upload_id",
    "parse_challenges",
    "parse_content_range",
    "parse_range",
    "parse_scope",
]

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_EMPTY = "application/vnd.oci.empty.v1+json"
MT_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"
ARTIFACT_REFERENCE_TYPE = "vnd.docker.reference.type"

# Size caps for documents read whole into memory, on both sides: distribution refuses
# manifests over 4 MiB; configs get more room (long histories), still far from a DoS.
MAX_MANIFEST = 4 << 20
MAX_CONFIG = 8 << 20

MANIFEST_TYPES = (MT_DOCKER_MANIFEST, MT_OCI_MANIFEST)
INDEX_TYPES = (MT_DOCKER_LIST, MT_OCI_INDEX)

# code -> (HTTP status, message), from the spec's error code table (plus distribution's extras).
ERRORS: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (400, "manifest references a manifest or blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (415, "the operation is unsupported"),
    "TOOMANYREQUESTS": (429, "too many requests"),
    "RANGE_INVALID": (416, "invalid content range"),
    "TAG_INVALID": (400, "manifest tag did not match URI"),
    "PAGINATION_NUMBER_INVALID": (400, "invalid number of results requested"),
}


class RegistryError(Exception):
    """An error of the distribution API: `code` from ERRORS; the status comes from the table."""

    def __init__(
        self, code: str, message: str = "", detail: object = None, status: int | None = None
    ) -> None:
        default_status, default_message = ERRORS.get(code, (500, code.lower()))
        self.code = code
        self.message = message or default_message
        self.detail = detail
        self.status = status or default_status
        super().__init__(f"{self.code}: {self.message}")


def error_body(errors: list[RegistryError]) -> dict[str, object]:
    return {"errors": [{"code": e.code, "message": e.message, "detail": e.detail} for e in errors]}


_NAME = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
# OCI image-spec descriptor grammar: algorithm ":" encoded; only registered algorithms pass
_DIGEST_FORM = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")
_DIGEST_HEX = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"^[a-f0-9]+$")
# RFC 6838 type/subtype, as the OCI image spec restricts a descriptor's mediaType
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$")
_UPLOAD_ID = re.compile(r"^[a-f0-9][a-f0-9-]{0,63}$")


def is_name(name: str) -> bool:
    return len(name) <= 255 and bool(_NAME.fullmatch(name))


def is_tag(tag: str) -> bool:
    return bool(_TAG.fullmatch(tag))


def digest_problem(s: str) -> str | None:
    """Why `s` is not a digest this code accepts (None when it is one): the OCI grammar,
    a registered algorithm (sha256, sha512) and lowercase hex of that algorithm's length.
    A digest becomes a path (`blobs/sha256/<hex>`) on both sides, so nothing else passes."""
    m = _DIGEST_FORM.fullmatch(s)
    if not m:
        return f"invalid digest {s!r}: not algorithm:encoded"
    alg, enc = m.group(1), m.group(2)
    want = _DIGEST_HEX.get(alg)
    if want is None:
        return f"unsupported digest algorithm {alg!r}"
    if len(enc) != want or not _HEX.fullmatch(enc):
        return f"invalid digest {s!r}: {alg} needs {want} lowercase hex characters"
    return None


def is_digest(s: str) -> bool:
    return digest_problem(s) is None


def is_media_type(s: str) -> bool:
    return bool(_MEDIA_TYPE.fullmatch(s))


def is_upload_id(s: str) -> bool:
    """An upload session id as our server makes them (hex, maybe UUID dashes)."""
    return bool(_UPLOAD_ID.fullmatch(s))


def parse_content_range(value: str) -> tuple[int, int]:
    """`Content-Range: <start>-<end>` (inclusive; `bytes ` prefix tolerated) -> (start, end)."""
    m = re.match(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/\S+)?$", value.strip())
    if not m:
        raise RegistryError("RANGE_INVALID", f"invalid content range {value!r}")
    start, end = int(m.group(1)), int(m.group(2))
    if end < start:
        raise RegistryError("RANGE_INVALID", f"invalid content range {value!r}")
    return start, end


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """An HTTP `Range: bytes=a-b` (one range) against a blob of `size` -> (start, end) inclusive.

    None means the header is unusable and the whole blob is sent; a range past the end raises."""
    m = re.match(r"^bytes=(\d*)-(\d*)$", value.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # suffix: the last n bytes
        n = int(m.group(2))
        return (max(0, size - n), size - 1) if n else None
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        raise RegistryError("RANGE_INVALID", f"range {value!r} not satisfiable")
    return start, min(end, size - 1)


@dataclass(frozen=True)
class Challenge:
    """One `WWW-Authenticate` challenge: scheme (`bearer`, `basic`) and its parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)


_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')


def parse_challenges(header: str) -> list[Challenge]:
    """`Bearer realm="…",service="…",scope="…"` (several challenges may follow each other)."""
    out: list[Challenge] = []
    pos = 0
    header = header.strip()
    while pos < len(header):
        m = re.compile(r"\s*([A-Za-z][A-Za-z0-9_-]*)\s*").match(header, pos)
        if not m:
            break
        scheme = m.group(1).lower()
        pos = m.end()
        params: dict[str, str] = {}
        while pos < len(header):
            pm = _PARAM.match(header, pos)
            if not pm:
                break
            # a bare word followed by a space is the next challenge's scheme, not a parameter
            params[pm.group(1).lower()] = _unquote(pm.group(2))
            pos = pm.end()
        out.append(Challenge(scheme, params))
        if pos < len(header) and header[pos] == ",":
            pos += 1
    return out


def _unquote(v: str) -> str:
    if len(v) >= 2 and v[0] == v[-1] == '"':
        return re.sub(r"\\(.)", r"\1", v[1:-1])
    return v


def parse_scope(scope: str) -> tuple[str, str, set[str]]:
    """`repository:library/alpine:pull,push` -> ("repository", "library/alpine", {"pull", "push"})."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    return kind, name, {a for a in actions.split(",") if a}
