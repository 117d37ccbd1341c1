"""The build options and Dockerfile features that test_build.py leaves out, through the real
clients: the docker CLI (classic builder, DOCKER_BUILDKIT=0), docker-py and `dockyard build`.

- `POST /build` parameters: several tags, `-f` in a subdirectory and outside the context,
  compressed and plain tar contexts on stdin or from docker-py, a Dockerfile on stdin,
  `--platform`, the resource limits of RUN containers, `--add-host`, `--network none`,
  `-q`, `--label`, `--rm=false` / `--force-rm`, and `remote` (git repositories and
  tarball / Dockerfile URLs, served on loopback by a thread of this process).
- Dockerfile features: the backtick escape directive, `${VAR:-x}` / `${VAR:+x}`, ARGs
  before FROM, `FROM --platform`, `COPY --link`, directory and wildcard COPY, `.dockerignore`
  with `**` and `!`, ADD's extraction against COPY's, `COPY --from=<image>`.
- `dockyard build` with its options and its progress output.

The build's default network, `--pull` and `cachefrom` are left to other tests. Each test
removes the images and containers it made, also when it fails.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import http.server
import io
import json
import os
import re
import socket
import subprocess
import tarfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Self

import docker
import pytest

from tests.conftest import HOST_TOOLS, Daemon, Runner
from tests.integration.test_build import _context, _leftovers

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")

ID = re.compile(r"sha256:[0-9a-f]{64}")


# ---- helpers --------------------------------------------------------------------------------


@pytest.fixture
def made(docker_cli: Runner) -> Iterator[list[str]]:
    """Image references (tags or IDs) a test made: removed at teardown, pass or fail."""
    refs: list[str] = []
    yield refs
    for ref in reversed(refs):
        docker_cli("rmi", "-f", ref, check=False)


@pytest.fixture
def containers(docker_cli: Runner) -> Iterator[list[str]]:
    """Container IDs a test made (or a build left behind): removed at teardown."""
    ids: list[str] = []
    yield ids
    if ids:
        docker_cli("rm", "-f", *ids, check=False)


def _docker_bytes(daemon: Daemon, *args: str, data: bytes, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """The docker CLI with binary stdin (a tar, a tar.gz): the Runner only takes text."""
    env = {**os.environ, "DOCKER_HOST": daemon.host, "DOCKER_BUILDKIT": "0"}
    res = subprocess.run(["docker", *args], input=data, capture_output=True, timeout=60, env=env, check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"docker {args} exited {res.returncode}:\n{res.stdout.decode()}\n{res.stderr.decode()}")
    return res


def _cat(docker_cli: Runner, image: str, *paths: str) -> str:
    """The files' contents in a container of image (no network: reading needs none)."""
    return docker_cli("run", "--rm", "--network", "none", image, "cat", *paths).stdout


def _sh(docker_cli: Runner, image: str, script: str) -> str:
    return docker_cli("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c", script).stdout


def _tar(files: dict[str, bytes | str], *, gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _py_build(docker_py: docker.DockerClient, **kwargs: object) -> str:
    """A docker-py low-level build: its stream text; an error in the stream fails the test."""
    out = []
    for m in docker_py.api.build(decode=True, rm=True, **kwargs):
        assert not m.get("error"), m
        out.append(str(m.get("stream", "")))
    return "".join(out)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=60)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(self.socket_path)


def _raw_build(daemon: Daemon, params: dict[str, str]) -> tuple[int, list[dict[str, object]]]:
    """`POST /build` with no body, as a client of the raw API would send a remote build."""
    conn = _UnixConnection(str(daemon.socket))
    try:
        conn.request("POST", "/v1.47/build?" + urllib.parse.urlencode(params), body=b"",
                     headers={"Content-Type": "application/x-tar"})  # fmt: skip
        resp = conn.getresponse()
        body = resp.read().decode()
    finally:
        conn.close()
    if resp.status != 200:
        return resp.status, [json.loads(body)]
    return resp.status, [json.loads(line) for line in body.splitlines() if line.strip()]


class _Served:
    """A directory served over HTTP on 127.0.0.1 by a thread of the test process: as plain
    files, or (git=True) as git repositories through git-http-backend (git's smart HTTP)."""

    def __init__(self, root: Path, *, git: bool = False) -> None:
        handler = functools.partial(_GitHandler if git else _FileHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.requests: list[str] = []
        self.server.requests = self.requests  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class _FileHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]


GIT_HTTP_BACKEND = HOST_TOOLS["git-http-backend"][0]


class _GitHandler(_FileHandler):
    """git-http-backend as a CGI program: the smart protocol, which allows shallow fetches."""

    def _backend(self, send_body: bool = True) -> None:
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_PROJECT_ROOT": self.directory,
               "GIT_HTTP_EXPORT_ALL": "1", "GIT_CONFIG_NOSYSTEM": "1", "PATH_INFO": path, "QUERY_STRING": query,
               "REQUEST_METHOD": "GET" if self.command == "HEAD" else self.command,
               "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
               "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""), "REMOTE_ADDR": "127.0.0.1"}  # fmt: skip
        out = subprocess.run([GIT_HTTP_BACKEND], input=body, env=env, capture_output=True, timeout=30, check=False).stdout
        sep = b"\r\n\r\n" if b"\r\n\r\n" in out else b"\n\n"
        head, _, payload = out.partition(sep)
        status, headers = 200, []
        for line in head.decode().splitlines():
            k, _, v = line.partition(":")
            if k.lower() == "status":
                status = int(v.split()[0])
            elif k:
                headers.append((k, v.strip()))
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if send_body:
            self.wfile.write(payload)

    def do_GET(self) -> None:
        self._backend()

    def do_POST(self) -> None:
        self._backend()

    def do_HEAD(self) -> None:
        self._backend(send_body=False)


def _git(*args: str, cwd: Path) -> None:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}  # fmt: skip
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, timeout=30)


def _git_repo(path: Path, files: dict[str, str]) -> Path:
    """A repository with one commit on branch master (dockerd's default ref)."""
    _context(path, files.pop("Dockerfile"), files)
    _git("init", "-q", "-b", "master", ".", cwd=path)
    _git("add", "-A", cwd=path)
    _git("commit", "-q", "-m", "ctx", cwd=path)
    return path


# ---- POST /build parameters -----------------------------------------------------------------


def test_several_tags_at_once(docker_cli: Runner, busybox: str, tmp_path: Path, unique: Callable[[str], str],
                              made: list[str]) -> None:  # fmt: skip
    ctx = _context(tmp_path, f"FROM busybox\nENV T={unique('t')}\n")
    a, b, c = unique("tags-a"), unique("tags-b") + ":v2", unique("tags-c") + ":latest"
    made += [a, b, c]
    out = docker_cli("build", "-t", a, "-t", b, "-t", c, str(ctx)).stdout
    for t in (a + ":latest", b, c):
        assert f"Successfully tagged {t}\n" in out
    ids = {docker_cli("inspect", "--format", "{{.Id}}", t).stdout.strip() for t in (a, b, c)}
    assert len(ids) == 1
    tags = json.loads(docker_cli("inspect", "--format", "{{json .RepoTags}}", a).stdout)
    assert sorted(tags) == sorted([a + ":latest", b, c])


def test_dockerfile_in_a_subdirectory(docker_cli: Runner, busybox: str, tmp_path: Path,
                                      unique: Callable[[str], str], made: list[str]) -> None:  # fmt: skip
    before = _leftovers(docker_cli)
    ctx = _context(tmp_path, "FROM busybox\nRUN exit 7\n",  # the default Dockerfile must not be used
                   {"a.txt": "from the context\n",
                    "sub/Dockerfile.dev": "FROM busybox\nCOPY a.txt /in-sub/\nCOPY sub/Dockerfile.dev /df\n"})  # fmt: skip
    tag = unique("sub")
    made.append(tag)
    # the CLI takes -f relative to the current directory, not to the context: give it absolute
    docker_cli("build", "-f", str(ctx / "sub" / "Dockerfile.dev"), "-t", tag, str(ctx))
    assert _cat(docker_cli, tag, "/in-sub/a.txt", "/df") == "from the context\n" + (ctx / "sub" / "Dockerfile.dev").read_text()
    r = docker_cli("build", "-f", str(ctx / "sub" / "missing"), str(ctx), check=False)
    assert r.returncode != 0 and "missing" in r.stderr
    assert _leftovers(docker_cli) == before


def test_dockerfile_outside_the_context(docker_cli: Runner, busybox: str, tmp_path: Path,
                                        unique: Callable[[str], str], made: list[str]) -> None:  # fmt: skip
    ctx = _context(tmp_path / "ctx", "FROM busybox\nRUN exit 7\n", {"a.txt": "from the context\n", "sub/x": "x\n"})
    outside = tmp_path / "elsewhere" / "build.Dockerfile"
    outside.parent.mkdir()
    outside.write_text("FROM busybox\nCOPY a.txt /outside/\nCOPY . /ctx/\n")
    tag = unique("outside")
    made.append(tag)
    docker_cli("build", "-f", str(outside), "-t", tag, str(ctx))
    assert _cat(docker_cli, tag, "/outside/a.txt") == "from the context\n"
    # the CLI sends the Dockerfile as .dockerfile.<random> with a .dockerignore naming it and
    # itself; dockerd drops both, so neither is in the context
    assert sorted(_sh(docker_cli, tag, "ls -A /ctx").split()) == ["Dockerfile", "a.txt", "sub"]


def test_gzip_context_from_docker_py(docker_py: docker.DockerClient, busybox: str, tmp_path: Path,
                                     unique: Callable[[str], str], made: list[str], docker_cli: Runner) -> None:  # fmt: skip
    tgz = tmp_path / "ctx.tar.gz"
    tgz.write_bytes(_tar({"build/Dockerfile": "FROM busybox\nCOPY data/in.txt /in.txt\nRUN wc -c < /in.txt > /n\n",
                          "data/in.txt": "gzipped context\n"}, gz=True))  # fmt: skip
    assert tgz.read_bytes()[:2] == b"\x1f\x8b"
    tag = unique("gz")
    made.append(tag)
    with open(tgz, "rb") as f:
        text = _py_build(docker_py, fileobj=f, custom_context=True, encoding="gzip", tag=tag, dockerfile="build/Dockerfile")
    assert f"Successfully tagged {tag}:latest" in text
    assert _cat(docker_cli, tag, "/in.txt", "/n") == "gzipped context\n16\n"


def test_plain_tar_context_on_stdin(daemon: Daemon, docker_cli: Runner, busybox: str, unique: Callable[[str], str],
                                    made: list[str]) -> None:  # fmt: skip
    tar = _tar({"Dockerfile": "FROM busybox\nCOPY f.txt /f.txt\n", "f.txt": "from a tar on stdin\n",
                "alt/Dockerfile": "FROM busybox\nCOPY f.txt /alt.txt\n"})  # fmt: skip
    tag, alt = unique("stdin-tar"), unique("stdin-tar-alt")
    made += [tag, alt]
    _docker_bytes(daemon, "build", "-t", tag, "-", data=tar)
    assert _cat(docker_cli, tag, "/f.txt") == "from a tar on stdin\n"
    # with a tar context, -f names a file inside the archive
    _docker_bytes(daemon, "build", "-f", "alt/Dockerfile", "-t", alt, "-", data=tar)
    assert _cat(docker_cli, alt, "/alt.txt") == "from a tar on stdin\n"


def test_dockerfile_on_stdin_with_a_context_directory(docker_cli: Runner, busybox: str, tmp_path: Path,
                                                      unique: Callable[[str], str], made: list[str]) -> None:  # fmt: skip
    ctx = _context(tmp_path, "FROM busybox\nRUN exit 9\n", {"a.txt": "ctx file\n"})
    tag = unique("df-stdin")
    made.append(tag)
    docker_cli("build", "-f-", "-t", tag, str(ctx), input="FROM busybox\nCOPY a.txt /a.txt\nRUN echo piped > /p\n")
    assert _cat(docker_cli, tag, "/a.txt", "/p") == "ctx file\npiped\n"


def test_dockerfile_on_stdin_without_a_context(docker_cli: Runner, busybox: str, unique: Callable[[str], str],
                                               made: list[str]) -> None:  # fmt: skip
    """`docker build - < Dockerfile`: the Dockerfile is the whole context."""
    tag = unique("df-stdin-noctx")
    made.append(tag)
    docker_cli("build", "-t", tag, "-", input=f"FROM busybox\nENV U={unique('u')}\nRUN echo no-context > /n\n")
    assert _cat(docker_cli, tag, "/n") == "no-context\n"
    r = docker_cli("build", "-", input="FROM busybox\nCOPY a.txt /a.txt\n", check=False)
    assert r.returncode != 0 and "a.txt" in r.stderr


def test_platform(docker_cli: Runner, busybox: str, tmp_path: Path, unique: Callable[[str], str], made: list[str]) -> None:
    before = _leftovers(docker_cli)
    ctx = _context(tmp_path, f"FROM busybox\nENV P={unique('p')}\nRUN echo ok > /ok\n")
    tag = unique("plat")
    made.append(tag)
    docker_cli("build", "--platform", "linux/amd64", "-t", tag, str(ctx))
    assert docker_cli("inspect", "--format", "{{.Os}}/{{.Architecture}}", tag).stdout.strip() == "linux/amd64"
    win = unique("win")
    made.append(win)
    r = docker_cli("build", "--platform", "windows/amd64", "-t", win, str(ctx), check=False)
    assert r.returncode != 0
    assert re.search(r"windows|not supported|unsupported", r.stderr), r.stderr
    assert docker_cli("image", "inspect", win, check=False).returncode != 0
    assert _leftovers(docker_cli) == before


def test_resource_limits_apply_to_run(docker_cli: Runner, busybox: str, tmp_path: Path, unique: Callable[[str], str],
                                      made: list[str]) -> None:  # fmt: skip
    df = (f"FROM busybox\nENV U={unique('u')}\n"
          "RUN df -k /dev/shm | tail -n 1 | awk '{print $2}' > /shm"
          " && cat /sys/fs/cgroup/memory/memory.limit_in_bytes > /mem"
          " && cat /sys/fs/cgroup/cpu/cpu.shares > /shares\n")  # fmt: skip
    ctx = _context(tmp_path, df)
    tag = unique("limits")
    made.append(tag)
    docker_cli("build", "--shm-size", "32m", "--memory", "64m", "--cpu-shares", "512", "-t", tag, str(ctx))
    assert _cat(docker_cli, tag, "/shm", "/mem", "/shares").split() == [str(32 * 1024), str(64 << 20), "512"]


def test_add_host(docker_cli: Runner, busybox: str, tmp_path: Path, unique: Callable[[str], str], made: list[str]) -> None:
    # --network none as well: the build's default network is not what this test is about
    ctx = _context(tmp_path, f"FROM busybox\nENV U={unique('u')}\nRUN grep -E 'dockyard-test|other' /etc/hosts > /h\n")
    tag = unique("addhost")
    made.append(tag)
    docker_cli("build", "--network", "none", "--add-host", "dockyard-test:1.2.3.4",
               "--add-host", "other:5.6.7.8", "-t", tag, str(ctx))  # fmt: skip
    lines = [line.split() for line in _cat(docker_cli, tag, "/h").splitlines()]
    assert lines == [["1.2.3.4", "dockyard-test"], ["5.6.7.8", "other"]]


def test_network_none(docker_cli: Runner, busybox: str, tmp_path: Path, unique: Callable[[str], str], made: list[str]) -> None:
    ctx = _context(tmp_path, f"FROM busybox\nENV U={unique('u')}\nRUN ls /sys/class/net > /nets\n")
    tag = unique("nonet")
    made.append(tag)
    docker_cli("build", "--network", "none", "-t", tag, str(ctx))
    assert _cat(docker_cli, tag, "/nets").split() == ["lo"]


def test_quiet_prints_only_the_id(docker_cli: Runner, busybox: str, tmp_path: Path, unique: Callable[[str], str],
                                  made: list[str]) -> None:  # fmt: skip
    ctx = _context(tmp_path, f"FROM busybox\nENV U={unique('u')}\nRUN echo noisy-output\n")
    r = docker_cli("build", "-q", str(ctx))
    made.append(r.stdout.strip())
    assert ID.fullmatch(r.stdout.strip()) and r.stdout.endswith("\n") and r.stdout.count("\n") == 1, r.stdout
    assert "noisy-output" not in r.stdout + r.stderr
    assert docker_cli("inspect", "--format", "{{.Id}}", r.stdout.strip()).stdout.strip() == r.stdout.strip()


def test_labels(docker_cli: Runner, busybox: str, tmp_path: Path, unique: Callable[[str], str], made: list[str]) -> None:
    ctx = _context(tmp_path, "FROM busybox AS first\nLABEL stage=first\nFROM busybox\nLABEL in.file=yes over=file\n")
    tag = unique("labels")
    made.append(tag)
    docker_cli("build", "--label", "com.example.a=1", "--label", "over=cli", "--label", "spaced=a b",
               "-t", tag, str(ctx))  # fmt: skip
    labels = json.loads(docker_cli("inspect", "--format", "{{json .Config.Labels}}", tag).stdout)
    assert labels == {"in.file": "yes", "over": "cli", "com.example.a": "1", "spaced": "a b"}


def test_label_option_steps_as_dockerd(docker_cli: Runner, busybox: str, tmp_path: Path,
                                       unique: Callable[[str], str], made: list[str]) -> None:  # fmt: skip
    """dockerd's buildLabelOptions: each --label becomes its own `LABEL key=value` command at
    the end of the target stage, sorted by key."""
    ctx = _context(tmp_path, f"FROM busybox\nENV U={unique('u')}\n")
    tag = unique("labelsteps")
    made.append(tag)
    out = docker_cli("build", "--label", "b=2", "--label", "a=1 x", "-t", tag, str(ctx)).stdout
    assert "Step 3/4 : LABEL a=1 x\n" in out and "Step 4/4 : LABEL b=2\n" in out, out
    history = docker_cli("history", "--no-trunc", "--format", "{{.CreatedBy}}", tag).stdout.splitlines()
    assert history[:2] == ["/bin/sh -c #(nop)  LABEL b=2", "/bin/sh -c #(nop)  LABEL a=1 x"]


def _all_containers(docker_cli: Runner) -> set[str]:
    return set(docker_cli("ps", "-aq", "--no-trunc").stdout.split())


def test_rm_false_keeps_and_force_rm_removes(docker_cli: Runner, busybox: str, tmp_path: Path,
                                             unique: Callable[[str], str], made: list[str],
                                             containers: list[str]) -> None:  # fmt: skip
    before = _leftovers(docker_cli)
    ps0 = _all_containers(docker_cli)
    ok = _context(tmp_path / "ok", f"FROM busybox\nENV U={unique('u')}\nRUN echo one > /1\nRUN echo two > /2\n")
    tag = unique("keep")
    made.append(tag)
    out = docker_cli("build", "--rm=false", "-t", tag, str(ok)).stdout
    kept = _all_containers(docker_cli) - ps0
    containers.extend(kept)
    assert "Removing intermediate container" not in out
    running_in = re.findall(r" ---> Running in ([0-9a-f]{12})", out)
    assert len(running_in) == 2 and {c[:12] for c in kept} == set(running_in)
    states = {docker_cli("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", c).stdout.strip() for c in kept}
    assert states == {"exited 0"}
    # a failing RUN with --rm=false keeps its container too
    bad = _context(tmp_path / "bad", f"FROM busybox\nENV U={unique('u')}\nRUN exit 4\n")
    r = docker_cli("build", "--rm=false", str(bad), check=False)
    assert r.returncode == 4
    failed = _all_containers(docker_cli) - ps0 - kept
    containers.extend(failed)
    assert len(failed) == 1
    assert docker_cli("inspect", "--format", "{{.State.ExitCode}}", next(iter(failed))).stdout.strip() == "4"
    # --force-rm: none left on failure either, and --rm=false does not win over it
    for extra in ([], ["--rm=false"]):
        r = docker_cli("build", "--force-rm", *extra, str(bad), check=False)
        assert r.returncode == 4 and "returned a non-zero code: 4" in r.stderr
        assert _all_containers(docker_cli) == ps0 | kept | failed
    # what --rm=false left: the containers, then the image the failed RUN ran on
    docker_cli("rm", *containers)
    containers.clear()
    docker_cli("rmi", tag)
    made.clear()
    dangling = set(docker_cli("images", "-q", "--filter", "dangling=true").stdout.split()) - before[1]
    if dangling:
        docker_cli("rmi", *dangling)
    assert _leftovers(docker_cli) == before


# ---- remote contexts --------------------------------------------------------------------------


def test_remote_path_on_the_daemons_host_is_refused(daemon: Daemon, tmp_path: Path) -> None:
    """`remote` names URLs only, as dockerd's: a git repository or a tarball named by a path on
    the daemon's host is refused with dockerd's words (it would make the daemon read the
    host's files on the caller's behalf)."""
    repo = _git_repo(tmp_path / "repo.git", {"Dockerfile": "FROM busybox\n"})
    tarball = tmp_path / "ctx.tar"
    subprocess.run(["tar", "-C", str(repo), "-cf", str(tarball), "Dockerfile"], check=True)
    for remote in (str(repo), str(tarball), f"file://{repo}"):
        status, messages = _raw_build(daemon, {"remote": remote})
        text = json.dumps(messages)
        assert status in (200, 400) and f"remoteURL ({remote}) could not be recognized as URL" in text, (
            remote, status, messages)


def _served_repo(tmp_path: Path) -> Path:
    """A bare repository (under srv/repo.git) whose master has a build context in app/ and a
    failing Dockerfile at the top."""
    src = _git_repo(tmp_path / "src", {"Dockerfile": "FROM busybox\nRUN exit 3\n",
                                       "app/Dockerfile": "FROM busybox\nCOPY hello.txt /hello.txt\n",
                                       "app/hello.txt": "hello from git\n"})  # fmt: skip
    served = tmp_path / "srv"
    served.mkdir()
    _git("clone", "-q", "--bare", str(src), str(served / "repo.git"), cwd=tmp_path)
    _git("update-server-info", cwd=served / "repo.git")  # what a dumb HTTP client reads
    return served


@pytest.mark.usefixtures("host_tools")
def test_remote_git_url_smart_http(docker_py: docker.DockerClient, docker_cli: Runner, busybox: str,
                                   tmp_path: Path, unique: Callable[[str], str], made: list[str]) -> None:  # fmt: skip
    """A `.git` URL with a `#ref:subdir` fragment, from git's smart HTTP on loopback."""
    served = _served_repo(tmp_path)
    tag = unique("git-smart")
    made.append(tag)
    with _Served(served, git=True) as srv:
        text = _py_build(docker_py, path=f"{srv.url}/repo.git#master:app", tag=tag)
        assert any("git-upload-pack" in r for r in srv.requests), srv.requests
    assert "Step 2/2 : COPY hello.txt /hello.txt" in text  # app/Dockerfile, not the top one
    assert _cat(docker_cli, tag, "/hello.txt") == "hello from git\n"


def test_remote_git_url_dumb_http(docker_py: docker.DockerClient, docker_cli: Runner, busybox: str,
                                  tmp_path: Path, unique: Callable[[str], str], made: list[str]) -> None:  # fmt: skip
    """The same repository from a plain file server: dockerd's supportsShallowClone sees no
    smart-HTTP advertisement and fetches without --depth."""
    served = _served_repo(tmp_path)
    tag = unique("git-dumb")
    made.append(tag)
    with _Served(served) as srv:
        _py_build(docker_py, path=f"{srv.url}/repo.git#master:app", tag=tag)
    assert _cat(docker_cli, tag, "/hello.txt") == "hello from git\n"


def test_remote_tarball_and_dockerfile_urls(docker_py: docker.DockerClient, docker_cli: Runner, busybox: str,
                                            tmp_path: Path, unique: Callable[[str], str], made: list[str]) -> None:  # fmt: skip
    before = _leftovers(docker_cli)
    served = tmp_path / "srv"
    served.mkdir()
    (served / "ctx.tar.gz").write_bytes(_tar({"Dockerfile": "FROM busybox\nCOPY r.txt /r.txt\n",
                                              "other.Dockerfile": "FROM busybox\nCOPY r.txt /other.txt\n",
                                              "r.txt": "from a URL\n"}, gz=True))  # fmt: skip
    (served / "Dockerfile").write_text(f"FROM busybox\nENV U={unique('u')}\nRUN echo plain-dockerfile > /d\n")
    tar_tag, other_tag, df_tag = unique("url-tar"), unique("url-tar-f"), unique("url-df")
    made += [tar_tag, other_tag, df_tag]
    with _Served(served) as srv:
        _py_build(docker_py, path=f"{srv.url}/ctx.tar.gz", tag=tar_tag)
        _py_build(docker_py, path=f"{srv.url}/ctx.tar.gz", dockerfile="other.Dockerfile", tag=other_tag)
        # a URL to a lone Dockerfile (served as application/octet-stream: dockerd sniffs it)
        text = _py_build(docker_py, path=f"{srv.url}/Dockerfile", tag=df_tag)
        assert "plain-dockerfile" in text  # the RUN's output
        assert set(srv.requests) == {"/ctx.tar.gz", "/Dockerfile"}
    assert _cat(docker_cli, tar_tag, "/r.txt") == "from a URL\n"
    assert _cat(docker_cli, other_tag, "/other.txt") == "from a URL\n"
    assert _cat(docker_cli, df_tag, "/d") == "plain-dockerfile\n"
    assert _leftovers(docker_cli) == before


# ---- Dockerfile features ----------------------------------------------------------------------


def test_backtick_escape_directive(docker_cli: Runner, busybox: str, tmp_path: Path, unique: Callable[[str], str],
                                   made: list[str]) -> None:  # fmt: skip
    """The escape directive set to a backtick: backslashes are plain characters (Windows
    paths), a backtick continues a line and escapes a quote."""
    df = ("# escape=`\n"
          "FROM busybox\n"
          "ENV WINPATH=C:\\Windows\\System32 `\n"
          "    SECOND=two\n"
          "LABEL quoted=\"say `\"hi`\"\"\n"
          "RUN echo first `\n"
          "    second > /joined && `\n"
          "    printf '%s\\n' \"$WINPATH\" > /winpath\n")  # fmt: skip
    ctx = _context(tmp_path, df)
    tag = unique("escape")
    made.append(tag)
    docker_cli("build", "-t", tag, str(ctx))
    cfg = json.loads(docker_cli("inspect", "--format", "{{json .Config}}", tag).stdout)
    assert "WINPATH=C:\\Windows\\System32" in cfg["Env"] and "SECOND=two" in cfg["Env"]
    assert cfg["Labels"] == {"quoted": 'say "hi"'}
    assert _cat(docker_cli, tag, "/joined", "/winpath") == "first second\nC:\\Windows\\System32\n"


def test_default_and_alternate_substitution(docker_cli: Runner, busybox: str, tmp_path: Path,
                                            unique: Callable[[str], str], made: list[str]) -> None:  # fmt: skip
    df = ("FROM busybox\n"
          "ARG SET=yes\n"
          "ARG EMPTY=\n"
          "ENV A=${UNSET:-dflt} B=${SET:+alt} C=${SET:-unused} D=x${UNSET:+never} E=${EMPTY:-was-empty}\n"
          "WORKDIR /w/${UNSET:-wd}/${SET:+sub}\n"
          "COPY ${SRC:-a.txt} ${SET:+/copied}/\n"
          "COPY ${SET:+b.txt} ./\n")  # fmt: skip
    ctx = _context(tmp_path, df, {"a.txt": "a\n", "b.txt": "b\n"})
    tag = unique("subst")
    made.append(tag)
    docker_cli("build", "-t", tag, str(ctx))
    cfg = json.loads(docker_cli("inspect", "--format", "{{json .Config}}", tag).stdout)
    assert [e for e in cfg["Env"] if not e.startswith("PATH=")] == ["A=dflt", "B=alt", "C=yes", "D=x", "E=was-empty"]
    assert cfg["WorkingDir"] == "/w/wd/sub"
    assert _cat(docker_cli, tag, "/copied/a.txt", "/w/wd/sub/b.txt") == "a\nb\n"
    # an empty value: `:-` takes the default, `:+` gives nothing; a given ARG beats the default
    df2 = ("FROM busybox\nARG SET=yes\nARG SRC\nENV B=${SET:+alt} C=${SET:-unused} S=${SRC:-none}\n"
           "WORKDIR /w/${SET:+sub}\nCOPY ${SRC:-a.txt} /c/\n")  # fmt: skip
    other = unique("subst2")
    made.append(other)
    (ctx / "Dockerfile.2").write_text(df2)
    docker_cli("build", "--build-arg", "SET=", "--build-arg", "SRC=b.txt", "-t", other, "-f", str(ctx / "Dockerfile.2"), str(ctx))
    cfg = json.loads(docker_cli("inspect", "--format", "{{json .Config}}", other).stdout)
    assert [e for e in cfg["Env"] if not e.startswith("PATH=")] == ["B=", "C=unused", "S=b.txt"]
    assert cfg["WorkingDir"] == "/w"
    assert _sh(docker_cli, other, "ls /c") == "b.txt\n"


def test_args_before_from(docker_cli: Runner, busybox: str, tmp_path: Path, unique: Callable[[str], str],
                          made: list[str]) -> None:  # fmt: skip
    base = unique("argbase")
    made.append(base + ":v2")
    docker_cli("build", "-t", base + ":v2", str(_context(tmp_path / "base", "FROM busybox\nRUN echo marker > /marker\n")))
    df = ("ARG IMG=busybox\n"
          "ARG TAG=latest\n"
          "FROM ${IMG}:${TAG}\n"
          "ARG TAG\n"
          "RUN echo \"tag=$TAG img=$IMG\" > /args\n")  # fmt: skip
    ctx = _context(tmp_path / "ctx", df)
    default, given = unique("argfrom"), unique("argfrom2")
    made += [default, given]
    out = docker_cli("build", "-t", default, str(ctx)).stdout
    assert "Step 1/5 : ARG IMG=busybox\n" in out and "Step 3/5 : FROM ${IMG}:${TAG}\n" in out
    assert _sh(docker_cli, default, "cat /args; test -e /marker || echo no-marker") == "tag=latest img=\nno-marker\n"
    docker_cli("build", "--build-arg", f"IMG={base}", "--build-arg", "TAG=v2", "-t", given, str(ctx))
    # FROM used both; after FROM only the re-declared TAG is visible
    assert _cat(docker_cli, given, "/args", "/marker") == "tag=v2 img=\nmarker\n"


def test_from_platform_flag(docker_cli: Runner, busybox: str, tmp_path: Path, unique: Callable[[str], str],
                            made: list[str]) -> None:  # fmt: skip
    ctx = _context(tmp_path, f"FROM --platform=linux/amd64 busybox AS b\nENV U={unique('u')}\nRUN echo x > /x\n")
    tag = unique("fromplat")
    made.append(tag)
    docker_cli("build", "-t", tag, str(ctx))
    assert docker_cli("inspect", "--format", "{{.Os}}/{{.Architecture}}", tag).stdout.strip() == "linux/amd64"
    assert _cat(docker_cli, tag, "/x") == "x\n"


def test_copy_link(docker_cli: Runner, busybox: str, tmp_path: Path, unique: Callable[[str], str], made: list[str]) -> None:
    ctx = _context(tmp_path, "FROM busybox\nCOPY --link a.txt /linked/\nCOPY --link d/ /linked-dir/\n",
                   {"a.txt": "linked\n", "d/x": "x\n"})  # fmt: skip
    tag = unique("link")
    made.append(tag)
    docker_cli("build", "-t", tag, str(ctx))
    assert _cat(docker_cli, tag, "/linked/a.txt", "/linked-dir/x") == "linked\nx\n"


def test_copy_directories_and_wildcards(docker_cli: Runner, busybox: str, tmp_path: Path,
                                        unique: Callable[[str], str], made: list[str]) -> None:  # fmt: skip
    df = ("FROM busybox\n"
          "COPY src /contents\n"             # a directory's contents, not the directory
          "COPY src other /merged/\n"        # several directories merge
          "COPY src/*.txt other/??.cfg /picked/\n"
          "COPY src/sub* /subs/\n"           # a wildcard matching a directory copies its contents
          "COPY one.txt /new/dir/\n"         # missing directories are made
          "COPY [\"sp ace.txt\", \"/json form/\"]\n")  # fmt: skip
    ctx = _context(tmp_path, df, {"src/a.txt": "a\n", "src/b.txt": "b\n", "src/c.md": "c\n", "src/sub/deep/d.txt": "d\n",
                                  "other/xy.cfg": "xy\n", "other/xyz.cfg": "xyz\n", "one.txt": "1\n",
                                  "sp ace.txt": "space\n"})  # fmt: skip
    tag = unique("copydirs")
    made.append(tag)
    docker_cli("build", "-t", tag, str(ctx))
    listing = _sh(docker_cli, tag, "cd / && find contents merged picked subs new 'json form' | sort")
    assert listing.split("\n") == [
        "contents", "contents/a.txt", "contents/b.txt", "contents/c.md", "contents/sub", "contents/sub/deep",
        "contents/sub/deep/d.txt",
        "json form", "json form/sp ace.txt",
        "merged", "merged/a.txt", "merged/b.txt", "merged/c.md", "merged/sub", "merged/sub/deep",
        "merged/sub/deep/d.txt", "merged/xy.cfg", "merged/xyz.cfg",
        "new", "new/dir", "new/dir/one.txt",
        "picked", "picked/a.txt", "picked/b.txt", "picked/xy.cfg",
        "subs", "subs/deep", "subs/deep/d.txt", "",
    ]  # fmt: skip


def _build_with(client: str, docker_cli: Runner, dockyard_cli: Runner, *args: str) -> None:
    (docker_cli if client == "docker" else dockyard_cli)("build", *args)


@pytest.mark.parametrize("client", ["docker", "dockyard"])
def test_dockerignore_double_star_and_exceptions(client: str, docker_cli: Runner, dockyard_cli: Runner, busybox: str,
                                                 tmp_path: Path, unique: Callable[[str], str], made: list[str]) -> None:  # fmt: skip
    """The docker CLI applies .dockerignore before sending; `dockyard build` sends everything
    and the daemon applies it: the image must be the same."""
    ignore = "**/*.log\n!keep/important.log\n**/tmp*\nbuild/\n# a comment\n"
    ctx = _context(tmp_path, "FROM busybox\nCOPY . /ctx/\n", {
        ".dockerignore": ignore, "top.txt": "t\n", "a.log": "x\n", "deep/er/b.log": "x\n", "deep/er/ok.txt": "ok\n",
        "keep/important.log": "kept\n", "keep/other.log": "x\n", "x/tmpfile": "x\n", "x/y/tmpdir/f": "x\n",
        "x/y/z.txt": "z\n", "build/out.bin": "x\n",
    })  # fmt: skip
    tag = unique("ignore-" + client)
    made.append(tag)
    _build_with(client, docker_cli, dockyard_cli, "-t", tag, str(ctx))
    files = _sh(docker_cli, tag, "cd /ctx && find . -type f | sort").split()
    assert files == ["./.dockerignore", "./Dockerfile", "./deep/er/ok.txt", "./keep/important.log", "./top.txt",
                     "./x/y/z.txt"]  # fmt: skip
    r = docker_cli("build", str(_context(tmp_path / "c2", "FROM busybox\nCOPY deep/er/b.log /\n",
                                         {".dockerignore": ignore, "deep/er/b.log": "x\n"})), check=False)  # fmt: skip
    assert r.returncode != 0 and "excluded by .dockerignore" in r.stderr


@pytest.mark.parametrize("client", ["docker", "dockyard"])
def test_dockerignore_reincludes_a_file_in_an_excluded_directory(
    client: str, docker_cli: Runner, dockyard_cli: Runner, busybox: str, tmp_path: Path,
    unique: Callable[[str], str], made: list[str],
) -> None:
    """`secret` then `!secret/public.txt`: the docker CLI still walks into secret/ (an
    exception starts with it) and sends public.txt; dockerd copies what it got."""
    ctx = _context(tmp_path, "FROM busybox\nCOPY . /ctx/\nCOPY secret/public.txt /single.txt\n", {
        ".dockerignore": "secret\n!secret/public.txt\n", "secret/private.key": "x\n", "secret/public.txt": "public\n",
    })  # fmt: skip
    tag = unique("reinclude-" + client)
    made.append(tag)
    _build_with(client, docker_cli, dockyard_cli, "-t", tag, str(ctx))
    files = _sh(docker_cli, tag, "cd /ctx && find . -type f | sort").split()
    assert files == ["./.dockerignore", "./Dockerfile", "./secret/public.txt"]
    assert _cat(docker_cli, tag, "/single.txt") == "public\n"


def test_add_extracts_a_local_tarball_copy_does_not(docker_cli: Runner, busybox: str, tmp_path: Path,
                                                    unique: Callable[[str], str], made: list[str]) -> None:  # fmt: skip
    tgz = _tar({"pkg/bin/tool": "#!/bin/sh\necho tool\n", "pkg/README": "readme\n"}, gz=True)
    ctx = _context(tmp_path, "FROM busybox\nADD pkg.tar.gz /added/\nCOPY pkg.tar.gz /copied/\nADD pkg.tar.gz /file.tgz\n")
    (ctx / "pkg.tar.gz").write_bytes(tgz)
    tag = unique("addtar")
    made.append(tag)
    docker_cli("build", "-t", tag, str(ctx))
    listing = _sh(docker_cli, tag, "cd / && find added copied -type f | sort; md5sum copied/pkg.tar.gz; "
                                   "test -d /file.tgz && echo file.tgz-is-a-dir")  # fmt: skip
    lines = listing.splitlines()
    assert lines[:3] == ["added/pkg/README", "added/pkg/bin/tool", "copied/pkg.tar.gz"]
    assert lines[3].split()[0] == hashlib.md5(tgz).hexdigest()
    # ADD to a path without a trailing slash extracts into a directory of that name
    assert lines[4:] == ["file.tgz-is-a-dir"]


def test_copy_from_an_image(docker_cli: Runner, busybox: str, tmp_path: Path, unique: Callable[[str], str],
                            made: list[str]) -> None:  # fmt: skip
    src = unique("copysrc")
    made.append(src)
    docker_cli("build", "-t", src, str(_context(tmp_path / "src", f"FROM busybox\nRUN mkdir -p /out/d && "
                                                f"echo {src} > /out/d/f && chown -R 65534:65534 /out\n")))  # fmt: skip
    df = f"FROM scratch\nCOPY --from={src} /out/d /d\nCOPY --from={src}:latest /out/d/f /f2\nCOPY --from=busybox /bin/busybox /bin/\n"
    tag = unique("copyfrom")
    made.append(tag)
    docker_cli("build", "-t", tag, str(_context(tmp_path / "dst", df)))
    out = docker_cli("run", "--rm", "--network", "none", "--entrypoint", "/bin/busybox", tag,
                     "sh", "-c", "/bin/busybox cat /d/f /f2; /bin/busybox stat -c '%u:%g' /d/f /f2").stdout  # fmt: skip
    # copies from another image keep their owners unless --chown says otherwise (dockerd's preserveOwnership)
    assert out.split() == [src, src, "65534:65534", "65534:65534"]
    r = docker_cli("build", str(_context(tmp_path / "bad", f"FROM busybox\nCOPY --from={src} /nope /\n")), check=False)
    assert r.returncode != 0 and "nope" in r.stderr


# ---- dockyard build -------------------------------------------------------------------------


def test_dockyard_cli_options(dockyard_cli: Runner, docker_cli: Runner, busybox: str, tmp_path: Path,
                              unique: Callable[[str], str], made: list[str]) -> None:  # fmt: skip
    before = _leftovers(docker_cli)
    df = ("FROM busybox AS base\n"
          "ARG WHO=nobody\n"
          "RUN echo \"hello $WHO\" && echo \"$WHO\" > /who\n"
          "RUN ls /sys/class/net > /nets && grep dy-host /etc/hosts > /hosts\n"
          "FROM base AS final\n"
          "RUN exit 5\n")  # fmt: skip
    ctx = _context(tmp_path / "ctx", "FROM busybox\nRUN exit 8\n", {"build/alt.Dockerfile": df})
    tag = unique("dycli")
    made.append(tag)
    args = ["build", "-f", str(ctx / "build" / "alt.Dockerfile"), "--target", "base", "--build-arg", "WHO=dockyard",
            "--label", "via=dockyard", "--network", "none", "--add-host", "dy-host:10.1.2.3", "-t", tag, str(ctx)]  # fmt: skip
    out = dockyard_cli(*args).stdout
    assert out.startswith("Step 1/5 : FROM busybox AS base\n"), out
    assert "Step 3/5 : RUN echo \"hello $WHO\" && echo \"$WHO\" > /who\n" in out
    assert "\nhello dockyard\n" in out  # the RUN's own output
    assert "Step 5/5 : LABEL" in out and "exit 5" not in out
    assert f"Successfully tagged {tag}:latest" in out
    assert _cat(docker_cli, tag, "/who", "/nets") == "dockyard\nlo\n"
    assert _cat(docker_cli, tag, "/hosts").split() == ["10.1.2.3", "dy-host"]
    assert json.loads(docker_cli("inspect", "--format", "{{json .Config.Labels}}", tag).stdout) == {"via": "dockyard"}
    first = docker_cli("inspect", "--format", "{{.Id}}", tag).stdout.strip()
    made.append(first)
    again = dockyard_cli(*args).stdout
    assert again.count("Using cache") == 4, again
    fresh = dockyard_cli("build", "--no-cache", *args[1:]).stdout
    assert "Using cache" not in fresh and "\nhello dockyard\n" in fresh
    assert docker_cli("inspect", "--format", "{{.Id}}", tag).stdout.strip() != first
    docker_cli("rmi", tag, first)  # the --no-cache build left the first image untagged
    made.clear()
    assert _leftovers(docker_cli) == before
