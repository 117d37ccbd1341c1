"""Builds through the real clients: docker CLI (classic builder API), docker-py, dockyard.

A corpus of small Dockerfiles FROM busybox or scratch covers every instruction, the
parser directives, heredocs, multi-stage builds with --target and skipped stages,
.dockerignore, the cache, and bad input that must leave no container or dangling image.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from tests.conftest import Runner

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")

FULL = """\
# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE} AS base
MAINTAINER dockyard tests
ARG V=1
ENV A=1 B="two words" \\
    C=${V:-x}
LABEL l1=v1 "l 2"="v 2"
WORKDIR /app
COPY a.txt ./
COPY d /data/
COPY --chown=65534:65534 --chmod=600 a.txt /owned.txt
COPY *.md /docs/
ADD arch.tar.gz /unpacked/
RUN echo "running $A $V" && cat /app/a.txt > /app/b.txt
RUN <<EOT
echo heredoc $A > /app/h.txt
EOT
COPY <<EOT /inline.txt
inline ${A}
EOT
EXPOSE 80 53/udp
USER nobody
VOLUME /vol
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD true
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo triggered
ENTRYPOINT ["/bin/sh"]
CMD ["-c", "echo hi"]
"""


def _context(tmp: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "Dockerfile").write_text(dockerfile)
    for name, content in (files or {}).items():
        p = tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    return tmp


def _full_context(tmp: Path) -> Path:
    ctx = _context(tmp, FULL, {"a.txt": "hello\n", "d/sub/x": "x\n", "d/y": "y\n", "one.md": "1\n", "two.md": "2\n",
                               "s.log": "secret\n", ".dockerignore": "*.log\n"})  # fmt: skip
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tf:
        data = b"from the tarball\n"
        info = tarfile.TarInfo("t/in.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    (ctx / "arch.tar.gz").write_bytes(inner.getvalue())
    return ctx


def _leftovers(docker_cli: Runner) -> tuple[str, set[str]]:
    """(containers, dangling images): a build must add to neither."""
    ps = docker_cli("ps", "-aq").stdout.strip()
    dangling = set(docker_cli("images", "-q", "--filter", "dangling=true").stdout.split())
    return ps, dangling


def test_full_dockerfile_via_docker_cli(docker_cli: Runner, busybox: str, tmp_path: Path, unique: Callable[[str], str]) -> None:
    before = _leftovers(docker_cli)
    ctx = _full_context(tmp_path / "ctx")
    tag = unique("full") + ":1"
    out = docker_cli("build", "-t", tag, "--build-arg", "V=7", str(ctx), timeout=120).stdout
    assert "Step 1/24 : ARG BASE=busybox\nStep 2/24 : FROM ${BASE} AS base" in out  # as dockerd numbers them
    assert "running 1 7" in out and "Successfully tagged " + tag in out
    cfg = docker_cli("inspect", tag, "--format", "{{json .Config}}").stdout
    import json

    c = json.loads(cfg)
    assert c["Env"][-3:] == ["A=1", "B=two words", "C=7"]
    assert c["Labels"] == {"l1": "v1", "l 2": "v 2"}
    assert c["WorkingDir"] == "/app" and c["User"] == "nobody"
    assert c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert c["Volumes"] == {"/vol": {}} and c["StopSignal"] == "SIGINT"
    assert c["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5000000000, "Retries": 2}
    assert c["Shell"] == ["/bin/sh", "-ec"] and c["OnBuild"] == ["RUN echo triggered"]
    assert c["Entrypoint"] == ["/bin/sh"] and c["Cmd"] == ["-c", "echo hi"]
    author = docker_cli("inspect", tag, "--format", "{{.Author}}").stdout.strip()
    assert author == "dockyard tests"
    files = docker_cli(
        "run", "--rm", "--entrypoint", "sh", tag, "-c",
        "cat /app/a.txt /app/b.txt /app/h.txt /inline.txt /data/y /data/sub/x /docs/one.md /docs/two.md "
        "/unpacked/t/in.txt; stat -c '%u:%g %a' /owned.txt; ls /app; test ! -e /s.log && echo ignored-ok",
    ).stdout  # fmt: skip
    assert files.split("\n") == [
        "hello", "hello", "heredoc 1", "inline 1", "y", "x", "1", "2", "from the tarball",
        "65534:65534 600", "a.txt", "b.txt", "h.txt", "ignored-ok", "",
    ]  # fmt: skip
    history = docker_cli("history", "--no-trunc", "--format", "{{.CreatedBy}}", tag).stdout
    assert "/bin/sh -ec #(nop)  CMD [\"-c\" \"echo hi\"]" in history  # SHELL applies to history too
    assert "|1 V=7 /bin/sh -c echo \"running $A $V\"" in history
    # rebuild: every step from the cache
    again = docker_cli("build", "-t", tag, "--build-arg", "V=7", str(ctx), timeout=120).stdout
    assert again.count("Using cache") == 22
    # a build FROM it runs its ONBUILD trigger
    child = _context(tmp_path / "child", f"FROM {tag}\nRUN true\n")
    out = docker_cli("build", "-q", str(child)).stdout
    assert out.startswith("sha256:")
    docker_cli("rmi", tag, out.strip())
    assert _leftovers(docker_cli) == before


def test_cache_invalidation_is_exact(docker_cli: Runner, busybox: str, tmp_path: Path, unique: Callable[[str], str]) -> None:
    df = "FROM busybox\nENV X=1\nCOPY a.txt /a\nRUN cat /a > /b\nCOPY b.txt /c\nRUN echo done\n"
    ctx = _context(tmp_path, df, {"a.txt": "a1\n", "b.txt": "b1\n"})
    tag = unique("cache")
    docker_cli("build", "-t", tag, str(ctx))
    (ctx / "b.txt").write_text("b2\n")
    out = docker_cli("build", "-t", tag, str(ctx)).stdout
    steps = out.split("Step ")[1:]
    cached = [s.split(" :")[0] for s in steps if "Using cache" in s]
    assert cached == ["2/6", "3/6", "4/6"]
    assert docker_cli("run", "--rm", tag, "cat", "/b", "/c").stdout == "a1\nb2\n"
    out = docker_cli("build", "--no-cache", "-t", tag, str(ctx)).stdout
    assert "Using cache" not in out
    docker_cli("rmi", tag)


def test_multistage_target_and_skipped_stages(docker_cli: Runner, busybox: str, tmp_path: Path, unique: Callable[[str], str]) -> None:
    before = _leftovers(docker_cli)
    df = """FROM busybox AS a
RUN echo from-a > /a
FROM busybox AS broken
RUN exit 9
FROM busybox AS b
RUN echo from-b > /b
FROM scratch AS final
COPY --from=a /a /a
COPY --from=b /b /b
FROM final AS extra
RUN exit 1
"""
    ctx = _context(tmp_path, df)
    tag = unique("multi")
    out = docker_cli("build", "--target", "final", "-t", tag, str(ctx)).stdout
    assert "exit 9" not in out and "exit 1" not in out  # unused stages never run
    assert "Step 7/7" in out
    c = docker_cli("create", tag, "x").stdout.strip()
    tar = docker_cli("export", c).stdout
    docker_cli("rm", c)
    assert "a" in tar and "b" in tar
    r = docker_cli("build", "--target", "nope", str(ctx), check=False)
    assert r.returncode != 0 and "failed to reach build target nope in Dockerfile" in r.stderr
    docker_cli("rmi", tag)
    assert _leftovers(docker_cli) == before


@pytest.mark.parametrize(
    ("dockerfile", "message", "code"),
    [
        ("FROM busybox\nFOO bar\n", "dockerfile parse error on line 2: unknown instruction: FOO", 1),
        ("FROM busybox\nRUN echo \\\n  x\nHEALTHCHECK FOO\n", 'line 4: Unknown type "FOO" in HEALTHCHECK', 1),
        ("FROM busybox\nENV A=1\nRUN exit 3\n", "The command '/bin/sh -c exit 3' returned a non-zero code: 3", 3),
        ("FROM busybox\nCOPY missing.txt /\n", "file not found in build context or excluded by .dockerignore", 1),
        ("FROM busybox\nCOPY --from=nostage /x /\n", "invalid from flag value nostage", 1),
        ("FROM no-such-image:1\n", "registry docker.io is not in this daemon's allowed-registries", 1),
        ("FROM busybox\nCOPY ../x /\n", "forbidden path outside the build context", 1),
    ],
)
def test_bad_input_leaves_nothing(daemon, docker_cli: Runner, busybox: str, tmp_path: Path, dockerfile: str,
                                  message: str, code: int) -> None:  # fmt: skip
    def on_disk() -> dict[str, set[str]]:  # no half-committed layer, no container snapshot, no context
        root = daemon.data_root
        return {d: {p.name for p in (root / d).iterdir()} for d in ("layers", "blobs/sha256", "snapshots", "tmp/build")}

    before, files_before = _leftovers(docker_cli), on_disk()
    ctx = _context(tmp_path, dockerfile)
    r = docker_cli("build", str(ctx), check=False)
    assert r.returncode == code, r.stderr
    assert message in r.stderr
    assert _leftovers(docker_cli) == before
    assert on_disk() == files_before


def test_docker_py_build(docker_py: docker.DockerClient, busybox: str, tmp_path: Path, unique: Callable[[str], str]) -> None:
    ctx = _context(tmp_path, "FROM busybox\nARG MSG=x\nRUN echo $MSG > /m\nLABEL k=v\nCMD [\"cat\", \"/m\"]\n")
    tag = unique("dpy")
    image, logs = docker_py.images.build(path=str(ctx), tag=tag, buildargs={"MSG": "from-py"}, labels={"x": "y"}, rm=True)
    streams = "".join(m.get("stream", "") for m in logs)
    assert "Successfully built" in streams
    assert image.labels == {"k": "v", "x": "y"}
    assert docker_py.containers.run(tag, remove=True) == b"from-py\n"
    with pytest.raises(docker.errors.BuildError) as exc:
        docker_py.images.build(path=str(_context(tmp_path / "bad", "FROM busybox\nRUN exit 5\n")))
    assert "returned a non-zero code: 5" in str(exc.value)
    docker_py.images.remove(tag)


def test_dockyard_cli_build(dockyard_cli: Runner, docker_cli: Runner, busybox: str, tmp_path: Path, unique: Callable[[str], str]) -> None:
    before = _leftovers(docker_cli)
    ctx = _context(tmp_path / "ctx", "FROM busybox\nCOPY . /src/\nRUN ls /src > /list\n",
                   {"keep.txt": "k", "drop.tmp": "d", "sub/drop.tmp": "d", ".dockerignore": "**/*.tmp\n"})  # fmt: skip
    outside = tmp_path / "other.Dockerfile"
    outside.write_text("FROM busybox\nRUN echo outside > /o\n")
    tag = unique("dy")
    iid = tmp_path / "iid"
    out = dockyard_cli("build", "-t", tag, "--iidfile", str(iid), str(ctx)).stdout
    assert "Step 3/3 : RUN ls /src > /list" in out and f"Successfully tagged {tag}:latest" in out
    assert iid.read_text().startswith("sha256:")
    assert docker_cli("run", "--rm", tag, "cat", "/list").stdout.split() == ["Dockerfile", "keep.txt", "sub"]
    q = dockyard_cli("build", "-q", "-f", str(outside), str(ctx)).stdout.strip()
    assert q.startswith("sha256:")
    r = dockyard_cli("build", str(_context(tmp_path / "bad", "FROM busybox\nRUN exit 6\n")), check=False)
    assert r.returncode == 6 and "returned a non-zero code: 6" in r.stderr
    docker_cli("rmi", tag, q)
    pr = dockyard_cli("builder", "prune", "-f").stdout
    assert "Total reclaimed space" in pr
    assert _leftovers(docker_cli) == before


def test_cache_survives_daemon_restart(daemon, docker_cli: Runner, busybox: str, tmp_path: Path, unique: Callable[[str], str]) -> None:
    df = ("FROM busybox\nARG V=1\nENV X=$V\nWORKDIR /w\nCOPY a.txt d/ ./\nADD t.tar /t/\nRUN cat a.txt > b.txt\n"
          "LABEL k=v\nEXPOSE 80\nCMD [\"cat\", \"/w/b.txt\"]\n")  # fmt: skip
    ctx = _context(tmp_path, df, {"a.txt": "a\n", "d/x": "x\n"})
    with tarfile.open(ctx / "t.tar", "w") as tf:
        tf.add(ctx / "a.txt", "in/a.txt")
    tag = unique("restart")
    docker_cli("build", "-t", tag, str(ctx))
    first = docker_cli("inspect", "--format", "{{.Id}}", tag).stdout.strip()
    daemon.stop()
    daemon.start()
    out = docker_cli("build", "-t", tag, str(ctx)).stdout
    assert out.count("Using cache") == 9, out
    assert docker_cli("inspect", "--format", "{{.Id}}", tag).stdout.strip() == first
    # even with the image gone, the cache puts the same image back
    docker_cli("rmi", tag)
    out = docker_cli("build", "-t", tag, str(ctx)).stdout
    assert out.count("Using cache") == 9, out
    assert docker_cli("inspect", "--format", "{{.Id}}", tag).stdout.strip() == first
    assert docker_cli("run", "--rm", tag).stdout == "a\n"
    docker_cli("rmi", tag)


def test_builder_prune_keeps_the_cache_of_tagged_images(docker_cli: Runner, docker_py: docker.DockerClient, busybox: str,
                                                        tmp_path: Path, unique: Callable[[str], str]) -> None:
    """`builder prune` removes dangling cache only: entries for a tagged image's chain stay
    (shown as Shared in system df); -a removes them too; after rmi they are dangling."""
    tagged = _context(tmp_path / "t", f"FROM busybox\nENV T={unique('t')}\nRUN echo t > /t\n")
    loose = _context(tmp_path / "l", f"FROM busybox\nENV L={unique('l')}\nRUN echo l > /l\n")
    tag = unique("prune")
    docker_cli("build", "-t", tag, str(tagged))
    loose_id = docker_cli("build", "-q", str(loose)).stdout.strip()
    shared = {c["ID"] for c in docker_py.api.df()["BuildCache"] if c["Shared"]}
    pr = docker_cli("builder", "prune", "-f").stdout
    assert "Total reclaimed space" in pr
    assert docker_cli("build", "-t", tag, str(tagged)).stdout.count("Using cache") == 2
    assert docker_cli("build", str(loose)).stdout.count("Using cache") == 0
    assert shared <= {c["ID"] for c in docker_py.api.df()["BuildCache"]}
    docker_cli("builder", "prune", "-af")
    assert docker_py.api.df()["BuildCache"] == []
    assert docker_cli("build", "-t", tag, str(tagged)).stdout.count("Using cache") == 0
    docker_cli("rmi", tag)
    docker_cli("builder", "prune", "-f")
    assert docker_cli("build", str(tagged)).stdout.count("Using cache") == 0
    docker_cli("image", "prune", "-f")
    docker_cli("rmi", loose_id, check=False)


def test_builder_prune_filters_honoured_or_refused(docker_cli: Runner, busybox: str, tmp_path: Path,
                                                  unique: Callable[[str], str]) -> None:  # fmt: skip
    """`until` keeps entries used since; BuildKit's other filters and storage targets are
    refused with a 400 rather than ignored (the classic builder's cache has neither)."""
    ctx = _context(tmp_path, f"FROM busybox\nENV U={unique('u')}\nRUN echo u > /u\n")
    image = docker_cli("build", "-q", str(ctx)).stdout.strip()
    docker_cli("builder", "prune", "-f", "--filter", "until=1h")  # used just now: kept
    assert docker_cli("build", str(ctx)).stdout.count("Using cache") == 2
    for args in (("--filter", "type=regular"), ("--keep-storage", "1GB")):
        res = docker_cli("builder", "prune", "-f", *args, check=False)
        said = res.stderr + res.stdout
        assert res.returncode != 0 and ("not supported" in said or "invalid filter" in said), (args, said)
    assert docker_cli("build", str(ctx)).stdout.count("Using cache") == 2  # nothing was pruned
    docker_cli("rmi", image, check=False)


def test_a_context_too_big_to_hold_in_memory_is_spooled(daemon, docker_cli: Runner, busybox: str, tmp_path: Path,
                                                        unique: Callable[[str], str]) -> None:  # fmt: skip
    """Past 64 MiB the daemon spools the upload to a file; the build and its cache must not
    notice, and the spool file must go when the build ends."""
    ctx = _context(tmp_path, "FROM busybox\nCOPY big.bin /big.bin\nRUN md5sum /big.bin > /sum\n")
    with open(ctx / "big.bin", "wb") as f:
        for i in range(70):
            f.write(bytes([i]) * (1 << 20))
    expected = hashlib.md5((ctx / "big.bin").read_bytes()).hexdigest()
    tag = unique("spooled")
    docker_cli("build", "-t", tag, str(ctx))
    assert docker_cli("run", "--rm", tag, "cat", "/sum").stdout.split()[0] == expected
    assert docker_cli("build", "-t", tag, str(ctx)).stdout.count("Using cache") == 2
    assert [p.name for p in (daemon.data_root / "tmp").rglob("upload-*")] == []
    docker_cli("rmi", tag)
