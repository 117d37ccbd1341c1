"""Hardening of the registry, both sides, attacked the way an attacker would.

Server: `dockyard registry serve` runs as its own process; raw HTTP (http.client, so no
client library tidies the path) sends hostile digests, names, tags and upload ids to every
entry point that turns one into a path. Each must answer the registry's error code and
leave the filesystem outside the registry root untouched.

Client: a tiny hostile registry (http.server in a thread, on loopback) answers our daemon's
pull with a huge or never-ending manifest, a never-ending config, or manifests whose
digests and media types are not what they claim. The pull must fail with an error in the
progress stream, the daemon's memory must stay bounded, and nothing may be left behind.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.conftest import REPO, Daemon
from tests.integration.test_registry import _free_port, _wait_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the daemon mounts overlayfs)")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def _digest(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


# -- the server ---------------------------------------------------------------------------


@dataclass
class Served:
    port: int
    base: Path  # holds data/ (the registry root) and the sentinel area around it
    proc: subprocess.Popen[bytes]

    @property
    def root(self) -> Path:
        return self.base / "data"

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            raw = r.read()
            try:
                doc = json.loads(raw) if raw else {}
            except ValueError:
                doc = {"raw": raw.decode(errors="replace")}
            return r.status, doc, dict(r.getheaders())
        finally:
            conn.close()


def _outside(base: Path) -> set[str]:
    """Everything under base except the registry root and its log: what an escape would change."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(base):
        rel = os.path.relpath(dirpath, base)
        if rel == "data" or rel.startswith("data/"):
            dirnames[:] = []
            continue
        out.update(os.path.join(rel, f) for f in filenames if f != "registry.log")
        out.update(os.path.join(rel, d) + "/" for d in dirnames if not (rel == "." and d == "data"))
    return out


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    # the root sits deep enough that `..` runs in every entry point land in base/, which
    # the test watches, never in a directory shared with anyone else
    base = Path(tempfile.mkdtemp(prefix="dy-hreg-", dir="/tmp"))
    port = _free_port()
    argv = [sys.executable, "-m", "dockyard.cli.registry", "serve", "--addr", f"127.0.0.1:{port}",
            "--root", str(base / "data")]  # fmt: skip
    log = base / "registry.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    _wait_port(port, proc, log)
    yield Served(port, base, proc)
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    shutil.rmtree(base, ignore_errors=True)


def _push_blob(s: Served, repo: str, data: bytes) -> str:
    d = _digest(data)
    status, doc, _ = s.request("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", data,
                               {"Content-Type": "application/octet-stream"})  # fmt: skip
    assert status == 201, doc
    return d


def _image(s: Served, repo: str) -> tuple[str, str, bytes]:
    """A minimal image pushed to repo: (config digest, layer digest, manifest body)."""
    cfg = _push_blob(s, repo, b"{}")
    layer = _push_blob(s, repo, b"layer " + repo.encode())
    body = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": cfg, "size": 2},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer, "size": 6 + len(repo)}],
    }).encode()  # fmt: skip
    return cfg, layer, body


def _code(doc: dict[str, Any]) -> str:
    return str(doc["errors"][0]["code"])


def _refused(value: str, status: int, doc: dict[str, Any], code: str) -> bool:
    """The registry's own refusal; a value holding an (encoded) `/` may instead split the
    route so that none matches, a 404 as distribution's router gives."""
    if "/" in value or "%2F" in value:
        return (status, _code(doc)) in ((400, code), (404, "NAME_UNKNOWN"))
    return (status, _code(doc)) == (400, code)


ESCAPES = ["../../../../escaped", "..%2F..%2F..%2F..%2Fescaped", "%2E%2E/%2E%2E/%2E%2E/escaped"]


def test_subject_digest_cannot_write_outside_the_root(served: Served) -> None:
    """The reported attack: a referrer whose subject digest is `sha256:../../…` wrote outside."""
    before = _outside(served.base)
    _, _, plain = _image(served, "hr/subject")
    doc = json.loads(plain)
    # five `..` from _referrers/<subject> reach base/, the directory around the root
    for bad in ("sha256:../../../../../escaped", "sha256:../../../../../../" + served.base.name + "/escaped",
                "sha256:" + "a" * 63 + "/", "md5:" + "a" * 32, "sha256:" + "A" * 64, 7):  # fmt: skip
        doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": bad, "size": 2}
        body = json.dumps(doc).encode()
        status, err, _ = served.request("PUT", "/v2/hr/subject/manifests/v1", body, {"Content-Type": OCI_MANIFEST})
        assert (status, _code(err)) == (400, "MANIFEST_INVALID"), (bad, err)
        # a refused manifest is not stored under its tag or its digest
        status, _, _ = served.request("GET", f"/v2/hr/subject/manifests/{_digest(body)}")
        assert status == 404
    assert _outside(served.base) == before
    assert not (served.base / "escaped").exists()


def test_subject_that_is_valid_still_works(served: Served) -> None:
    _, _, plain = _image(served, "hr/ok")
    status, _, hdrs = served.request("PUT", "/v2/hr/ok/manifests/v1", plain, {"Content-Type": OCI_MANIFEST})
    assert status == 201
    subject = hdrs["Docker-Content-Digest"]
    doc = json.loads(plain)
    doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(plain)}
    body = json.dumps(doc).encode()
    status, _, hdrs = served.request("PUT", f"/v2/hr/ok/manifests/{_digest(body)}", body,
                                     {"Content-Type": OCI_MANIFEST})  # fmt: skip
    assert status == 201 and hdrs["OCI-Subject"] == subject
    status, idx, _ = served.request("GET", f"/v2/hr/ok/referrers/{subject}")
    assert status == 200 and [m["digest"] for m in idx["manifests"]] == [_digest(body)]


@pytest.mark.parametrize("esc", ESCAPES)
def test_blob_and_referrer_digests_in_urls(served: Served, esc: str) -> None:
    before = _outside(served.base)
    _image(served, "hr/urls")
    for method in ("GET", "HEAD", "DELETE"):
        status, doc, _ = served.request(method, f"/v2/hr/urls/blobs/sha256:{esc}")
        # a `/` inside the digest may split the route: then no route matches (404), as
        # distribution's router answers; otherwise the digest itself is refused
        assert status in (400, 404), (method, status, doc)
        if method != "HEAD" and status == 400:
            assert _code(doc) == "DIGEST_INVALID"
    status, doc, _ = served.request("GET", f"/v2/hr/urls/referrers/sha256:{esc}")
    assert status in (400, 404) and _code(doc) in ("DIGEST_INVALID", "NAME_UNKNOWN"), doc
    assert _outside(served.base) == before


def test_blob_digest_with_unknown_or_malformed_algorithm(served: Served) -> None:
    for bad in ("md5:" + "a" * 32, "sha384:" + "a" * 96, "sha256:" + "a" * 63, "sha256:" + "g" * 64,
                "sha512:" + "a" * 64, "sha256:..", "sha256%3A.."):  # fmt: skip
        status, doc, _ = served.request("GET", f"/v2/hr/urls/blobs/{bad}")
        assert (status, _code(doc)) == (400, "DIGEST_INVALID"), (bad, doc)
    # a newline ends the route's match: no route, 404, as distribution's router answers
    status, doc, _ = served.request("GET", "/v2/hr/urls/blobs/sha256:" + "a" * 64 + "%0A")
    assert status in (400, 404) and _code(doc) in ("DIGEST_INVALID", "NAME_UNKNOWN"), doc


def test_cross_repo_mount_values(served: Served) -> None:
    before = _outside(served.base)
    _, layer, _ = _image(served, "hr/src")
    status, doc, _ = served.request("POST", "/v2/hr/dst/blobs/uploads/?mount=sha256:..%2F..%2F..%2Fescaped&from=hr/src")
    assert (status, _code(doc)) == (400, "DIGEST_INVALID")
    status, doc, _ = served.request("POST", "/v2/hr/dst/blobs/uploads/?mount=md5:" + "a" * 32 + "&from=hr/src")
    assert (status, _code(doc)) == (400, "DIGEST_INVALID")
    for src in ("..%2F..%2F..%2Fescaped", "hr/../../escaped", "%2Fetc", "HR/src"):
        status, doc, _ = served.request("POST", f"/v2/hr/dst/blobs/uploads/?mount={layer}&from={src}")
        assert (status, _code(doc)) == (400, "NAME_INVALID"), (src, doc)
    # a refused mount opened no upload session
    assert not any((served.root / "uploads").iterdir())
    status, _, _ = served.request("POST", f"/v2/hr/dst/blobs/uploads/?mount={layer}&from=hr/src")
    assert status == 201
    assert _outside(served.base) == before


def test_upload_session_ids_and_digest_parameter(served: Served) -> None:
    before = _outside(served.base)
    for uid in ("..", "..%2F..%2F..%2Fescaped", "%2E%2E", "ABCDEF", "0" * 65, "x" * 8):
        for method in ("GET", "PATCH", "PUT", "DELETE"):
            status, doc, _ = served.request(method, f"/v2/hr/up/blobs/uploads/{uid}?digest={_digest(b'')}", b"")
            assert status == 404, (uid, method, doc)
            assert _code(doc) in ("BLOB_UPLOAD_UNKNOWN", "NAME_UNKNOWN"), (uid, method, doc)
    status, _, hdrs = served.request("POST", "/v2/hr/up/blobs/uploads/")
    assert status == 202
    loc = hdrs["Location"]
    for bad in ("sha256:..%2F..%2F..%2Fescaped", "sha256:../../../escaped", "sha1:" + "a" * 40, ""):
        status, doc, _ = served.request("PUT", f"{loc}?digest={bad}", b"data")
        assert (status, _code(doc)) == (400, "DIGEST_INVALID"), (bad, doc)
    status, doc, _ = served.request("POST", "/v2/hr/up/blobs/uploads/?digest=sha256:..%2F..%2Fescaped", b"data")
    assert (status, _code(doc)) == (400, "DIGEST_INVALID")
    status, _, _ = served.request("DELETE", loc)
    assert status == 204
    assert _outside(served.base) == before


def test_manifest_references_and_tags(served: Served) -> None:
    before = _outside(served.base)
    _, _, body = _image(served, "hr/tags")
    ct = {"Content-Type": OCI_MANIFEST}
    for ref in ("..", "%2E%2E", "..%2F..%2F..%2Fescaped", ".hidden", "-x", "a" * 129):
        status, doc, _ = served.request("PUT", f"/v2/hr/tags/manifests/{ref}", body, ct)
        assert _refused(ref, status, doc, "TAG_INVALID"), (ref, doc)
        status, doc, _ = served.request("DELETE", f"/v2/hr/tags/manifests/{ref}")
        assert _refused(ref, status, doc, "TAG_INVALID"), (ref, doc)
    for ref in ("sha256:..%2F..%2Fescaped", "md5:" + "a" * 32):
        for method in ("PUT", "GET", "DELETE"):
            status, doc, _ = served.request(method, f"/v2/hr/tags/manifests/{ref}", body if method == "PUT" else None, ct)
            assert _refused(ref, status, doc, "DIGEST_INVALID"), (ref, method, doc)
    for ref in ("sha256:..", "md5:" + "a" * 32):  # no slash: the reference itself is refused
        status, doc, _ = served.request("DELETE", f"/v2/hr/tags/manifests/{ref}")
        assert (status, _code(doc)) == (400, "DIGEST_INVALID"), (ref, doc)
    for tag in ("..", "..%2F..%2Fescaped", "a%0Ab"):
        status, doc, _ = served.request("PUT", f"/v2/hr/tags/manifests/v1?tag={tag}", body, ct)
        assert (status, _code(doc)) == (400, "TAG_INVALID"), (tag, doc)
    status, _, _ = served.request("PUT", "/v2/hr/tags/manifests/v1", body, ct)
    assert status == 201
    assert _outside(served.base) == before


def test_repository_names(served: Served) -> None:
    before = _outside(served.base)
    for name in ("hr/%2E%2E/%2E%2E/escaped", "hr/..%2F..%2Fescaped", "HR/x", "hr//x", "hr/x%00y"):
        status, doc, _ = served.request("POST", f"/v2/{name}/blobs/uploads/?digest={_digest(b'x')}", b"x")
        assert status in (400, 404), (name, doc)
        assert _code(doc) in ("NAME_INVALID", "NAME_UNKNOWN"), (name, doc)
    assert _outside(served.base) == before


# -- the client: a hostile registry answers the daemon's pull --------------------------------

MiB = 1 << 20
SAFETY = 256 * MiB  # an endless body ends here, so the old code could be run without an OOM


class _Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    routes: dict[str, Callable[[_Hostile], None]] = {}
    seen: list[str] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.seen.append(self.path)
        if self.path == "/v2/":
            return self.send_json(b"{}")
        fn = self.routes.get(self.path)
        if fn is None:
            return self.send_json(b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}', 404)
        try:
            fn(self)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up: what a capped client does

    do_HEAD = do_GET

    def send_json(self, body: bytes, status: int = 200, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_endless(self, ctype: str, *, announce: int | None = None) -> None:
        """An endless body (up to SAFETY): chunked, or under a huge Content-Length."""
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        if announce is not None:
            self.send_header("Content-Length", str(announce))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b" " * MiB
        sent = 0
        while sent < SAFETY:
            if announce is None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                self.wfile.write(chunk)
            sent += len(chunk)
        self.close_connection = True


@dataclass
class Hostile:
    host: str
    routes: dict[str, Callable[[_Hostile], None]]
    seen: list[str]


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    handler = type("Handler", (_Hostile,), {"routes": {}, "seen": []})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield Hostile(f"127.0.0.1:{srv.server_address[1]}", handler.routes, handler.seen)
    srv.shutdown()
    srv.server_close()
    t.join(timeout=10)


def _peak_reset(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM, the peak RSS


def _peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _blob_store(d: Daemon) -> set[str]:
    root = d.data_root / "blobs"
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _pull_fails(daemon: Daemon, docker_cli: Any, ref: str, *needles: str) -> str:
    """Pull ref through the docker CLI: it must fail with one of needles in its message,
    the daemon's peak RSS must stay far below what the registry offered, and the daemon's
    blob store (ingest included) and image list must be as before."""
    pid = daemon.proc.pid
    blobs = _blob_store(daemon)
    _peak_reset(pid)
    base_kib = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    res = docker_cli("pull", ref, check=False, timeout=120)
    assert res.returncode != 0, res.stdout
    msg = (res.stdout + res.stderr).lower()
    assert any(n in msg for n in needles), msg
    grew = (_peak_kib(pid) - base_kib) // 1024
    assert grew < 64, f"the daemon's peak RSS grew {grew} MiB while a registry fed it"
    assert _blob_store(daemon) == blobs
    assert docker_cli("images", "-q", ref, check=True).stdout.strip() == ""
    return msg


def _endless_manifest(announce: int | None) -> Callable[[_Hostile], None]:
    return lambda h: h.send_endless(OCI_MANIFEST, announce=announce)


@pytest.mark.parametrize("announce", [1 << 30, None], ids=["1GiB-announced", "chunked-endless"])
def test_huge_manifest_is_cut_off(daemon: Daemon, busybox: str, docker_cli: Any, hostile: Hostile,
                                  announce: int | None) -> None:  # fmt: skip
    hostile.routes["/v2/evil/big/manifests/latest"] = _endless_manifest(announce)
    _pull_fails(daemon, docker_cli, f"{hostile.host}/evil/big:latest", "too large")


def _image_docs(config: bytes, layer_size: int, config_size: int | None = None) -> tuple[bytes, str, str]:
    layer_digest = "sha256:" + "1" * 64
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": _digest(config), "size": config_size or len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": layer_size}],
    }).encode()  # fmt: skip
    return manifest, _digest(config), layer_digest


def test_endless_config_is_cut_off(daemon: Daemon, busybox: str, docker_cli: Any, hostile: Hostile) -> None:
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "2" * 64]}}).encode()  # fmt: skip
    manifest, cfg_digest, _ = _image_docs(config, 10)
    hostile.routes["/v2/evil/cfg/manifests/latest"] = lambda h: h.send_json(manifest, ctype=OCI_MANIFEST)
    hostile.routes[f"/v2/evil/cfg/blobs/{cfg_digest}"] = lambda h: h.send_endless("application/octet-stream")
    _pull_fails(daemon, docker_cli, f"{hostile.host}/evil/cfg:latest", "larger than")


def test_config_announced_too_large(daemon: Daemon, busybox: str, docker_cli: Any, hostile: Hostile) -> None:
    manifest, _, _ = _image_docs(b"{}", 10, config_size=1 << 30)
    hostile.routes["/v2/evil/cfg2/manifests/latest"] = lambda h: h.send_json(manifest, ctype=OCI_MANIFEST)
    _pull_fails(daemon, docker_cli, f"{hostile.host}/evil/cfg2:latest", "too large")
    assert not any("/blobs/" in p for p in hostile.seen if "/evil/cfg2/" in p)


def test_endless_layer_stops_at_its_size(daemon: Daemon, busybox: str, docker_cli: Any, hostile: Hostile) -> None:
    """A layer body longer than its descriptor: cut at the size, the partial ingest removed."""
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "2" * 64]}}).encode()  # fmt: skip
    manifest, cfg_digest, layer_digest = _image_docs(config, 3 * MiB)
    hostile.routes["/v2/evil/layer/manifests/latest"] = lambda h: h.send_json(manifest, ctype=OCI_MANIFEST)
    hostile.routes[f"/v2/evil/layer/blobs/{cfg_digest}"] = lambda h: h.send_json(config, ctype="application/octet-stream")
    hostile.routes[f"/v2/evil/layer/blobs/{layer_digest}"] = lambda h: h.send_endless("application/octet-stream")
    _pull_fails(daemon, docker_cli, f"{hostile.host}/evil/layer:latest", "larger than")
    assert not any((daemon.data_root / "blobs" / "ingest").iterdir())


@pytest.mark.parametrize(
    "doc,needle",
    [
        ({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
          "config": {"mediaType": OCI_CONFIG, "digest": "sha256:../../../../../escaped", "size": 2},
          "layers": []}, "invalid descriptor"),
        ({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
          "config": {"mediaType": OCI_CONFIG, "digest": "sha256:" + "a" * 64, "size": 2},
          "layers": [{"mediaType": OCI_LAYER, "digest": "md5:" + "a" * 32, "size": 1}]}, "unsupported digest"),
        ({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
          "config": {"mediaType": OCI_CONFIG, "digest": "sha256:" + "a" * 64, "size": 2},
          "layers": [{"mediaType": "../../tar", "digest": "sha256:" + "b" * 64, "size": 1}]}, "media type"),
        ({"schemaVersion": 2, "mediaType": "../../evil", "config": {}, "layers": []}, "unsupported media type"),
        ({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
          "manifests": [{"mediaType": OCI_MANIFEST, "digest": "sha256:../../../../other/manifests/x", "size": 2,
                         "platform": {"os": "linux", "architecture": "amd64"}}]}, "invalid descriptor"),
    ],
    ids=["config-digest-path", "unknown-algorithm", "layer-media-type", "manifest-media-type", "index-entry"],
)  # fmt: skip
def test_hostile_descriptors_are_refused(daemon: Daemon, busybox: str, docker_cli: Any, hostile: Hostile,
                                         doc: dict[str, Any], needle: str) -> None:  # fmt: skip
    body = json.dumps(doc).encode()
    ctype = str(doc["mediaType"]) if "/" in str(doc["mediaType"]) else OCI_MANIFEST
    hostile.routes["/v2/evil/desc/manifests/latest"] = lambda h: h.send_json(body, ctype=ctype)
    _pull_fails(daemon, docker_cli, f"{hostile.host}/evil/desc:latest", needle)
    # nothing but the ping and the manifest was asked for: no hostile digest became a URL
    assert set(hostile.seen) <= {"/v2/", "/v2/evil/desc/manifests/latest"}, hostile.seen
