"""Our `dockyard registry serve` against real clients other than our daemon, and against
Debian's `docker-registry` (distribution 2.8) as the reference server.

- skopeo (copy in from a `docker save` archive, inspect, list-tags, copy out to an OCI
  layout and back, delete; htpasswd and token credentials; TLS with a trusted CA);
- Debian's real dockerd pushing to and pulling from our server (and images crossing
  between it and our daemon through the registry);
- the same HTTP request sequences sent to our server and to `docker-registry`, compared
  step by step (status, key headers, OCI error codes), with distribution 2.8's departures
  from the v1.1 spec written down where they are expected;
- an interrupted upload resumed from the upload status (`Range`), and our registry client
  over https with the self-signed CA trusted.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from tests.conftest import HOST_TOOLS, RealDocker, Runner
from tests.integration.test_registry import (
    DEBIAN_REGISTRY,
    Registry,
    _free_port,
    _htpasswd,
    _ours,
    _start,
    _stop,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the daemon mounts overlayfs)")

SKOPEO = HOST_TOOLS["skopeo"][0]
MT_DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
MT_OCI = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _digest(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def _session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # no proxies, no netrc: loopback only
    return s


@pytest.fixture(scope="module")
def busybox_archive(docker_cli: Runner, busybox: str) -> Iterator[Path]:
    """`docker save busybox` from our daemon: skopeo's and the real dockerd's source image."""
    d = Path(tempfile.mkdtemp(prefix="dy-bbtar-", dir="/tmp"))
    docker_cli("save", "-o", str(d / "bb.tar"), busybox)
    yield d / "bb.tar"
    shutil.rmtree(d, ignore_errors=True)


def _debian_registry(delete: bool = True) -> Registry:
    root = Path(tempfile.mkdtemp(prefix="dy-dreg-", dir="/tmp"))
    port = _free_port()
    (root / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root / 'data'}\n  delete:\n    enabled: {str(delete).lower()}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    return _start([str(DEBIAN_REGISTRY), "serve", str(root / "config.yml")], port, root)


# -- skopeo ------------------------------------------------------------------------------


def _skopeo(tmp: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(tmp), "REGISTRY_AUTH_FILE": str(tmp / "auth.json")}
    res = subprocess.run(
        [SKOPEO, "--command-timeout", "60s", *args],
        capture_output=True, text=True, env=env, timeout=90, check=False,
    )  # fmt: skip
    if check and res.returncode != 0:
        raise AssertionError(f"skopeo {args} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res


@pytest.mark.usefixtures("host_tools")
def test_skopeo_copy_inspect_list_delete(busybox_archive: Path, tmp_path: Path) -> None:
    reg = _ours()
    try:
        t = "--tls-verify=false"
        src = f"docker://{reg.host}/sk/bb"
        _skopeo(tmp_path, "copy", "--dest-tls-verify=false", f"docker-archive:{busybox_archive}", f"{src}:1")
        info = json.loads(_skopeo(tmp_path, "inspect", t, f"{src}:1").stdout)
        raw = _skopeo(tmp_path, "inspect", t, "--raw", f"{src}:1").stdout.encode()
        assert info["Digest"] == _digest(raw)
        assert json.loads(raw)["mediaType"] == MT_DOCKER
        assert info["Os"] == "linux" and info["Architecture"] == "amd64" and len(info["Layers"]) == 1
        config = json.loads(_skopeo(tmp_path, "inspect", t, "--config", f"{src}:1").stdout)
        assert config["config"]["Cmd"] == ["sh"]

        # registry to registry (another repository and tag), then list the tags
        _skopeo(tmp_path, "copy", "--src-tls-verify=false", "--dest-tls-verify=false", f"{src}:1", f"{src}:2")
        _skopeo(tmp_path, "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                f"{src}:1", f"docker://{reg.host}/sk/other:x")  # fmt: skip
        tags = json.loads(_skopeo(tmp_path, "list-tags", t, src).stdout)
        assert tags == {"Repository": f"{reg.host}/sk/bb", "Tags": ["1", "2"]}

        # out to an OCI layout, and back in as an OCI manifest
        layout = tmp_path / "layout"
        _skopeo(tmp_path, "copy", "--src-tls-verify=false", f"{src}:1", f"oci:{layout}:one")
        index = json.loads((layout / "index.json").read_text())
        desc = index["manifests"][0]
        assert desc["annotations"]["org.opencontainers.image.ref.name"] == "one"
        oci_manifest = (layout / "blobs" / "sha256" / desc["digest"][7:]).read_bytes()
        assert json.loads(oci_manifest)["mediaType"] == MT_OCI
        _skopeo(tmp_path, "copy", "--dest-tls-verify=false", f"oci:{layout}:one", f"{src}:oci")
        raw_oci = _skopeo(tmp_path, "inspect", t, "--raw", f"{src}:oci").stdout.encode()
        assert raw_oci == oci_manifest  # stored byte for byte
        assert json.loads(_skopeo(tmp_path, "inspect", t, f"{src}:oci").stdout)["Layers"] == info["Layers"]

        # delete (skopeo resolves the tag, then DELETEs the manifest by digest)
        _skopeo(tmp_path, "delete", t, f"{src}:1")
        res = _skopeo(tmp_path, "inspect", t, f"{src}:1", check=False)
        assert res.returncode != 0 and "manifest unknown" in res.stderr, res.stderr
        res = _skopeo(tmp_path, "inspect", t, f"{src}:2", check=False)
        assert res.returncode != 0  # same digest: the revision is gone, so is every tag on it
        assert json.loads(_skopeo(tmp_path, "list-tags", t, src).stdout)["Tags"] == ["oci"]
        assert (
            json.loads(_skopeo(tmp_path, "inspect", t, f"docker://{reg.host}/sk/other:x").stdout)["Digest"]
            == info["Digest"]
        )
    finally:
        _stop(reg)


@pytest.mark.usefixtures("host_tools")
@pytest.mark.parametrize("kind", ["htpasswd", "token"])
def test_skopeo_with_credentials(busybox_archive: Path, tmp_path: Path, kind: str) -> None:
    pw = _htpasswd(tmp_path / "pw")
    reg = _ours(["--htpasswd", str(pw), *(["--token-auth"] if kind == "token" else [])])
    try:
        dest = f"docker://{reg.host}/auth/bb:1"
        archive = f"docker-archive:{busybox_archive}"
        res = _skopeo(tmp_path, "copy", "--dest-tls-verify=false", archive, dest, check=False)
        assert res.returncode != 0 and (
            "authentication required" in res.stderr or "unauthorized" in res.stderr
        )
        res = _skopeo(tmp_path, "copy", "--dest-tls-verify=false", "--dest-creds", "alice:wrong", archive, dest,
                      check=False)  # fmt: skip
        assert res.returncode != 0
        _skopeo(tmp_path, "copy", "--dest-tls-verify=false", "--dest-creds", "alice:s3cret", archive, dest)
        creds = ("--tls-verify=false", "--creds", "alice:s3cret")
        info = json.loads(_skopeo(tmp_path, "inspect", *creds, dest).stdout)
        assert info["Digest"].startswith("sha256:")
        assert json.loads(_skopeo(tmp_path, "list-tags", *creds, dest[:-2]).stdout)["Tags"] == ["1"]
        assert _skopeo(tmp_path, "inspect", "--tls-verify=false", dest, check=False).returncode != 0
        _skopeo(tmp_path, "delete", *creds, dest)
        assert _skopeo(tmp_path, "inspect", *creds, dest, check=False).returncode != 0
    finally:
        _stop(reg)


# -- Debian's real dockerd ---------------------------------------------------------------


def test_real_dockerd_push_pull(
    real_docker: RealDocker, docker_cli: Runner, busybox: str, busybox_archive: Path, unique
) -> None:  # type: ignore[no-untyped-def]
    """dockerd 20.10 pushes to our registry and pulls from it (127.0.0.0/8 is insecure by default
    for dockerd); images cross between it and our daemon through the registry."""
    reg = _ours()
    want = docker_cli("image", "inspect", "-f", "{{.Id}}", busybox).stdout.strip()
    theirs = f"{reg.host}/{unique('real')}:v1"
    ours = f"{reg.host}/{unique('mine')}:v1"
    marker = ours.rpartition("/")[2].partition(":")[0]
    try:
        real_docker.cli("load", "-i", str(busybox_archive))
        real_docker.cli("tag", busybox, theirs)
        out = real_docker.cli("push", theirs).stdout
        assert "v1: digest: sha256:" in out, out
        digest = next(ln for ln in out.splitlines() if ln.startswith("v1: digest:")).split()[2]
        assert "Layer already exists" in real_docker.cli("push", theirs).stdout
        real_docker.cli("rmi", theirs)
        out = real_docker.cli("pull", theirs).stdout
        assert f"Digest: {digest}" in out and "Pull complete" not in out, out  # the layer is still local
        real_docker.cli("rmi", theirs, busybox)
        out = real_docker.cli("pull", theirs).stdout
        assert f"Status: Downloaded newer image for {theirs}" in out, out
        assert real_docker.cli("image", "inspect", "-f", "{{.Id}}", theirs).stdout.strip() == want
        by_digest = f"{theirs.rpartition(':')[0]}@{digest}"
        assert "Image is up to date" in real_docker.cli("pull", by_digest).stdout

        # what the real dockerd pushed, our daemon pulls
        docker_cli("pull", theirs)
        assert docker_cli("image", "inspect", "-f", "{{.Id}}", theirs).stdout.strip() == want
        # what ours pushed, the real one pulls: an image with a layer the real dockerd cannot have
        docker_cli(
            "run", "--name", marker, "--network", "none", busybox, "sh", "-c", f"echo {marker} > /marker"
        )
        docker_cli("commit", marker, ours)
        docker_cli("rm", marker)
        mine = docker_cli("image", "inspect", "-f", "{{.Id}}", ours).stdout.strip()
        docker_cli("push", ours)
        out = real_docker.cli("pull", ours).stdout
        assert "Pull complete" in out and f"Status: Downloaded newer image for {ours}" in out, out
        assert real_docker.cli("image", "inspect", "-f", "{{.Id}}", ours).stdout.strip() == mine
        run = real_docker.cli("run", "--rm", "--network", "none", ours, "cat", "/marker")
        assert run.stdout.strip() == marker
    finally:
        for ref in (theirs, ours, busybox, by_digest if "by_digest" in locals() else theirs):
            real_docker.cli("rmi", "-f", ref, check=False)
        docker_cli("rm", "-f", marker, check=False)
        docker_cli("rmi", "-f", theirs, ours, check=False)
        _stop(reg)


# -- the same request sequences to our server and to distribution 2.8 -------------------

KEY_HEADERS = ("Docker-Content-Digest", "Location", "Range", "Docker-Upload-UUID", "Link")


def _sequence(base: str) -> dict[str, Any]:
    """Send one fixed sequence of requests; record per step what must agree between servers."""
    s = _session()
    out: dict[str, Any] = {}

    def call(name: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        url = path if path.startswith("http") else base + path
        r = s.request(
            method, url, data=body or None, headers=headers or {}, allow_redirects=False, timeout=30
        )
        codes: list[str] = []
        if r.content and "json" in r.headers.get("Content-Type", ""):
            codes = [e["code"] for e in (r.json() or {}).get("errors", [])]
        rec: dict[str, Any] = {
            "status": r.status_code,
            "headers": [h for h in KEY_HEADERS if h in r.headers],
            "codes": codes,
        }
        if "Range" in r.headers:
            rec["range"] = r.headers["Range"]
        if "Link" in r.headers:
            target = r.headers["Link"].split(";")[0].strip("<> ")
            rec["link"] = (urlparse(target).path, parse_qs(urlparse(target).query))
        if "Docker-Content-Digest" in r.headers and r.status_code < 300:
            rec["digest"] = r.headers["Docker-Content-Digest"]
        if method == "GET" and r.status_code == 200 and ("/tags/list" in path or "/_catalog" in path):
            rec["body"] = r.json()
        if "/manifests/" in path and method in ("GET", "HEAD") and r.status_code == 200:
            rec["content-type"] = r.headers.get("Content-Type")
        out[name] = rec
        return r

    def loc(r: requests.Response) -> str:
        location = r.headers["Location"]
        return location if location.startswith("http") else base + location

    def with_digest(url: str, digest: str) -> str:
        return url + ("&" if "?" in url else "?") + "digest=" + digest

    def push(repo: str, data: bytes) -> str:  # POST + PUT: the one upload both servers take alike
        r = s.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=30)
        assert s.put(with_digest(loc(r), _digest(data)), data=data, timeout=30).status_code == 201
        return _digest(data)

    octet = {"Content-Type": "application/octet-stream"}
    a, chunked, single = b"monolithic blob a", b"chunk-one/chunk-two", b"single post blob"
    call("version check", "GET", "/v2/")
    call("blob HEAD unknown", "HEAD", f"/v2/cmp/a/blobs/{_digest(a)}")
    call("blob GET unknown", "GET", f"/v2/cmp/a/blobs/{_digest(a)}")
    r = call("monolithic POST", "POST", "/v2/cmp/a/blobs/uploads/")
    call("monolithic PUT", "PUT", with_digest(loc(r), _digest(a)), a, octet)
    call("blob HEAD known", "HEAD", f"/v2/cmp/a/blobs/{_digest(a)}")
    call("blob GET with Range", "GET", f"/v2/cmp/a/blobs/{_digest(a)}", headers={"Range": "bytes=0-3"})
    call(
        "single POST with digest", "POST", f"/v2/cmp/a/blobs/uploads/?digest={_digest(single)}", single, octet
    )
    r = call("chunked POST", "POST", "/v2/cmp/a/blobs/uploads/")
    r = call("chunk 1 PATCH", "PATCH", loc(r), chunked[:10], {**octet, "Content-Range": "0-9"})
    u = loc(r)
    call("upload status GET", "GET", u)
    end = len(chunked) - 1
    r = call("chunk 2 PATCH", "PATCH", u, chunked[10:], {**octet, "Content-Range": f"10-{end}"})
    call("chunked PUT", "PUT", with_digest(loc(r), _digest(chunked)), b"", {"Content-Length": "0"})
    call("chunked blob HEAD", "HEAD", f"/v2/cmp/a/blobs/{_digest(chunked)}")
    r = call("out-of-order POST", "POST", "/v2/cmp/a/blobs/uploads/")
    call("out-of-order PATCH", "PATCH", loc(r), b"56789", {**octet, "Content-Range": "5-9"})
    r = call("bad digest POST", "POST", "/v2/cmp/a/blobs/uploads/")
    call("bad digest PUT", "PUT", with_digest(loc(r), _digest(b"other")), b"not other", octet)
    call("bad digest blob HEAD", "HEAD", f"/v2/cmp/a/blobs/{_digest(b'not other')}")
    r = call("cancel POST", "POST", "/v2/cmp/a/blobs/uploads/")
    u = loc(r)
    call("cancel DELETE", "DELETE", u)
    call("cancelled upload status GET", "GET", u)
    call("cross-repo mount", "POST", f"/v2/cmp/b/blobs/uploads/?mount={_digest(a)}&from=cmp/a")
    call("mounted blob HEAD", "HEAD", f"/v2/cmp/b/blobs/{_digest(a)}")

    cfg = push("cmp/a", b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}')
    push("cmp/a", single)  # distribution 2.8 took the single POST as a plain POST: upload it alike

    def manifest(mt: str, layer: str, size: int, oci: bool = False) -> bytes:
        cmt = (
            "application/vnd.oci.image.config.v1+json"
            if oci
            else "application/vnd.docker.container.image.v1+json"
        )
        lmt = (
            "application/vnd.oci.image.layer.v1.tar+gzip"
            if oci
            else "application/vnd.docker.image.rootfs.diff.tar.gzip"
        )
        return json.dumps({
            "schemaVersion": 2, "mediaType": mt,
            "config": {"mediaType": cmt, "digest": cfg, "size": 77},
            "layers": [{"mediaType": lmt, "digest": layer, "size": size}],
        }).encode()  # fmt: skip

    missing = _digest(b"never uploaded")
    call("manifest PUT missing blob", "PUT", "/v2/cmp/a/manifests/bad", manifest(MT_DOCKER, missing, 5),
         {"Content-Type": MT_DOCKER})  # fmt: skip
    call("manifest PUT not JSON", "PUT", "/v2/cmp/a/manifests/bad", b"{not json", {"Content-Type": MT_DOCKER})
    m1 = manifest(MT_DOCKER, _digest(a), len(a))
    call("manifest PUT docker v2", "PUT", "/v2/cmp/a/manifests/v1", m1, {"Content-Type": MT_DOCKER})
    m2 = manifest(MT_OCI, _digest(chunked), len(chunked), oci=True)
    call("manifest PUT oci", "PUT", "/v2/cmp/a/manifests/v2", m2, {"Content-Type": MT_OCI})
    m3 = manifest(MT_OCI, _digest(single), len(single), oci=True)
    call("manifest PUT by digest", "PUT", f"/v2/cmp/a/manifests/{_digest(m3)}", m3, {"Content-Type": MT_OCI})
    call("manifest PUT digest mismatch", "PUT", f"/v2/cmp/a/manifests/{_digest(b'x')}", m3,
         {"Content-Type": MT_OCI})  # fmt: skip
    idx = json.dumps({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [
        {"mediaType": MT_OCI, "digest": _digest(m2), "size": len(m2),
         "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()  # fmt: skip
    call("index PUT", "PUT", "/v2/cmp/a/manifests/multi", idx, {"Content-Type": MT_OCI_INDEX})
    for t in ("v3", "v4", "v5"):
        call(f"tag {t} PUT", "PUT", f"/v2/cmp/a/manifests/{t}", m1, {"Content-Type": MT_DOCKER})
    call("manifest GET Accept docker", "GET", "/v2/cmp/a/manifests/v1", headers={"Accept": MT_DOCKER})
    call("manifest HEAD Accept docker", "HEAD", "/v2/cmp/a/manifests/v1", headers={"Accept": MT_DOCKER})
    call("manifest GET Accept oci", "GET", "/v2/cmp/a/manifests/v2", headers={"Accept": MT_OCI})
    call("manifest GET by digest", "GET", f"/v2/cmp/a/manifests/{_digest(m3)}", headers={"Accept": MT_OCI})
    call("index GET Accept index", "GET", "/v2/cmp/a/manifests/multi",
         headers={"Accept": f"{MT_OCI_INDEX}, {MT_OCI}"})  # fmt: skip
    call("index GET Accept manifest only", "GET", "/v2/cmp/a/manifests/multi", headers={"Accept": MT_OCI})
    call("manifest GET unknown tag", "GET", "/v2/cmp/a/manifests/nope", headers={"Accept": MT_DOCKER})
    call("manifest GET unknown repository", "GET", "/v2/cmp/none/manifests/v1", headers={"Accept": MT_DOCKER})
    call("tags/list", "GET", "/v2/cmp/a/tags/list")
    call("tags/list n=2", "GET", "/v2/cmp/a/tags/list?n=2")
    call("tags/list n=2 last=v1", "GET", "/v2/cmp/a/tags/list?n=2&last=v1")
    call("tags/list unknown repository", "GET", "/v2/cmp/none/tags/list")
    call("catalog", "GET", "/v2/_catalog")
    call("catalog n=1", "GET", "/v2/_catalog?n=1")
    call("catalog n=1 last=cmp/a", "GET", "/v2/_catalog?n=1&last=cmp/a")
    call("referrers", "GET", f"/v2/cmp/a/referrers/{_digest(m2)}")
    call("manifest DELETE by tag", "DELETE", "/v2/cmp/a/manifests/v5")
    call("manifest DELETE by digest", "DELETE", f"/v2/cmp/a/manifests/{_digest(m3)}")
    call("deleted manifest GET", "GET", f"/v2/cmp/a/manifests/{_digest(m3)}", headers={"Accept": MT_OCI})
    call("manifest DELETE again", "DELETE", f"/v2/cmp/a/manifests/{_digest(m3)}")
    call("blob DELETE", "DELETE", f"/v2/cmp/b/blobs/{_digest(a)}")
    call("deleted blob HEAD", "HEAD", f"/v2/cmp/b/blobs/{_digest(a)}")
    call("blob DELETE unknown", "DELETE", f"/v2/cmp/b/blobs/{missing}")
    call("invalid repository name", "GET", "/v2/Cmp/UPPER/tags/list")
    return out


# Where distribution 2.8 answers differently, each with the reason. The value is what each
# server answers: (distribution 2.8, ours) as (status, error codes).
DIFFERENCES: dict[str, tuple[tuple[int, list[str]], tuple[int, list[str]], str]] = {
    "single POST with digest": (
        (202, []),
        (201, []),
        (
            "distribution 2.8 has no single-request monolithic upload; the spec lets a registry answer "
            "202 with a session instead, and clients then PUT (ours stores the blob: 201)"
        ),
    ),
    "out-of-order PATCH": (
        (202, []),
        (416, []),
        (
            "distribution 2.8 ignores Content-Range on PATCH and appends (v3 checks it); the spec: "
            "an out-of-order chunk MUST get 416"
        ),
    ),
    "manifest GET unknown repository": (
        (404, ["MANIFEST_UNKNOWN"]),
        (404, ["NAME_UNKNOWN"]),
        "distribution 2.8 does not look the repository up for manifests; both codes are the spec's",
    ),
    "tags/list n=2": (
        (200, []),
        (200, []),
        (
            "distribution 2.8 ignores n/last on tags/list (no Link), and lists tags unsorted; the spec "
            "wants lexical order and honours n/last (ours: 2 tags and a Link)"
        ),
    ),
    "tags/list n=2 last=v1": ((200, []), (200, []), "as above"),
    "referrers": (
        (404, []),
        (200, []),
        "the referrers API is distribution-spec v1.1; 2.8 predates it (404 page not found, no body)",
    ),
    "manifest DELETE by tag": (
        (400, ["DIGEST_INVALID"]),
        (202, []),
        "distribution 2.8 deletes manifests by digest only; spec v1.1 allows deleting a tag (202)",
    ),
    "invalid repository name": (
        (404, []),
        (400, ["NAME_INVALID"]),
        (
            "distribution 2.8's router does not match an uppercase name (404 page not found); the spec's "
            "code for it is NAME_INVALID"
        ),
    ),
}


@pytest.mark.usefixtures("host_tools")
def test_same_sequences_as_distribution() -> None:
    theirs, ours = _debian_registry(), _ours()
    try:
        want = _sequence(f"http://{theirs.host}")
        got = _sequence(f"http://{ours.host}")
    finally:
        _stop(theirs)
        _stop(ours)
    assert list(want) == list(got)
    for step, w in want.items():
        g = got[step]
        if step in DIFFERENCES:
            (ws, wc), (gs, gc), why = DIFFERENCES[step]
            assert (w["status"], w["codes"]) == (ws, wc), (step, w, why)
            assert (g["status"], g["codes"]) == (gs, gc), (step, g, why)
            continue
        # the same except for headers only one side sends that the spec does not require
        assert g["status"] == w["status"], (step, w, g)
        assert g["codes"] == w["codes"], (step, w, g)
        if step == "blob DELETE":  # ours also names the digest, which the spec does not ask; below
            continue
        assert g["headers"] == w["headers"], (step, w, g)
        for key in ("range", "link", "digest", "content-type"):
            assert g.get(key) == w.get(key), (step, key, w, g)
        if step == "tags/list":  # distribution 2.8 lists tags in storage order, ours sorted (the spec)
            assert g["body"]["tags"] == sorted(w["body"]["tags"]), (step, w, g)
        else:
            assert g.get("body") == w.get("body"), (step, w, g)
    # the documented differences, in detail
    assert want["tags/list n=2"]["body"]["tags"] != ["multi", "v1"]  # unsorted, unpaginated
    assert sorted(want["tags/list n=2"]["body"]["tags"]) == ["multi", "v1", "v2", "v3", "v4", "v5"]
    assert got["tags/list n=2"]["body"] == {"name": "cmp/a", "tags": ["multi", "v1"]}
    assert got["tags/list n=2"]["link"] == ("/v2/cmp/a/tags/list", {"n": ["2"], "last": ["v1"]})
    assert got["tags/list n=2 last=v1"]["body"]["tags"] == ["v2", "v3"]
    # blob DELETE: ours also names the digest (Docker-Content-Digest), which the spec does not ask
    assert want["blob DELETE"]["headers"] == [] and got["blob DELETE"]["headers"] == ["Docker-Content-Digest"]


# -- an interrupted upload, resumed; TLS -------------------------------------------------


def _upload_status(base: str, location: str) -> int:
    r = _session().get(base + location, timeout=10)
    assert r.status_code == 204, r.text
    assert r.headers["Docker-Upload-UUID"] and r.headers["Location"]
    start, _, end = r.headers["Range"].partition("-")
    assert start == "0"
    return int(end) + 1


def test_interrupted_upload_resumed() -> None:
    """A PATCH cut off mid-body keeps what arrived; the upload status (`Range`) says where
    to go on; a chunk at the wrong offset gets 416 and the offset; the rest, then PUT."""
    reg = _ours()
    base = f"http://{reg.host}"
    s = _session()
    blob = os.urandom(3 << 20) + b"tail"
    digest = _digest(blob)
    try:
        r = s.post(f"{base}/v2/resume/me/blobs/uploads/", timeout=10)
        assert r.status_code == 202 and r.headers["Range"] == "0-0"
        location = r.headers["Location"]
        # the connection drops after 2.5 MiB of a PATCH that announced the whole blob
        with socket.create_connection(("127.0.0.1", int(reg.host.rpartition(":")[2])), timeout=10) as c:
            c.sendall(
                f"PATCH {location} HTTP/1.1\r\nHost: {reg.host}\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {len(blob)}\r\n\r\n".encode()
            )
            c.sendall(blob[: (5 << 20) // 2])
        have, deadline = -1, time.monotonic() + 10
        while time.monotonic() < deadline:  # until the server has written what it received
            time.sleep(0.2)
            now = _upload_status(base, location)
            if now == have:
                break
            have = now
        assert 0 < have <= (5 << 20) // 2, have
        # resuming at the wrong offset: 416, and the upload's real size in Range
        r = s.patch(base + location, data=blob[have + 1 :],
                    headers={"Content-Range": f"{have + 1}-{len(blob) - 1}"}, timeout=10)  # fmt: skip
        assert r.status_code == 416 and r.headers["Range"] == f"0-{have - 1}"
        # the next chunk, its status, then the last chunk and the PUT
        mid = have + (len(blob) - have) // 2
        r = s.patch(base + location, data=blob[have:mid], headers={"Content-Range": f"{have}-{mid - 1}"},
                    timeout=10)  # fmt: skip
        assert r.status_code == 202 and r.headers["Range"] == f"0-{mid - 1}", (have, r.headers, r.text)
        assert _upload_status(base, r.headers["Location"]) == mid
        r = s.patch(base + r.headers["Location"], data=blob[mid:],
                    headers={"Content-Range": f"{mid}-{len(blob) - 1}"}, timeout=10)  # fmt: skip
        assert r.status_code == 202
        r = s.put(f"{base}{r.headers['Location']}?digest={digest}", timeout=10)
        assert r.status_code == 201 and r.headers["Docker-Content-Digest"] == digest
        got = s.get(f"{base}/v2/resume/me/blobs/{digest}", timeout=10)
        assert got.status_code == 200 and got.content == blob
        assert s.get(base + location, timeout=10).status_code == 404  # the session is gone
    finally:
        _stop(reg)


@pytest.fixture(scope="module")
def tls_pair() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="dy-tls-", dir="/tmp"))
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"),
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.usefixtures("host_tools")
def test_tls_with_trusted_ca(tls_pair: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`registry serve --tls-cert/--tls-key`: our client over https with the CA trusted
    (and refused without it); skopeo with the CA in --cert-dir."""
    from dockyard import errdefs
    from dockyard.registry.client import AuthConfig, RegistryClient

    cert, key = tls_pair / "cert.pem", tls_pair / "key.pem"
    reg = _ours(["--tls-cert", str(cert), "--tls-key", str(key)])
    layer, config = b"tls layer bytes", b'{"architecture":"amd64","os":"linux"}'
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MT_OCI,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _digest(layer),
                    "size": len(layer)}],
    }).encode()  # fmt: skip
    (tmp_path / "layer").write_bytes(layer)
    (tmp_path / "config").write_bytes(config)

    async def roundtrip() -> bytes:
        async with RegistryClient(reg.host, insecure=False, auth=AuthConfig()) as rc:
            assert rc.base == f"https://{reg.host}"
            await rc.upload_blob("tls/img", _digest(layer), tmp_path / "layer", chunk_size=8)
            await rc.upload_blob("tls/img", _digest(config), tmp_path / "config")
            await rc.put_manifest("tls/img", "v1", manifest, MT_OCI)
            got = await rc.get_manifest("tls/img", "v1")
            assert got.digest == _digest(manifest)
            return await rc.read_blob("tls/img", _digest(layer))

    try:
        # requests/aiohttp/OpenSSL honour these; set them explicitly, whatever the machine has
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "no-such-dir"))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        assert asyncio.run(roundtrip()) == layer
        r = _session().get(f"https://{reg.host}/v2/tls/img/tags/list", verify=str(cert), timeout=10)
        assert r.json() == {"name": "tls/img", "tags": ["v1"]}
        # plain http to the https port fails; so does https without the CA
        with pytest.raises(requests.exceptions.ConnectionError):
            _session().get(f"http://{reg.host}/v2/", timeout=5)
        monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
        with pytest.raises(errdefs.DockyardError, match=r"(?i)certificate"):
            asyncio.run(roundtrip())
        certs = tmp_path / "certs"
        certs.mkdir()
        shutil.copy(cert, certs / "ca.crt")
        res = _skopeo(tmp_path, "inspect", "--raw", f"docker://{reg.host}/tls/img:v1", check=False)
        assert res.returncode != 0 and "certificate" in res.stderr
        res = _skopeo(
            tmp_path, "inspect", "--raw", "--cert-dir", str(certs), f"docker://{reg.host}/tls/img:v1"
        )
        assert res.stdout.encode() == manifest
    finally:
        _stop(reg)


def test_daemon_trusts_a_registry_ca_from_its_certs_dir(tls_pair: Path, unique) -> None:
    """A TLS registry on loopback with its CA in <registry-certs-dir>/<host:port>/ca.crt:
    the daemon pushes and pulls over verified TLS (dockerd's /etc/docker/certs.d); without
    the CA, a loopback registry is an insecure one: TLS without verification first, then
    plain HTTP (dockerd's order), so the same registry still works."""
    from tests.conftest import destroy_daemon, import_busybox, make_daemon, write_daemon_json

    cert, key = tls_pair / "cert.pem", tls_pair / "key.pem"
    reg = _ours(["--tls-cert", str(cert), "--tls-key", str(key)])
    d = make_daemon()
    try:
        certs = d.root / "certs.d"
        (certs / reg.host).mkdir(parents=True)
        shutil.copy(cert, certs / reg.host / "ca.crt")
        d.stop()
        write_daemon_json(d.root, {"registry-certs-dir": str(certs)})
        d.start()
        import_busybox(d.host)
        env = {**os.environ, "DOCKER_HOST": d.host}

        def docker(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=60)

        ref = f"{reg.host}/{unique('tls')}:1"
        assert docker("tag", "busybox", ref).returncode == 0
        pushed = docker("push", ref)
        assert pushed.returncode == 0, pushed.stderr
        image_id = docker("image", "inspect", "-f", "{{.Id}}", ref).stdout
        assert docker("rmi", ref).returncode == 0
        pulled = docker("pull", ref)
        assert pulled.returncode == 0, pulled.stderr
        assert docker("image", "inspect", "-f", "{{.Id}}", ref).stdout == image_id
        # the same registry without its CA: TLS, unverified
        shutil.rmtree(certs / reg.host)
        assert docker("rmi", ref).returncode == 0
        pulled = docker("pull", ref)
        assert pulled.returncode == 0, pulled.stderr
        assert docker("image", "inspect", "-f", "{{.Id}}", ref).stdout == image_id
        res = docker("pull", ref.replace(":1", ":2"))
        assert res.returncode != 0 and "manifest for" in res.stderr and "not found" in res.stderr, res.stderr
    finally:
        destroy_daemon(d)
        _stop(reg)
