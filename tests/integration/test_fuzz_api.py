"""Fuzz every route of a live daemon from its own OpenAPI document (`GET /openapi.json`).

Hypothesis draws path parameters (known objects and junk), query parameters of each
declared kind (and wrong kinds), and JSON bodies from each route's schema: half the bodies
well-typed (to reach the services' own checks), half with any JSON anywhere. Asserted for
every request: never a 500. After each example, whatever a 2xx made is removed; at the
end the daemon still answers `_ping`, holds no object, mount or file descriptor beyond what
it had at the start.

The daemon is our own (`make_daemon`), so garbage never reaches other tests' objects.
Strings never contain '/' outside a few fixed values and never name a URL, so no drawn
request makes the daemon touch a host path outside its roots or the network (registries
are loopback-only in test daemons). `DOCKYARD_FUZZ_EXAMPLES` sets the examples per route
(default 8, x3 for routes with a JSON body); `DOCKYARD_FUZZ_RANDOM=1` draws a new sequence
each run instead of the fixed one.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import docker
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Daemon, destroy_daemon, import_busybox, make_daemon, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a real daemon)")

EXAMPLES = int(os.environ.get("DOCKYARD_FUZZ_EXAMPLES", "8"))
RANDOM = bool(os.environ.get("DOCKYARD_FUZZ_RANDOM"))

# no '/', so a drawn string is never an absolute host path or a URL
SAFE = "abcxyzABZ019-_.=,@+ :"
WORDS = ["", "busybox", "busybox:latest", "none", "host", "bridge", "default", "-1", "0", "1", "true",
         "all", "80/tcp", "8080:80", "a=b", "container:nope", "../x", "x/y", "1g", "SIGKILL", "9",
         "on-failure", "always", "\u00e9\u4e2d", "a" * 300, "0.0.0.0", "172.31.250.0/24"]  # fmt: skip


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Fuzzed:
    def __init__(self, d: Daemon) -> None:
        self.d = d
        self.api = docker.APIClient(base_url=d.host, version="1.47", timeout=60)
        self.base_container = ""
        self.baseline: dict[str, set[str]] = {}
        self.fd_start = 0

    def send(self, method: str, path: str, body: bytes | None, long_lived: bool) -> tuple[int, bytes]:
        conn = UnixHTTPConnection(str(self.d.socket), timeout=5 if long_lived else 30)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            # a stream (events, logs, wait, attach) may never end: its status is the answer
            data = b"" if long_lived and resp.status < 300 else resp.read()
            return resp.status, data
        finally:
            conn.close()

    # -- what exists, and putting it back ------------------------------------------------

    def inventory(self) -> dict[str, set[str]]:
        return {
            "containers": {c["Id"] for c in self.api.containers(all=True)},
            "images": {i["Id"] for i in self.api.images(all=True)},
            "tags": {t for i in self.api.images(all=True) for t in i.get("RepoTags") or []},
            "networks": {n["Id"] for n in self.api.networks()},
            "volumes": {v["Name"] for v in self.api.volumes().get("Volumes") or []},
        }

    def setup(self) -> None:
        if not any("busybox:latest" in (i.get("RepoTags") or []) for i in self.api.images()):
            import_busybox(self.d.host)
        script = "trap 'exit 0' TERM; sleep 1000 & wait"
        self.base_container = self.api.create_container("busybox", command=["sh", "-c", script], name="fz-base")["Id"]
        self.baseline = self.inventory()

    def restore(self) -> None:
        """Remove whatever the last request made; put back a removed base object."""
        now = self.inventory()
        for cid in now["containers"] - self.baseline["containers"]:
            self.api.remove_container(cid, force=True, v=True)
        for tag in now["tags"] - self.baseline["tags"]:
            _ignore(self.api.remove_image, tag, force=True)
        for iid in self.inventory()["images"] - self.baseline["images"]:
            _ignore(self.api.remove_image, iid, force=True)
        for nid in now["networks"] - self.baseline["networks"]:
            _ignore(self.api.remove_network, nid)
        for name in self.inventory()["volumes"] - self.baseline["volumes"]:
            _ignore(self.api.remove_volume, name, force=True)
        now = self.inventory()
        if not self.baseline["tags"] <= now["tags"] or now["containers"] != self.baseline["containers"]:
            # an rmi or prune took busybox, or an rm took the base container: make both again
            for c in now["containers"]:
                self.api.remove_container(c, force=True)
            self.setup()


def _ignore(fn: Any, *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except docker.errors.APIError:
        pass


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[Fuzzed]:
    d = make_daemon()
    try:
        assert _openapi(d) == DOCUMENT, "the served /openapi.json differs from the route tables"
        f = Fuzzed(d)
        f.setup()
        f.api.close()  # its pooled keep-alive connections are daemon fds too
        time.sleep(0.5)
        f.fd_start = _fds(d.proc.pid)
        yield f
    finally:
        destroy_daemon(d)


def _openapi(d: Daemon) -> dict[str, Any]:
    conn = UnixHTTPConnection(str(d.socket), timeout=10)
    try:
        conn.request("GET", "/openapi.json")
        return json.loads(conn.getresponse().read())  # type: ignore[no-any-return]
    finally:
        conn.close()


def _document() -> dict[str, Any]:
    """The document the daemon serves, rendered in process from the same route tables (the
    fixture checks the served one is equal), so collecting the tests needs no daemon."""
    from dockyard.api import openapi
    from dockyard.api.routes import all_tables

    return json.loads(json.dumps(openapi.document(e for t in all_tables() for e in t.entries)))  # type: ignore[no-any-return]


DOCUMENT = _document()
OPERATIONS = [(m.upper(), path, op) for path, ops in DOCUMENT["paths"].items() for m, op in ops.items()]


# -- strategies from the document ---------------------------------------------------------

_text = st.one_of(st.sampled_from(WORDS), st.text(alphabet=SAFE, max_size=24))
_json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70), st.floats(allow_nan=False), _text)
_any_json = st.recursive(
    _json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)),
    max_leaves=8,
)

_FIELD_HINTS: dict[str, st.SearchStrategy[Any]] = {
    "Image": st.sampled_from(["busybox", "busybox:latest", "nope", "", "sha256:" + "0" * 64]),
    "Container": st.sampled_from(["fz-base", "nope", ""]),
    "Binds": st.lists(st.sampled_from(["vol1:/data", "vol1:/data:ro", "x", ":", "a:b:c:d", "vol2:/d:z,rw"]), max_size=2),
    "NetworkMode": st.sampled_from(["", "none", "bridge", "host", "default", "container:fz-base", "nope"]),
    "Cmd": st.one_of(st.just(["true"]), st.lists(_text, max_size=3), _text),
}


def from_schema(schema: dict[str, Any], junk: bool, name: str = "") -> st.SearchStrategy[Any]:
    """Values for one node of our body schemas; with `junk`, any JSON may stand anywhere."""
    if name in _FIELD_HINTS and not junk:
        return _FIELD_HINTS[name]
    if "oneOf" in schema:
        valid: st.SearchStrategy[Any] = st.one_of([from_schema(s, junk) for s in schema["oneOf"]])
    else:
        t = schema.get("type")
        if t == "string":
            valid = _text
        elif t == "boolean":
            valid = st.booleans()
        elif t == "integer":
            lo, hi = schema["minimum"], schema["maximum"]
            valid = st.one_of(st.sampled_from([lo, hi, 0, 1, -1 if lo < 0 else 2]), st.integers(lo, hi))
        elif t == "array":
            valid = st.lists(from_schema(schema["items"], junk), max_size=schema.get("maxItems", 3))
        elif "properties" in schema:
            props = {k: from_schema(v, junk, k) for k, v in schema["properties"].items()}
            valid = st.fixed_dictionaries({}, optional=props)
        else:
            valid = st.dictionaries(_text, from_schema(schema["additionalProperties"], junk), max_size=3)
    return st.one_of(valid, st.none(), _any_json) if junk else valid


def _query_value(kind: str) -> st.SearchStrategy[str]:
    good = {
        "boolean": st.sampled_from(["1", "0", "true", "false"]),
        "integer": st.integers(-(1 << 64), 1 << 64).map(str),
        "json": _any_json.map(json.dumps),
        "string": _text,
        "list": _text,
    }[kind]
    return st.one_of(good, _text)


@st.composite
def requests(draw: st.DrawFn, method: str, path: str, op: dict[str, Any], base: str) -> tuple[str, bytes | None]:
    url = path
    query: list[tuple[str, str]] = []
    for p in op["parameters"]:
        if p["in"] == "path":
            val = draw(st.one_of(st.sampled_from([base, base[:12], "fz-base", "busybox", "busybox:latest", "nope"]), _text))
            url = url.replace("{" + p["name"] + "}", urllib.parse.quote(val or "x", safe=""))
        elif draw(st.booleans()):
            kind = p["schema"].get("type") if p["schema"].get("type") == "array" else p["schema"].get("format", p["schema"]["type"])
            kind = {"array": "list", "int64": "integer"}.get(kind, kind)
            for _ in range(draw(st.integers(1, 2)) if kind == "list" else 1):
                query.append((p["name"], draw(_query_value(kind))))
    if draw(st.booleans()):
        query.append((draw(st.sampled_from(["filters", "t", "force", "x"])), draw(_text)))  # undeclared
    url = "/v1.47" + url + ("?" + urllib.parse.urlencode(query) if query else "")
    body: bytes | None = None
    content = (op.get("requestBody") or {}).get("content") or {}
    if "application/json" in content:
        schema = content["application/json"]["schema"]
        value = draw(st.one_of(from_schema(schema, junk=False), from_schema(schema, junk=True)))
        body = json.dumps(value).encode()
    elif content:  # a tar upload: junk bytes, or nothing
        body = draw(st.one_of(st.just(b""), st.binary(max_size=600)))
    return url, body


@pytest.mark.parametrize("method,path,op", OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_fuzz_route(fuzzed: Fuzzed, method: str, path: str, op: dict[str, Any]) -> None:
    has_json = "application/json" in ((op.get("requestBody") or {}).get("content") or {})

    @settings(
        max_examples=EXAMPLES * (3 if has_json else 1),
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(req=requests(method, path, op, fuzzed.base_container))
    def run(req: tuple[str, bytes | None]) -> None:
        url, body = req
        try:
            status, data = fuzzed.send(method, url, body, bool(op.get("x-long-lived")))
        finally:
            fuzzed.restore()
        assert status != 500, f"{method} {url} body={body[:300] if body else body!r}: {status} {data[:500]!r}"
        if status >= 400 and data:
            assert "message" in json.loads(data), data[:300]

    run()


def test_fuzzed_daemon_is_healthy_and_left_nothing(fuzzed: Fuzzed) -> None:
    """Runs after the routes (file order): the daemon answers and holds only the baseline."""
    d = fuzzed.d
    assert fuzzed.send("GET", "/_ping", None, False) == (200, b"OK")
    fuzzed.restore()
    assert fuzzed.inventory() == fuzzed.baseline
    # the base container is stopped again: no mounts beyond the roots' own
    fuzzed.api.stop(fuzzed.base_container, timeout=5)
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if str(d.data_root) in line.split()[4]]
    assert mounts == [], mounts
    fuzzed.api.close()
    try:
        wait_for(lambda: _fds(d.proc.pid) <= fuzzed.fd_start + 2, timeout=20, what="daemon fds settled")
    except AssertionError:
        fds = sorted(os.readlink(f"/proc/{d.proc.pid}/fd/{n}") for n in os.listdir(f"/proc/{d.proc.pid}/fd"))
        raise AssertionError(f"daemon fds: {fuzzed.fd_start} at the start, now {fds}") from None


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
