"""Registries end to end: our `dockyard registry serve` (plain, htpasswd, token auth) and Debian's
`docker-registry` as targets; the docker CLI, docker-py and the dockyard CLI talk to our daemon,
which talks to the registry.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from tests.conftest import BIN, HOST_TOOLS, REPO, Daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the daemon mounts overlayfs)")

DEBIAN_REGISTRY = Path(HOST_TOOLS["docker-registry"][0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"registry exited early:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"registry did not listen:\n{log.read_text()[-3000:]}")


@dataclass
class Registry:
    host: str
    root: Path
    proc: subprocess.Popen[bytes]


def _start(argv: list[str], port: int, root: Path) -> Registry:
    log = root / "registry.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    _wait_port(port, proc, log)
    return Registry(f"127.0.0.1:{port}", root, proc)


def _stop(reg: Registry) -> None:
    reg.proc.terminate()
    try:
        reg.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        reg.proc.kill()
        reg.proc.wait()
    shutil.rmtree(reg.root, ignore_errors=True)


def _ours(extra: list[str] = ()) -> Registry:  # type: ignore[assignment]
    root = Path(tempfile.mkdtemp(prefix="dy-reg-", dir="/tmp"))
    port = _free_port()
    argv = [sys.executable, "-m", "dockyard.cli.registry", "serve", "--addr", f"127.0.0.1:{port}",
            "--root", str(root / "data"), *extra]  # fmt: skip
    return _start(argv, port, root)


def _htpasswd(root: Path) -> Path:
    from dockyard.registry.server import Htpasswd

    path = root / "htpasswd"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(f"alice:{Htpasswd.hash('s3cret')}\n")
    return path


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    reg = _ours()
    yield reg
    _stop(reg)


@pytest.fixture(scope="module")
def auth_registry() -> Iterator[Registry]:
    pw = _htpasswd(Path(tempfile.mkdtemp(prefix="dy-htp-", dir="/tmp")))
    reg = _ours(["--htpasswd", str(pw)])
    yield reg
    _stop(reg)
    shutil.rmtree(pw.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def token_registry() -> Iterator[Registry]:
    pw = _htpasswd(Path(tempfile.mkdtemp(prefix="dy-htp-", dir="/tmp")))
    reg = _ours(["--htpasswd", str(pw), "--token-auth"])
    yield reg
    _stop(reg)
    shutil.rmtree(pw.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def debian_registry(host_tools: dict[str, str]) -> Iterator[Registry]:
    root = Path(tempfile.mkdtemp(prefix="dy-dreg-", dir="/tmp"))
    port = _free_port()
    (root / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    reg = _start([str(DEBIAN_REGISTRY), "serve", str(root / "config.yml")], port, root)
    yield reg
    _stop(reg)


@pytest.fixture
def cli(daemon: Daemon, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The docker CLI against our daemon, with a private credential store (DOCKER_CONFIG)."""
    cfg = tmp_path / "docker-config"
    cfg.mkdir()

    def run(*args: str, check: bool = True, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKER_HOST": daemon.host, "DOCKER_CONFIG": str(cfg)}
        res = subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
        if check and res.returncode != 0:
            raise AssertionError(f"docker {args} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res

    return run


def _image_id(cli, ref: str) -> str:  # type: ignore[no-untyped-def]
    return str(cli("image", "inspect", "-f", "{{.Id}}", ref).stdout.strip())


def _cleanup(cli, *refs: str) -> None:  # type: ignore[no-untyped-def]
    for r in refs:
        cli("rmi", "-f", r, check=False)


def test_push_rmi_pull_round_trip(cli, busybox: str, registry: Registry, unique) -> None:  # type: ignore[no-untyped-def]
    ref = f"{registry.host}/{unique('rt')}:v1"
    cli("tag", busybox, ref)
    try:
        want = _image_id(cli, ref)
        out = cli("push", ref).stdout
        assert f"The push refers to repository [{ref.rpartition(':')[0]}]" in out
        assert "Pushed" in out
        line = next(ln for ln in out.splitlines() if ln.startswith("v1: digest: sha256:"))
        digest = line.split()[2]
        again = cli("push", ref).stdout
        assert "Layer already exists" in again and f"v1: digest: {digest}" in again
        digests = json.loads(cli("image", "inspect", "-f", "{{json .RepoDigests}}", ref).stdout)
        assert f"{ref.rpartition(':')[0]}@{digest}" in digests

        cli("rmi", ref)
        assert cli("image", "inspect", ref, check=False).returncode != 0
        out = cli("pull", ref).stdout
        assert f"Digest: {digest}" in out and f"Status: Downloaded newer image for {ref}" in out
        assert _image_id(cli, ref) == want
        digests = json.loads(cli("image", "inspect", "-f", "{{json .RepoDigests}}", ref).stdout)
        assert digests == [f"{ref.rpartition(':')[0]}@{digest}"]
        out = cli("pull", ref).stdout
        assert f"Status: Image is up to date for {ref}" in out
        # by digest too
        by_digest = f"{ref.rpartition(':')[0]}@{digest}"
        assert "Status: Image is up to date" in cli("pull", by_digest).stdout
        # the pulled image runs
        res = cli("run", "--rm", "--network", "none", ref, "echo", "hello-from-registry")
        assert res.stdout.strip() == "hello-from-registry"
    finally:
        _cleanup(cli, ref)


def test_pull_fresh_layers_progress(
    docker_py: docker.DockerClient, busybox: str, registry: Registry, unique
) -> None:  # type: ignore[no-untyped-def]
    """A pull whose layers are not local: Docker's per-layer statuses, then the image."""
    api = docker_py.api
    repo = f"{registry.host}/{unique('fresh')}"
    # an image with a layer of its own, so nothing of it is local after rmi
    c = docker_py.containers.create(busybox, ["sh", "-c", "echo fresh > /fresh.txt"], network_mode="none")
    try:
        c.start()
        c.wait(timeout=30)
        img = c.commit(repository=repo, tag="v1")
    finally:
        c.remove(force=True)
    try:
        pushed = list(api.push(repo, tag="v1", stream=True, decode=True))
        aux = [m["aux"] for m in pushed if "aux" in m]
        assert aux and aux[0]["Tag"] == "v1" and aux[0]["Digest"].startswith("sha256:") and aux[0]["Size"] > 0
        statuses = [m.get("status", "") for m in pushed]
        assert "Preparing" in statuses and "Pushed" in statuses
        assert not [m for m in pushed if "error" in m]
        docker_py.images.remove(f"{repo}:v1")
        msgs = list(api.pull(repo, tag="v1", stream=True, decode=True))
        statuses = [m.get("status", "") for m in msgs]
        assert statuses[0] == f"Pulling from {repo.partition('/')[2]}"
        for s in ("Pulling fs layer", "Downloading", "Download complete", "Extracting", "Pull complete"):
            assert s in statuses, (s, statuses)
        assert "Already exists" in statuses  # the busybox base layer is still local
        dl = [m for m in msgs if m.get("status") == "Downloading"]
        assert dl[-1]["progressDetail"]["current"] == dl[-1]["progressDetail"]["total"]
        assert statuses[-2] == f"Digest: {aux[0]['Digest']}"
        assert statuses[-1] == f"Status: Downloaded newer image for {repo}:v1"
        assert docker_py.images.get(f"{repo}:v1").id == img.id
        data = docker_py.images.get_registry_data(f"{repo}:v1")
        assert data.id == aux[0]["Digest"]
        assert data.has_platform("linux/amd64")
    finally:
        try:
            docker_py.images.remove(img.id, force=True)
        except docker.errors.NotFound:
            pass


def test_docker_py_push_pull(
    docker_py: docker.DockerClient, busybox: str, registry: Registry, unique
) -> None:  # type: ignore[no-untyped-def]
    repo = f"{registry.host}/{unique('py')}"
    docker_py.images.get(busybox).tag(repo, "latest")
    try:
        out = docker_py.images.push(repo, tag="latest")
        assert "digest: sha256:" in out
        docker_py.images.remove(f"{repo}:latest")
        img = docker_py.images.pull(repo, tag="latest")
        assert img.id == docker_py.images.get(busybox).id
        assert f"{repo}:latest" in img.tags
        assert img.attrs["RepoDigests"][0].startswith(f"{repo}@sha256:")
    finally:
        try:
            docker_py.images.remove(f"{repo}:latest")
        except docker.errors.NotFound:
            pass


def test_pull_errors(cli, registry: Registry, unique) -> None:  # type: ignore[no-untyped-def]
    res = cli("pull", f"{registry.host}/{unique('none')}:v1", check=False)
    assert res.returncode == 1 and "repository does not exist" in res.stderr
    res = cli("pull", f"{registry.host}/library/x:nope", check=False)
    assert res.returncode == 1
    res = cli("push", f"{registry.host}/{unique('missing')}:v1", check=False)
    assert res.returncode == 1 and "does not exist" in res.stderr
    port = _free_port()
    res = cli("pull", f"127.0.0.1:{port}/x:v1", check=False)
    assert res.returncode == 1 and "Error response from daemon" in res.stderr


@pytest.mark.parametrize("kind", ["htpasswd", "token"])
def test_login_push_pull_with_auth(
    cli, busybox: str, auth_registry: Registry, token_registry: Registry, unique, kind: str
) -> None:  # type: ignore[no-untyped-def]
    reg = auth_registry if kind == "htpasswd" else token_registry
    ref = f"{reg.host}/{unique('auth')}:v1"
    cli("tag", busybox, ref)
    try:
        res = cli("push", ref, check=False)
        assert res.returncode == 1 and "unauthorized" in (res.stdout + res.stderr).lower()
        res = cli("login", "-u", "alice", "-p", "wrong", reg.host, check=False)
        assert res.returncode == 1 and "Error response from daemon" in res.stderr
        res = cli("login", "-u", "alice", "-p", "s3cret", reg.host)
        assert "Login Succeeded" in res.stdout
        cli("push", ref)
        want = _image_id(cli, ref)
        cli("rmi", ref)
        cli("pull", ref)
        assert _image_id(cli, ref) == want
        cli("logout", reg.host)
        cli("rmi", ref)
        res = cli("pull", ref, check=False)
        assert res.returncode == 1
    finally:
        _cleanup(cli, ref)


def test_debian_registry_round_trip(cli, busybox: str, debian_registry: Registry, unique) -> None:  # type: ignore[no-untyped-def]
    ref = f"{debian_registry.host}/{unique('deb')}:v1"
    cli("tag", busybox, ref)
    try:
        want = _image_id(cli, ref)
        out = cli("push", ref).stdout
        assert "Pushed" in out and "v1: digest: sha256:" in out
        assert "Layer already exists" in cli("push", ref).stdout
        cli("rmi", ref)
        out = cli("pull", ref).stdout
        assert "Status: Downloaded newer image" in out
        assert _image_id(cli, ref) == want
    finally:
        _cleanup(cli, ref)


def test_registry_gc_command(cli, busybox: str, unique) -> None:  # type: ignore[no-untyped-def]
    reg = _ours()
    try:
        ref = f"{reg.host}/{unique('gc')}:v1"
        cli("tag", busybox, ref)
        try:
            cli("push", ref)
        finally:
            _cleanup(cli, ref)
    finally:
        reg.proc.terminate()
        reg.proc.wait(timeout=10)
    data = reg.root / "data"
    orphan = data / "blobs" / "sha256" / ("0" * 64)
    orphan.write_bytes(b"orphan")
    res = subprocess.run(
        [sys.executable, "-m", "dockyard.cli.registry", "gc", "--root", str(data)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    assert f"removed sha256:{'0' * 64}" in res.stdout and "1 blobs deleted" in res.stdout
    assert not orphan.exists()
    assert len(list((data / "blobs" / "sha256").iterdir())) == 3  # config, layer, manifest
    shutil.rmtree(reg.root, ignore_errors=True)


def test_dockyard_cli_push_pull(daemon: Daemon, busybox: str, registry: Registry, unique, cli) -> None:  # type: ignore[no-untyped-def]
    dockyard = BIN / "dockyard"
    ref = f"{registry.host}/{unique('dy')}:v1"
    cli("tag", busybox, ref)
    env = {**os.environ, "DOCKER_HOST": daemon.host}
    try:
        res = subprocess.run(
            [str(dockyard), "-H", daemon.host, "push", ref],
            capture_output=True,
            text=True,
            env=env,
            timeout=90,
            check=False,
        )
        assert res.returncode == 0, res.stderr
        assert "digest: sha256:" in res.stdout
        cli("rmi", ref)
        res = subprocess.run(
            [str(dockyard), "-H", daemon.host, "pull", ref],
            capture_output=True,
            text=True,
            env=env,
            timeout=90,
            check=False,
        )
        assert res.returncode == 0, res.stderr
        assert "Status: Downloaded newer image" in res.stdout
        assert ref in res.stdout.splitlines()[-1]
    finally:
        _cleanup(cli, ref)


def test_dockyard_login_shares_docker_config(
    daemon: Daemon, busybox: str, auth_registry: Registry, unique, cli, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    dockyard = BIN / "dockyard"
    env = {**os.environ, "DOCKER_HOST": daemon.host, "DOCKER_CONFIG": str(tmp_path / "docker-config")}

    def dy(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(dockyard), "-H", daemon.host, *args],
            capture_output=True,
            text=True,
            env=env,
            input=input,
            timeout=90,
            check=False,
        )

    res = dy("login", "-u", "alice", "--password-stdin", auth_registry.host, input="wrong\n")
    assert res.returncode == 1 and "401" in res.stderr
    res = dy("login", "-u", "alice", "--password-stdin", auth_registry.host, input="s3cret\n")
    assert res.returncode == 0 and "Login Succeeded" in res.stdout, res.stderr
    cfg = json.loads((tmp_path / "docker-config" / "config.json").read_text())
    assert auth_registry.host in cfg["auths"]
    ref = f"{auth_registry.host}/{unique('dylogin')}:v1"
    cli("tag", busybox, ref)
    try:
        cli("push", ref)  # the docker CLI reads the credentials dockyard stored
        cli("rmi", ref)
        res = dy("pull", ref)
        assert res.returncode == 0, res.stderr
        res = dy("logout", auth_registry.host)
        assert f"Removing login credentials for {auth_registry.host}" in res.stdout
    finally:
        _cleanup(cli, ref)


def test_corrupt_blob_leaves_no_image(
    docker_py: docker.DockerClient, busybox: str, registry: Registry, cli, unique
) -> None:  # type: ignore[no-untyped-def]
    """A layer whose bytes do not match its digest fails the pull in-stream and stores nothing."""
    repo = f"{registry.host}/{unique('bad')}"
    c = docker_py.containers.create(busybox, ["sh", "-c", "echo x > /x"], network_mode="none")
    try:
        c.start()
        c.wait(timeout=30)
        img = c.commit(repository=repo, tag="v1")
    finally:
        c.remove(force=True)
    try:
        cli("push", f"{repo}:v1")
        data = registry.root / "data"
        mdigest = (data / "repositories" / repo.partition("/")[2] / "_manifests" / "tags" / "v1").read_text()
        layer = json.loads((data / "blobs" / "sha256" / mdigest.strip()[7:]).read_bytes())["layers"][-1][
            "digest"
        ]
        blob = registry.root / "data" / "blobs" / "sha256" / layer[7:]
        good = blob.read_bytes()
        blob.write_bytes(good[:-8] + b"corrupt!")
        docker_py.images.remove(img.id, force=True)
        res = cli("pull", f"{repo}:v1", check=False)
        assert res.returncode == 1 and "verification failed" in res.stderr, res.stderr
        assert cli("image", "inspect", f"{repo}:v1", check=False).returncode == 1
        blob.write_bytes(good)  # the registry is repaired: a retried pull succeeds
        cli("pull", f"{repo}:v1")
        assert _image_id(cli, f"{repo}:v1") == img.id
    finally:
        _cleanup(cli, f"{repo}:v1")


def _http(
    method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str]]:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, data=body if method in ("POST", "PUT") else None, method=method,
                                 headers=headers or {})  # fmt: skip
    with opener.open(req, timeout=30) as r:
        r.read()
        return r.status, dict(r.headers)


def _upload(host: str, repo: str, blob: bytes) -> str:
    import hashlib

    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    status, _ = _http("POST", f"http://{host}/v2/{repo}/blobs/uploads/?digest={digest}", blob,
                      {"Content-Type": "application/octet-stream"})  # fmt: skip
    assert status == 201
    return digest


def test_push_reuses_the_compressed_blob(registry: Registry, cli, daemon: Daemon, unique) -> None:  # type: ignore[no-untyped-def]
    """A pulled layer keeps the registry's own compressed blob: pushing it to another
    repository mounts that blob (never recompresses: gzip level 9 with a file name in the
    header is not what our push would make), and the blob goes when the layer goes."""
    import gzip
    import hashlib
    import io
    import tarfile

    src, dst = unique("cz-src"), unique("cz-dst")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        data = f"{src}\n".encode() * 1000
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    layer = gzip.compress(raw.getvalue(), compresslevel=9, mtime=12345)
    assert layer[3] == 0  # no name, but mtime and level differ from ours: our recompression would differ
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["cat", "/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }).encode()  # fmt: skip
    layer_digest = _upload(registry.host, src, layer)
    config_digest = _upload(registry.host, src, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                   "digest": config_digest},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer),
                    "digest": layer_digest}],
    }).encode()  # fmt: skip
    status, _ = _http("PUT", f"http://{registry.host}/v2/{src}/manifests/v1", manifest,
                      {"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})  # fmt: skip
    assert status == 201
    kept = daemon.data_root / "blobs" / "sha256" / layer_digest[7:]
    a, b = f"{registry.host}/{src}:v1", f"{registry.host}/{dst}:v1"
    try:
        cli("pull", a)
        assert kept.exists(), "the pulled compressed blob is kept as the layer's cache"
        cli("tag", a, b)
        out = cli("push", b).stdout
        assert f"Mounted from {src}" in out and "Pushed" not in out, out
        digest = next(ln for ln in out.splitlines() if ln.startswith("v1: digest: sha256:")).split()[2]
        pushed = json.loads((registry.root / "data" / "blobs" / "sha256" / digest[7:]).read_bytes())
        assert [x["digest"] for x in pushed["layers"]] == [layer_digest]  # the registry's own blob
        again = cli("push", b).stdout
        assert "Layer already exists" in again and "Pushed" not in again, again
        # push, rmi, pull, push to a third repository: the same blob, mounted
        cli("rmi", a, b)
        assert not kept.exists(), "the compressed blob is collected with its layer"
        cli("pull", b)
        c = f"{registry.host}/{unique('cz-third')}:v1"
        cli("tag", b, c)
        out = cli("push", c).stdout
        assert "Mounted from" in out and "Pushed" not in out, out
        assert f"v1: digest: {digest}" in out
    finally:
        _cleanup(cli, a, b)
        for ln in cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split():
            if "cz-third" in ln:
                _cleanup(cli, ln)
