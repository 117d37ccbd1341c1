"""The image store holds no lock while a client or a registry is being waited for, nor
while a layer is being extracted.

A tiny registry on loopback (run by the test) serves an image whose layer it stops sending
halfway. While that pull hangs, `docker tag`, `docker import`, `docker commit` and
`docker rmi` of other images each finish within a couple of seconds; then the registry
either sends the rest (the pull completes) or drops the connection (the pull fails and
leaves no image, layer or half-written blob behind)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import Daemon, Runner, wait_for

QUICK = 3.0  # seconds: what "does not block" means here (a tag takes ~0.1 s)
MT_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def _digest(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


@dataclass
class _Image:
    manifest: bytes
    blobs: dict[str, bytes]
    layer: str  # the digest whose download stalls


@dataclass
class StallRegistry:
    """Serves `images` (repo path -> _Image); the layer blob stops after half its bytes
    until `release` is set, then is finished (`drop` False) or cut off (`drop` True)."""

    images: dict[str, _Image] = field(default_factory=dict)
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    drop: bool = False
    host: str = ""


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


class _HashingGzip(io.RawIOBase):
    """Hashes what tarfile writes (the diff ID) and gzips it into `out`."""

    def __init__(self, out: io.BytesIO) -> None:
        self.h = hashlib.sha256()
        self.gz = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0)

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.h.update(b)
        self.gz.write(b)
        return len(b)


def _make_image(seed: str, zeros: int = 0) -> _Image:
    """One gzip layer: 8 MiB of random bytes (incompressible: half of it is a real
    mid-layer stall), or `zeros` bytes of zeros (tiny to send, long to extract)."""
    out = io.BytesIO()
    sink = _HashingGzip(out)
    with tarfile.open(fileobj=sink, mode="w|") as tf:
        ti = tarfile.TarInfo(f"payload-{seed}")
        ti.size = zeros or 8 << 20
        tf.addfile(ti, _Zeros(zeros) if zeros else io.BytesIO(os.urandom(ti.size)))
    sink.gz.close()
    layer = out.getvalue()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sink.h.hexdigest()]},
            "history": [{"created_by": f"stall test {seed}"}],
        }
    ).encode()
    config_desc = {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config)}
    layer_desc = {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer)}
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {**config_desc, "digest": _digest(config)},
            "layers": [{**layer_desc, "digest": _digest(layer)}],
        }
    ).encode()
    return _Image(manifest, {_digest(config): config, _digest(layer): layer}, _digest(layer))


def _handler(reg: StallRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _send(
            self, status: int, body: bytes, ctype: str = "application/json", head: bool = False
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            if status == 200 and ctype == MT_MANIFEST:
                self.send_header("Docker-Content-Digest", _digest(body))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self._serve(head=True)

        def do_GET(self) -> None:
            self._serve(head=False)

        def _serve(self, head: bool) -> None:
            path = self.path.split("?")[0]
            if path == "/v2/":
                return self._send(200, b"{}", head=head)
            for repo, img in reg.images.items():
                if path.startswith(f"/v2/{repo}/manifests/"):
                    return self._send(200, img.manifest, MT_MANIFEST, head)
                if path.startswith(f"/v2/{repo}/blobs/"):
                    digest = path.rsplit("/", 1)[1]
                    blob = img.blobs.get(digest)
                    if blob is None:
                        return self._send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}', head=head)
                    if digest != img.layer or head:
                        return self._send(200, blob, "application/octet-stream", head)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(blob)))
                    self.end_headers()
                    half = len(blob) // 2
                    self.wfile.write(blob[:half])
                    self.wfile.flush()
                    reg.stalled.set()
                    reg.release.wait(120)
                    if reg.drop:
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return None
                    self.wfile.write(blob[half:])
                    return None
            return self._send(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}', head=head)

    return Handler


@pytest.fixture
def stall_registry() -> Iterator[StallRegistry]:
    reg = StallRegistry()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(reg))
    server.daemon_threads = True
    reg.host = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield reg
    reg.release.set()
    server.shutdown()
    server.server_close()
    thread.join(10)


def _timed(docker_cli: Runner, *args: str) -> tuple[float, str]:
    t = time.monotonic()
    res = docker_cli(*args, timeout=60)
    return time.monotonic() - t, res.stdout.strip()


def _small_rootfs(tmp_path: Path) -> Path:
    src = tmp_path / "rootfs.tar"
    with tarfile.open(src, "w") as tf:
        ti = tarfile.TarInfo("hello")
        ti.size = 5
        tf.addfile(ti, io.BytesIO(b"hello"))
    return src


def _start_pull(daemon: Daemon, reg: StallRegistry, repo: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["docker", "pull", f"{reg.host}/{repo}:latest"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "DOCKER_HOST": daemon.host},
    )  # fmt: skip


def _start_stalled_pull(daemon: Daemon, reg: StallRegistry, repo: str) -> subprocess.Popen[str]:
    reg.images[repo] = _make_image(repo)
    pull = _start_pull(daemon, reg, repo)
    if not reg.stalled.wait(60):
        pull.kill()
        out, err = pull.communicate()
        raise AssertionError(f"the pull never reached the layer: {out} {err}")
    return pull


def _others_do_not_wait(
    docker_cli: Runner, busybox: str, unique: Callable[[str], str], tmp_path: Path
) -> None:
    name = unique("stalltag")
    took: dict[str, float] = {}
    took["tag"], _ = _timed(docker_cli, "tag", busybox, f"{name}:t")
    took["import"], imported = _timed(docker_cli, "import", str(_small_rootfs(tmp_path)), f"{name}:imp")
    cid = docker_cli("create", busybox, "true").stdout.strip()
    try:
        took["commit"], committed = _timed(docker_cli, "commit", cid, f"{name}:com")
    finally:
        docker_cli("rm", "-f", cid)
    took["rmi"], _ = _timed(docker_cli, "rmi", f"{name}:imp", f"{name}:com", f"{name}:t")
    slow = {k: round(v, 2) for k, v in took.items() if v > QUICK}
    assert not slow, f"blocked behind the stalled pull: {slow}"
    assert imported.startswith("sha256:") and committed.startswith("sha256:")


def test_stalled_pull_blocks_no_other_image_write(
    daemon: Daemon,
    docker_cli: Runner,
    busybox: str,
    unique: Callable[[str], str],
    stall_registry: StallRegistry,
    tmp_path: Path,
) -> None:
    ref = f"{stall_registry.host}/stall/completes:latest"
    pull = _start_stalled_pull(daemon, stall_registry, "stall/completes")
    try:
        _others_do_not_wait(docker_cli, busybox, unique, tmp_path)
        assert pull.poll() is None, "the pull should still be waiting for its layer"
        stall_registry.release.set()
        out, err = pull.communicate(timeout=60)
        assert pull.returncode == 0, err
        assert "Downloaded newer image" in out
        img = json.loads(docker_cli("image", "inspect", ref).stdout)[0]
        assert (
            img["RootFS"]["Layers"]
            == json.loads(stall_registry.images["stall/completes"].blobs[img["Id"]])["rootfs"]["diff_ids"]
        )
    finally:
        if pull.poll() is None:
            pull.kill()
            pull.wait()
        docker_cli("rmi", ref, check=False)


def test_stalled_pull_that_fails_leaves_nothing(
    daemon: Daemon,
    docker_cli: Runner,
    busybox: str,
    unique: Callable[[str], str],
    stall_registry: StallRegistry,
    tmp_path: Path,
) -> None:
    data = daemon.data_root
    layers_before = {p.name for p in (data / "layers").iterdir()}
    ref = f"{stall_registry.host}/stall/fails:latest"
    stall_registry.drop = True
    pull = _start_stalled_pull(daemon, stall_registry, "stall/fails")
    try:
        _others_do_not_wait(docker_cli, busybox, unique, tmp_path)
        stall_registry.release.set()
        out, _ = pull.communicate(timeout=60)
        assert pull.returncode != 0, out
    finally:
        if pull.poll() is None:
            pull.kill()
            pull.wait()
    assert docker_cli("image", "inspect", ref, check=False).returncode != 0
    # the daemon's cleanup runs as the failed request ends: wait for it, do not sleep
    wait_for(lambda: not any((data / "blobs" / "ingest").iterdir()), what="ingest files removed")
    wait_for(lambda: {p.name for p in (data / "layers").iterdir()} <= layers_before, what="no new layers")
    layer = stall_registry.images["stall/fails"].layer
    assert not (data / "blobs" / "sha256" / layer.removeprefix("sha256:")).exists()


def test_layer_extraction_holds_no_lock(
    daemon: Daemon,
    docker_cli: Runner,
    busybox: str,
    unique: Callable[[str], str],
    stall_registry: StallRegistry,
) -> None:
    """A pull extracting a big layer (512 MiB of zeros: seconds of decompressing, hashing,
    writing and syncing) does not hold up a tag: the tag is done while the pulled image
    is not yet there. (The old store extracted under its one lock, so a tag waited for
    the whole pull; this fails there.)"""
    data = daemon.data_root
    ref = f"{stall_registry.host}/stall/big:latest"
    stall_registry.images["stall/big"] = _make_image("big", zeros=512 << 20)
    stall_registry.release.set()  # no stall: the layer comes at once
    name = unique("bigtag")
    pull = _start_pull(daemon, stall_registry, "stall/big")
    try:
        wait_for(
            lambda: any((data / "layers").glob("tmp-*")), timeout=120, what="the pull extracting its layer"
        )
        took, _ = _timed(docker_cli, "tag", busybox, f"{name}:t")
        pulled_yet = docker_cli("image", "inspect", ref, check=False).returncode == 0
        assert not pulled_yet, "the tag waited for the whole pull"
        assert took < QUICK
        _, err = pull.communicate(timeout=300)
        assert pull.returncode == 0, err
    finally:
        if pull.poll() is None:
            pull.kill()
            pull.wait()
        docker_cli("rmi", ref, f"{name}:t", check=False)
