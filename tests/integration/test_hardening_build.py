"""Attacks on the builder through what strangers write: build contexts (uploaded or
fetched from a URL), archives ADD extracts, and base images with hostile symlinks.

Each test sends what an attacker would, through the docker CLI (`DOCKER_BUILDKIT=0`) or
docker-py, against "victim" files in a temporary host directory the test makes and
removes. Every attack must leave the victims untouched and either fail the build with a
clear 400 or be confined to the build's own files and the image.
"""

from __future__ import annotations

import http.server
import io
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from tests.conftest import Daemon, Runner

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")

SECRET = "host secret\n"


@pytest.fixture
def victim() -> Iterator[Path]:
    """A host directory holding a file an attacker must neither write, chmod nor read."""
    d = Path(tempfile.mkdtemp(prefix="dockyard-victim-"))
    os.chmod(d, 0o755)
    (d / "file").write_text(SECRET)
    os.chmod(d / "file", 0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _untouched(victim: Path) -> None:
    st = os.lstat(victim / "file")
    assert (victim / "file").read_text() == SECRET
    assert stat.S_IMODE(st.st_mode) == 0o644, oct(st.st_mode)
    assert sorted(p.name for p in victim.iterdir()) == ["file"]


# ---- tar members ------------------------------------------------------------------------


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in members:
            if data is not None:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            else:
                tf.addfile(ti)
    return buf.getvalue()


def reg(name: str, data: bytes = b"attacker\n", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.mode = mode
    return ti, data


def sym(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.SYMTYPE
    ti.linkname = target
    ti.mode = 0o777
    return ti, None


def hard(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.LNKTYPE
    ti.linkname = target
    return ti, None


def dev(name: str) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.CHRTYPE
    ti.devmajor, ti.devminor = 1, 3  # /dev/null's numbers
    ti.mode = 0o666
    return ti, None


def dockerfile(text: str) -> tuple[tarfile.TarInfo, bytes]:
    return reg("Dockerfile", text.encode())


def build_stdin(daemon: Daemon, context: bytes, tag: str) -> tuple[int, str]:
    """`docker build - < ctx.tar`: the CLI sends a tar on stdin to the daemon as it is."""
    env = {**os.environ, "DOCKER_HOST": daemon.host, "DOCKER_BUILDKIT": "0"}
    res = subprocess.run(["docker", "build", "-t", tag, "-"], input=context, capture_output=True, env=env, timeout=120)
    return res.returncode, (res.stdout + res.stderr).decode(errors="replace")


def _run(docker_cli: Runner, image: str, *cmd: str) -> str:
    return str(docker_cli("run", "--rm", image, *cmd, check=False).stdout)


def _rmi(docker_cli: Runner, *tags: str) -> None:
    docker_cli("rmi", "-f", *tags, check=False)


# ---- 1. the build context ------------------------------------------------------------


def test_context_symlink_then_setuid_file_stays_in_the_context(
    daemon: Daemon, docker_cli: Runner, busybox: str, victim: Path, unique: Callable[[str], str]
) -> None:
    """`x -> host file`, then a regular member `x` with mode 04777: the member replaces the
    link inside the context; the host file keeps its bytes and mode."""
    tag = unique("ctx-symfile")
    ctx = _tar(dockerfile("FROM busybox\nCOPY x /x\n"), sym("x", str(victim / "file")), reg("x", b"pwned\n", 0o4777))
    rc, out = build_stdin(daemon, ctx, tag)
    try:
        _untouched(victim)
        assert rc == 0, out
        assert _run(docker_cli, tag, "cat", "/x") == "pwned\n"
    finally:
        _rmi(docker_cli, tag)


def _escapes(victim: Path) -> dict[str, list[tuple[tarfile.TarInfo, bytes | None]]]:
    up = "../" * 12
    return {
        "dotdot-name": [reg(up + str(victim / "file").lstrip("/"), b"pwned\n", 0o4777)],
        "absolute-name": [reg(str(victim / "file"), b"pwned\n", 0o4777)],
        "hardlink-out": [hard("h", up + str(victim / "file").lstrip("/")), reg("h", b"pwned\n", 0o4777)],
        "hardlink-absolute": [hard("h", str(victim / "file")), reg("h", b"pwned\n", 0o4777)],
        "symlinked-parent": [sym("d", str(victim)), reg("d/new", b"pwned\n", 0o4777)],
        "symlinked-parent-relative": [sym("d", up + str(victim).lstrip("/")), reg("d/new", b"pwned\n", 0o4777)],
        "symlinked-parent-file": [sym("d", str(victim)), reg("d/file", b"pwned\n", 0o4777)],
        "symlinked-parent-dir-member": [sym("d", str(victim)), (tarfile.TarInfo("d/sub"), None)],
    }


ESCAPES = ["dotdot-name", "absolute-name", "hardlink-out", "hardlink-absolute", "symlinked-parent",
           "symlinked-parent-relative", "symlinked-parent-file", "symlinked-parent-dir-member"]  # fmt: skip


@pytest.mark.parametrize("case", ESCAPES)
def test_context_member_outside_is_refused(
    daemon: Daemon, docker_cli: Runner, busybox: str, victim: Path, unique: Callable[[str], str], case: str
) -> None:
    members = _escapes(victim)[case]
    if case == "symlinked-parent-dir-member":
        members[1][0].type = tarfile.DIRTYPE
        members[1][0].mode = 0o777
    tag = unique("ctx-" + case)
    rc, out = build_stdin(daemon, _tar(dockerfile("FROM busybox\nCOPY . /c/\n"), *members), tag)
    try:
        _untouched(victim)
        assert rc != 0, out
        assert "invalid build context" in out, out
    finally:
        _rmi(docker_cli, tag)


def test_context_device_nodes_are_left_out(
    daemon: Daemon, docker_cli: Runner, busybox: str, unique: Callable[[str], str]
) -> None:
    tag = unique("ctx-dev")
    rc, out = build_stdin(daemon, _tar(dockerfile("FROM busybox\nCOPY . /c/\n"), dev("null"), reg("ok")), tag)
    try:
        assert rc == 0, out
        listing = _run(docker_cli, tag, "ls", "/c")
        assert "ok" in listing.split() and "null" not in listing.split(), listing
    finally:
        _rmi(docker_cli, tag)


class _Serve:
    """A one-file HTTP server on loopback for remote contexts."""

    def __init__(self, data: bytes) -> None:
        body = data

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-tar")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ctx.tar"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def _hostile_remote(victim: Path) -> bytes:
    return _tar(dockerfile("FROM busybox\nCOPY . /c/\n"), sym("x", str(victim / "file")),
                reg("x", b"pwned\n", 0o4777), sym("d", str(victim)), reg("d/new", b"pwned\n"))  # fmt: skip


def test_remote_context_fetched_by_the_daemon(
    docker_py: docker.DockerClient, busybox: str, victim: Path, unique: Callable[[str], str]
) -> None:
    """docker-py passes a URL as `remote`: the daemon downloads and unpacks it."""
    srv = _Serve(_hostile_remote(victim))
    tag = unique("remote-daemon")
    try:
        with pytest.raises(docker.errors.APIError) as err:  # a 400 before the build starts
            docker_py.images.build(path=srv.url, tag=tag)
        assert err.value.status_code == 400
        assert "invalid build context" in str(err.value)
        _untouched(victim)
    finally:
        srv.close()
        with pytest.raises(docker.errors.ImageNotFound):
            docker_py.images.get(tag)


def test_remote_context_fetched_by_the_cli(
    docker_cli: Runner, busybox: str, victim: Path, unique: Callable[[str], str]
) -> None:
    """The docker CLI downloads a URL context itself and uploads it as it is."""
    srv = _Serve(_hostile_remote(victim))
    tag = unique("remote-cli")
    try:
        res = docker_cli("build", "-t", tag, srv.url, check=False)
        _untouched(victim)
        assert res.returncode != 0 and "invalid build context" in res.stdout + res.stderr, res.stdout + res.stderr
    finally:
        srv.close()
        _rmi(docker_cli, tag)


# ---- 2. destinations and sources inside the build container's rootfs -------------------


def _ctx_dir(tmp: Path, df: str, files: dict[str, bytes]) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "Dockerfile").write_text(df)
    for name, data in files.items():
        p = tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return tmp


def _hostile_base(docker_cli: Runner, tmp: Path, victim: Path, tag: str) -> None:
    """A base image whose symlinks name the victim's host path (absolute, and climbing
    with `..`): inside the container they name the container's own directory."""
    up = "../" * 10
    df = (f"FROM busybox\nRUN mkdir -p {victim} && ln -s {victim} /app && ln -s {up.rstrip('/')}{victim} /rel "
          f"&& ln -s {victim}/file /lfile && ln -s {victim}/file /leak && ln -s {victim} /leakdir\n")  # fmt: skip
    docker_cli("build", "-t", tag, str(_ctx_dir(tmp / "base", df, {})))


def test_copy_and_add_through_base_image_symlinks_stay_in_the_rootfs(
    docker_cli: Runner, busybox: str, tmp_path: Path, victim: Path, unique: Callable[[str], str]
) -> None:
    base, tag = unique("hostile-base"), unique("through-links")
    _hostile_base(docker_cli, tmp_path, victim, base)
    df = (f"FROM {base}\nCOPY f /app/x\nCOPY f /rel/y\nCOPY f /lfile\nCOPY d/ /app/sub/\nCOPY f d /rel/multi/\n"
          "ADD a.tar /app/t/\nADD a.tar /rel/\nWORKDIR /app/w\nCOPY f z\nRUN true\n")  # fmt: skip
    inner = _tar(reg("from-tar", b"tar\n", 0o4755))
    ctx = _ctx_dir(tmp_path / "ctx", df, {"f": b"pwned\n", "d/in-d": b"pwned\n", "a.tar": inner})
    try:
        docker_cli("build", "-t", tag, str(ctx))
        _untouched(victim)
        listing = _run(docker_cli, tag, "ls", "-a", str(victim)).split()
        assert sorted(listing) == sorted([".", "..", "file", "x", "y", "sub", "multi", "t", "w", "from-tar"]), listing
        assert _run(docker_cli, tag, "cat", f"{victim}/file", f"{victim}/w/z") == "pwned\npwned\n"
    finally:
        _rmi(docker_cli, tag, base)


@pytest.mark.parametrize("src", ["/leak", "/leakdir", "/leakdir/file", "/leakdir/*", "/leakdir/"])
@pytest.mark.parametrize("from_kind", ["stage", "image"])
def test_copy_from_resolves_the_source_in_its_rootfs(
    docker_cli: Runner, busybox: str, tmp_path: Path, victim: Path, unique: Callable[[str], str], src: str,
    from_kind: str,
) -> None:  # fmt: skip
    """The source of COPY --from names the stage's (image's) file: its symlinks never reach
    the host's, whether the build then fails (not found there) or copies the link."""
    base, tag = unique("hostile-src"), unique("copy-from")
    _hostile_base(docker_cli, tmp_path, victim, base)
    # the stage's own victim path is empty: a source through it is "not found" there
    ref = "s" if from_kind == "stage" else base
    df = f"FROM {base} AS s\nRUN rm -rf {victim}\nFROM busybox\nCOPY --from={ref} {src} /out/\n"
    if from_kind == "image":
        df = f"FROM busybox\nCOPY --from={base} {src} /out/\n"
        docker_cli("run", "--rm", base, "true")
    ctx = _ctx_dir(tmp_path / "ctx", df, {})
    try:
        res = docker_cli("build", "-t", tag, str(ctx), check=False)
        _untouched(victim)
        if res.returncode == 0:
            shown = _run(docker_cli, tag, "sh", "-c", "cat /out/* /out/*/* 2>/dev/null; ls -la /out")
            assert "host secret" not in shown, shown
    finally:
        _rmi(docker_cli, tag, base)


def test_add_archive_members_stay_in_the_destination(
    docker_cli: Runner, busybox: str, tmp_path: Path, victim: Path, unique: Callable[[str], str]
) -> None:
    tag = unique("add-tar")
    ok = _tar(sym("x", str(victim / "file")), reg("x", b"pwned\n", 0o4777), reg(".wh.kept", b"plain\n"))
    ctx = _ctx_dir(tmp_path / "ok", "FROM busybox\nADD a.tar /t/\n", {"a.tar": ok})
    try:
        docker_cli("build", "-t", tag, str(ctx))
        _untouched(victim)
        # `.wh.kept` is a plain name in an ADDed archive (not an overlay whiteout to make);
        # like dockerd's, the layer diff then carries it as a whiteout of `kept`
        assert _run(docker_cli, tag, "cat", "/t/x") == "pwned\n"
        for name, members in _escapes(victim).items():
            if name == "symlinked-parent-dir-member":
                continue
            bad = _ctx_dir(tmp_path / name, "FROM busybox\nADD a.tar /t/\n", {"a.tar": _tar(*members)})
            res = docker_cli("build", "-t", tag + "-bad", str(bad), check=False)
            _untouched(victim)
            assert res.returncode != 0 and "ADD failed" in res.stdout + res.stderr, (name, res.stdout + res.stderr)
    finally:
        _rmi(docker_cli, tag, tag + "-bad")


def test_chown_lookup_never_opens_a_fifo_of_the_base_image(
    docker_cli: Runner, busybox: str, tmp_path: Path, unique: Callable[[str], str]
) -> None:
    """A base image whose /etc/group is a FIFO: `--chown=u:g` must fail cleanly (no such
    group) instead of blocking the step's worker forever on open()."""
    base, tag = unique("fifo-base"), unique("fifo-chown")
    docker_cli("build", "-t", base, str(_ctx_dir(tmp_path / "base", "FROM busybox\nRUN rm /etc/group && mkfifo /etc/group\n", {})))
    ctx = _ctx_dir(tmp_path / "ctx", f"FROM {base}\nCOPY --chown=root:wheel f /f\n", {"f": b"x\n"})
    try:
        res = docker_cli("build", "-t", tag, str(ctx), check=False, timeout=30)
        assert res.returncode != 0 and "no such group: wheel" in res.stdout + res.stderr, res.stdout + res.stderr
    finally:
        _rmi(docker_cli, tag, base)
