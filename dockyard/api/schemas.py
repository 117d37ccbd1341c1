"""Request parsing at the API edge: query values, filters, and bounded, type-checked JSON bodies.

Every JSON body is read through `json_body`, which enforces the limits below and checks the
decoded value against the body schema its route declares (`api/bodies.py`), so a wrong type
is a 400 naming the field before any service sees the request (dockerd's Go decoder does the
same). Limits, and why:

- `MAX_JSON_BODY` (4 MiB): the largest legitimate body, a create request with many labels
  or mounts, is a few KiB; 4 MiB leaves room and caps what one request can make the daemon
  buffer and decode. Tar uploads (build, load, import, archive PUT) are streamed to disk by
  their routes and are not capped here.
- `MAX_JSON_DEPTH` (64): Docker's deepest body nests about six levels. A deeper document is
  refused before decoding, so Python's recursive decoder (and every walk over the result)
  can never hit the interpreter's recursion limit.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from aiohttp import web

from dockyard.api.bodies import Schema
from dockyard.errdefs import InvalidArgument

MAX_JSON_BODY = 4 << 20
MAX_JSON_DEPTH = 64
ROUTE_BODY = "dockyard.route_body"  # request key: the body schema of the matched route

_TRUE = {"1", "true", "True", "yes"}


class BodyTooLarge(web.HTTPRequestEntityTooLarge):
    """413 with a message of our own (aiohttp's names sizes, not what to do)."""

    def __init__(self) -> None:
        super().__init__(max_size=MAX_JSON_BODY, actual_size=MAX_JSON_BODY + 1)
        self.text = f"request body is too large: a JSON body may be at most {MAX_JSON_BODY >> 20} MiB"


def qbool(request: web.Request, name: str, default: bool = False) -> bool:
    v = request.query.get(name)
    if v is None or v == "":
        return default
    return v in _TRUE


def qint(request: web.Request, name: str, default: int | None = None) -> int | None:
    v = request.query.get(name)
    if v is None or v == "":
        return default
    try:
        n = int(v)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {v!r} is not an integer") from None
    if not -(1 << 63) <= n < (1 << 63):  # Go's strconv.ParseInt range; bigger never means anything
        raise InvalidArgument(f"invalid value for {name}: {v!r} is out of range")
    return n


def loads(raw: str | bytes, what: str = "JSON") -> Any:
    """json.loads with the nesting bound; a bad document is an InvalidArgument naming `what`."""
    check_depth(raw, what)
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InvalidArgument(f"invalid {what}: {err}") from None


def filters(request: web.Request) -> dict[str, list[str]]:
    """Docker's `filters` JSON: the Go client sends {"k":{"v":true}}, docker-py {"k":["v"]}."""
    raw = request.query.get("filters")
    if not raw:
        return {}
    data = loads(raw, "filter")
    if not isinstance(data, dict):
        raise InvalidArgument("invalid filter: must be a JSON object")
    out: dict[str, list[str]] = {}
    for key, val in data.items():
        if isinstance(val, dict):
            out[key] = [k for k, on in val.items() if on]
        elif isinstance(val, list):
            out[key] = [str(x) for x in val]
        else:
            out[key] = [str(val)]
    return out


def check_filter_keys(f: dict[str, list[str]], allowed: set[str]) -> None:
    for key in f:
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")


# -- nesting depth, counted without recursion -------------------------------------------

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_DELTA = [0] * 256
_DELTA[ord("[")] = _DELTA[ord("{")] = 1
_DELTA[ord("]")] = _DELTA[ord("}")] = -1
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def check_depth(raw: str | bytes, what: str = "JSON") -> None:
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return  # the common case: too few brackets to nest that deep
    brackets = _STRINGS.sub(b'""', data).translate(None, _NOT_BRACKETS)
    if max(itertools.accumulate(map(_DELTA.__getitem__, brackets)), default=0) > MAX_JSON_DEPTH:
        raise InvalidArgument(f"invalid {what}: nested deeper than {MAX_JSON_DEPTH} levels")


# -- type checks against a body schema --------------------------------------------------

def _json_kind(v: Any) -> str:
    """The JSON type name Go's decoder reports ("number 1.5" for a non-integer number)."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, list):
        return "array"
    return "object"


def _type_error(v: Any, schema: Schema, struct: str, path: list[str]) -> InvalidArgument:
    kind = _json_kind(v)
    if kind == "number" and schema.get("type") == "integer":
        kind = f"number {json.dumps(v)}"
    go = schema["x-go-type"]
    if not path:
        return InvalidArgument(f"json: cannot unmarshal {kind} into Go value of type {go}")
    return InvalidArgument(
        f"json: cannot unmarshal {kind} into Go struct field {struct}.{'.'.join(path)} of type {go}"
    )


def check(v: Any, schema: Schema, struct: str = "", path: list[str] | None = None) -> None:
    """Raise InvalidArgument when `v` does not fit `schema`, worded as Go's decoder words it:
    the innermost struct's name, then the path of field names from the root. The recursion
    follows the document, which `loads` bounded to MAX_JSON_DEPTH levels."""
    path = path or []
    if v is None:
        return  # Go leaves the field at its zero value
    if "oneOf" in schema:
        for alt in schema["oneOf"]:
            try:
                check(v, alt, struct, path)
                return
            except InvalidArgument:
                continue
        raise _type_error(v, schema, struct, path)
    t = schema["type"]
    if t == "string":
        ok = isinstance(v, str)
    elif t == "boolean":
        ok = isinstance(v, bool)
    elif t == "integer":
        ok = isinstance(v, int) and not isinstance(v, bool) and schema["minimum"] <= v <= schema["maximum"]
    elif t == "array":
        ok = isinstance(v, list) and len(v) <= schema.get("maxItems", len(v))
        if ok:
            for item in v:
                check(item, schema["items"], struct, path)
    else:
        ok = isinstance(v, dict)
        if ok and "properties" in schema:
            name = schema.get("x-go-name") or schema["x-go-type"].rpartition(".")[2]
            for key, field in schema["properties"].items():
                if key in v:
                    check(v[key], field, name, [*path, key])
        elif ok:
            for item in v.values():
                check(item, schema["additionalProperties"], struct, path)
    if not ok:
        raise _type_error(v, schema, struct, path)


def canonical(v: Any, schema: Schema) -> Any:
    """`v` with each struct field name spelled as the schema spells it. Go's decoder matches
    field names case-insensitively (an exact match first), and clients rely on it: docker-py
    sends `CPURealtimeRuntime` and `detachKeys`. Map keys (labels, options) are data and kept."""
    if isinstance(v, dict) and "properties" in schema:
        props: dict[str, Schema] = schema["properties"]
        folded: dict[str, str] = {k.lower(): k for k in props}
        out: dict[str, Any] = {}
        for raw_key, item in v.items():
            key = str(raw_key)  # JSON object keys are strings
            name = key if key in props else folded.get(key.lower(), key)
            if name != key and name in v:
                continue  # the exact spelling is there too: Go keeps the field it names
            out[name] = canonical(item, props[name]) if name in props else item
        return out
    if isinstance(v, dict) and "additionalProperties" in schema:
        return {k: canonical(item, schema["additionalProperties"]) for k, item in v.items()}
    if isinstance(v, list) and "items" in schema:
        return [canonical(item, schema["items"]) for item in v]
    return v


async def _read_capped(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_JSON_BODY:
        raise BodyTooLarge()
    buf = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        buf += chunk
        if len(buf) > MAX_JSON_BODY:  # a chunked upload says no length up front
            raise BodyTooLarge()
    return bytes(buf)


async def json_body(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    """The request's JSON object, bounded and checked against its route's body schema."""
    schema: Schema | None = request.get(ROUTE_BODY)
    if schema is None:
        raise AssertionError(f"route {request.method} {request.path} reads a body it did not declare")
    raw = await _read_capped(request)
    if not raw.strip():
        if required:
            raise InvalidArgument("request body is empty; expected a JSON object")
        return {}
    data = loads(raw)
    if data is None and not required:
        return {}
    if not isinstance(data, dict):
        raise _type_error(data, schema, "", [])
    fixed: dict[str, Any] = canonical(data, schema)
    check(fixed, schema)
    return fixed
