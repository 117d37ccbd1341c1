"""Builds that reach a registry (our `dockyard registry serve` on loopback): a missing base
image is pulled, `--pull` refreshes it, credentials come from the build's X-Registry-Config,
and `--cache-from` images (pulled, so without a parent chain) stand in for build steps."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from tests.conftest import BIN, Daemon, Runner
from tests.integration.test_build import _context, _leftovers
from tests.integration.test_registry import Registry, _htpasswd, _ours, _stop

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    reg = _ours()
    yield reg
    _stop(reg)


@pytest.fixture
def cli(daemon: Daemon, tmp_path: Path) -> Runner:
    """The docker CLI (classic builder) with a credential store of its own."""
    cfg = tmp_path / "docker-config"
    cfg.mkdir()

    def run(*args: str, check: bool = True, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKER_HOST": daemon.host, "DOCKER_CONFIG": str(cfg), "DOCKER_BUILDKIT": "0"}
        res = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)
        if check and res.returncode != 0:
            raise AssertionError(f"docker {args} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res

    return run


def _image_id(cli: Runner, ref: str) -> str:
    return str(cli("image", "inspect", "-f", "{{.Id}}", ref).stdout.strip())


def _own_base(cli: Runner, tmp_path: Path, ref: str) -> str:
    """An image of our own tagged `ref`: pushing busybox itself would add repo digests to
    the session's busybox, which other tests look at."""
    ctx = _context(tmp_path / "own-base", f"FROM busybox\nLABEL copy={ref}\n")
    return str(cli("build", "-q", "-t", ref, str(ctx)).stdout.strip())


def test_a_missing_base_is_pulled_and_pull_refreshes_it(cli: Runner, busybox: str, registry: Registry,
                                                        tmp_path: Path, unique: Callable[[str], str]) -> None:  # fmt: skip
    base = f"{registry.host}/{unique('base')}:1"
    marked = _context(tmp_path / "marked", "FROM busybox\nRUN echo v2 > /marker\n")
    v1 = _own_base(cli, tmp_path, base)
    cli("push", base)
    cli("rmi", base)
    ctx = _context(tmp_path / "app", f"FROM {base}\nRUN cat /marker 2>/dev/null || echo none\n")
    out = cli("build", str(ctx)).stdout
    assert "Pulling from" in out and "\nnone\n" in out, out
    assert _image_id(cli, base) == v1
    first = out.rsplit("Successfully built ", 1)[1].split()[0]
    # a newer base in the registry: used only with --pull
    v2 = cli("build", "-q", "-t", base, str(marked)).stdout.strip()
    cli("push", base)
    cli("tag", v1, base)
    assert cli("build", str(ctx)).stdout.rsplit("Successfully built ", 1)[1].split()[0] == first
    out = cli("build", "--pull", str(ctx)).stdout
    assert "\nv2\n" in out, out
    assert _image_id(cli, base) == v2
    cli("image", "prune", "-f")  # the builds' results first: they are v1's and v2's children
    cli("rmi", "-f", base, v1, v2)


def test_a_base_missing_everywhere_fails_with_the_registry_s_answer(cli: Runner, busybox: str, registry: Registry,
                                                                    tmp_path: Path) -> None:  # fmt: skip
    before = _leftovers(cli)
    ctx = _context(tmp_path, f"FROM {registry.host}/no-such-image:1\nRUN true\n")
    r = cli("build", str(ctx), check=False)
    assert r.returncode == 1
    assert f"pull access denied for {registry.host}/no-such-image, repository does not exist" in r.stderr
    ctx = _context(tmp_path / "copy", f"FROM busybox\nCOPY --from={registry.host}/no-such-image:1 /x /x\n")
    r = cli("build", str(ctx), check=False)
    assert r.returncode == 1 and f"invalid from flag value {registry.host}/no-such-image:1: pull access denied" in r.stderr
    assert _leftovers(cli) == before


def test_a_private_base_is_pulled_with_the_build_s_credentials(cli: Runner, daemon: Daemon, busybox: str, tmp_path: Path,
                                                               unique: Callable[[str], str]) -> None:  # fmt: skip
    pw = _htpasswd(tmp_path)
    reg = _ours(["--htpasswd", str(pw)])
    try:
        base = f"{reg.host}/{unique('private')}:1"
        cli("login", "-u", "alice", "-p", "s3cret", reg.host)
        own = _own_base(cli, tmp_path, base)
        cli("push", base)
        cli("rmi", base)
        ctx = _context(tmp_path / "ctx", f"FROM {base}\nRUN echo pulled-with-auth\n")
        assert "pulled-with-auth" in cli("build", str(ctx)).stdout
        cli("rmi", base)
        # dockyard build sends the same stored login (docker's config.json)
        env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "docker-config")}
        dy = subprocess.run([str(BIN / "dockyard"), "-H", daemon.host, "build", "--no-cache", str(ctx)],
                            capture_output=True, text=True, env=env, timeout=90, check=False)  # fmt: skip
        assert dy.returncode == 0, dy.stderr
        assert "Pulling from" in dy.stdout and "pulled-with-auth" in dy.stdout, dy.stdout
        cli("rmi", base)
        cli("logout", reg.host)
        r = cli("build", str(ctx), check=False)
        assert r.returncode == 1 and "pull access denied" in r.stderr, r.stderr
        cli("image", "prune", "-f")
        cli("rmi", "-f", own)
    finally:
        _stop(reg)


def test_cache_from_a_pulled_image(cli: Runner, daemon: Daemon, docker_py: docker.DockerClient, busybox: str, registry: Registry,
                                   tmp_path: Path, unique: Callable[[str], str]) -> None:  # fmt: skip
    """The pulled image has no parent chain, so only --cache-from can reuse its steps:
    every step of an identical build, and those before a change."""
    df = "FROM busybox\nENV A=1\nWORKDIR /w\nCOPY a.txt .\nRUN cat a.txt > b.txt\nLABEL k=v\nCMD [\"cat\", \"/w/b.txt\"]\n"
    ctx = _context(tmp_path / "ctx", df, {"a.txt": "a\n"})
    ref = f"{registry.host}/{unique('cached')}:1"
    built = cli("build", "-q", "-t", ref, str(ctx)).stdout.strip()
    cli("push", ref)
    cli("rmi", ref)
    cli("builder", "prune", "-af")
    cli("pull", ref)
    again = unique("again")
    out = cli("build", "--cache-from", ref, "-t", again, str(ctx)).stdout
    assert out.count("Using cache") == 6, out
    assert "Running in" not in out
    assert _image_id(cli, ref) == built  # the last step is the source image itself
    dy = subprocess.run([str(BIN / "dockyard"), "-H", daemon.host, "build", "-q", "--cache-from", ref, str(ctx)],
                        capture_output=True, text=True, timeout=90, check=False)  # fmt: skip
    assert dy.stdout.strip() == built, dy.stderr
    # a change in the last step: the five steps before it still come from the source
    (ctx / "Dockerfile").write_text(df.replace('CMD ["cat", "/w/b.txt"]', 'CMD ["cat", "/w/a.txt"]'))
    image, logs = docker_py.images.build(path=str(ctx), cache_from=[ref])
    streams = "".join(m.get("stream", "") for m in logs)
    assert streams.count("Using cache") == 5, streams
    assert docker_py.containers.run(image.id, remove=True) == b"a\n"
    # without --cache-from nothing of the pulled image is trusted (a local cache was pruned)
    cli("builder", "prune", "-af")
    out = cli("build", str(ctx)).stdout
    assert "Using cache" not in out
    cli("rmi", "-f", ref, again, image.id)
    cli("image", "prune", "-f")
