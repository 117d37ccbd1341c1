"""Attacks on the host through container content, run as the attacker would: a container
process racing `docker cp`, an image whose /etc/passwd is a FIFO, an image whose VOLUME
path goes through a symlink to a host directory. Each must fail to touch the host (or to
stall the daemon) now that every such access goes through `_sys.rootdir`.

Each test removes the containers, images, volumes and host files it made.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from tests.conftest import REPO, Daemon, Runner

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlayfs, runc)")

ULIMIT = ("--ulimit", "nofile=1024:1024")  # this sandbox caps RLIMIT_NOFILE (see test_container_fs)
MARKER = "HOST-SECRET-must-never-leave-the-host"
FILES = 40


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A host directory the attacker targets, full of files named like the container's."""
    d = Path(tempfile.mkdtemp(prefix="dy-hardening-"))
    os.chmod(d, 0o755)
    for i in range(FILES):
        (d / f"f{i}").write_text(MARKER + "\n")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def removed(docker_cli: Runner) -> Iterator[Callable[[str, str], str]]:
    made: list[tuple[str, str]] = []

    def add(kind: str, name: str) -> str:
        made.append((kind, name))
        return name

    yield add
    for kind, name in reversed(made):
        if kind == "container":
            docker_cli("rm", "-f", "-v", name, check=False, timeout=60)
        elif kind == "image":
            docker_cli("rmi", "-f", name, check=False, timeout=60)
        elif kind == "volume":
            docker_cli("volume", "rm", "-f", name, check=False, timeout=60)


def _busybox_tar() -> bytes:
    return subprocess.run([str(REPO / "scripts" / "busybox-rootfs.sh")], capture_output=True, check=True).stdout


def _import(daemon: Daemon, tar: bytes, ref: str, *changes: str) -> None:
    args = [a for c in changes for a in ("-c", c)]
    subprocess.run(
        ["docker", "import", *args, "-", ref], input=tar, capture_output=True, check=True, timeout=120,
        env={**os.environ, "DOCKER_HOST": daemon.host},
    )  # fmt: skip


def _rewrite(tar: bytes, edit: Callable[[tarfile.TarInfo], tarfile.TarInfo | None], extra: list[tarfile.TarInfo]) -> bytes:
    """The busybox rootfs tar with members replaced (edit returns None to keep one) and added."""
    src = tarfile.open(fileobj=io.BytesIO(tar))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        for m in src:
            new = edit(m)
            if new is not None:
                tf.addfile(new)
            else:
                tf.addfile(m, src.extractfile(m) if m.isreg() else None)
        for m in extra:
            tf.addfile(m)
    return out.getvalue()


# ---- 1. docker cp against a container racing a symlink swap (CVE-2018-15664 class) -------


def _racer(docker_cli: Runner, removed: Callable[[str, str], str], unique: Callable[[str], str],
           busybox: str, host: Path) -> str:  # fmt: skip
    name = removed("container", unique("racer"))
    script = (
        f"mkdir -p /d; for i in $(seq 0 {FILES - 1}); do head -c 16384 /dev/zero > /d/f$i; done; "
        # the link stays a little longer (cat forks) so a copy in flight meets it
        f"while :; do mv /d /d.x; ln -s {host} /d; cat /dev/null; rm /d; mv /d.x /d; done"
    )
    docker_cli("run", "-d", *ULIMIT, "--name", name, busybox, "sh", "-c", script)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the swap loop runs once /d.x comes and goes
        if docker_cli("exec", name, "sh", "-c", f"[ -e /d/f{FILES - 1} ] || [ -e /d.x/f{FILES - 1} ]",
                      check=False).returncode == 0:  # fmt: skip
            break
        time.sleep(0.1)
    return name


def test_cp_out_of_racing_container_never_reads_the_host(
    daemon: Daemon, docker_cli: Runner, busybox: str, unique: Callable[[str], str],
    removed: Callable[[str, str], str], host_dir: Path,
) -> None:  # fmt: skip
    ctr = _racer(docker_cli, removed, unique, busybox, host_dir)
    env = {**os.environ, "DOCKER_HOST": daemon.host}
    got_something = 0
    for _ in range(40):
        for path in ("/d", "/d/.", "/d/f7"):
            res = subprocess.run(["docker", "cp", f"{ctr}:{path}", "-"], capture_output=True, timeout=60, env=env)
            assert MARKER.encode() not in res.stdout, f"host file content came out of {ctr}:{path}"
            got_something += res.returncode == 0
    assert got_something, "no copy succeeded at all: the race test tested nothing"


def test_cp_into_racing_container_never_writes_the_host(
    docker_cli: Runner, busybox: str, unique: Callable[[str], str], removed: Callable[[str, str], str], host_dir: Path
) -> None:
    ctr = _racer(docker_cli, removed, unique, busybox, host_dir)
    before = {p.name: p.read_text() for p in host_dir.iterdir()}
    with tempfile.TemporaryDirectory(prefix="dy-hardening-src-") as src:
        for i in range(FILES):
            Path(src, f"p{i}").write_text("planted\n")
            Path(src, f"f{i}").write_text("overwritten\n")
        ok = 0
        for _ in range(30):
            res = docker_cli("cp", f"{src}/.", f"{ctr}:/d/", check=False)
            ok += res.returncode == 0
            after = {p.name: p.read_text() for p in host_dir.iterdir()}
            assert after == before, "docker cp wrote into the host directory"
    assert ok, "no copy succeeded at all: the race test tested nothing"


# ---- 2. an image whose /etc/passwd is a FIFO ----------------------------------------------


class _Pinger:
    """Pings the daemon every 0.2 s from a thread; remembers the slowest answer and failures."""

    def __init__(self, host: str) -> None:
        self._api = docker.APIClient(base_url=host, version="1.47", timeout=5)
        self._stop = threading.Event()
        self.slowest = 0.0
        self.failures: list[str] = []
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self._api.ping()
            except Exception as err:  # noqa: BLE001 - any failure is the finding
                self.failures.append(repr(err))
            self.slowest = max(self.slowest, time.monotonic() - t0)
            self._stop.wait(0.2)

    def __enter__(self) -> _Pinger:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(10)


def test_fifo_passwd_image_neither_hangs_run_nor_the_daemon(
    daemon: Daemon, docker_cli: Runner, unique: Callable[[str], str], removed: Callable[[str, str], str]
) -> None:
    def fifo(m: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if m.name.lstrip("./") in ("etc/passwd", "etc/group"):
            ti = tarfile.TarInfo(m.name)
            ti.type, ti.mode = tarfile.FIFOTYPE, 0o644
            return ti
        return None

    img = removed("image", unique("fifo-passwd") + ":latest")
    _import(daemon, _rewrite(_busybox_tar(), fifo, []), img)
    with _Pinger(daemon.host) as ping:
        # runc's init opens /etc/passwd whatever the user (and would block on the FIFO for
        # good): a clear refusal, promptly, with the default user and with a name
        for user in ((), ("--user", "nobody"), ("--user", "65534:65534")):
            ctr = removed("container", unique("fifo-user"))
            res = docker_cli("run", "--name", ctr, *ULIMIT, *user, img, "true", check=False, timeout=30)
            assert res.returncode != 0
            assert "/etc/passwd is not a regular file" in res.stderr, res.stderr
            assert docker_cli("rm", "-f", ctr, timeout=30).returncode == 0
        assert docker_cli("ps", "-a", "-q", "--filter", f"ancestor={img}").stdout.strip() == ""
    assert not ping.failures, ping.failures
    assert ping.slowest < 3, f"the daemon stalled for {ping.slowest:.1f}s"


def test_fifo_passwd_planted_in_running_container_fails_exec_promptly(
    daemon: Daemon, docker_cli: Runner, busybox: str, unique: Callable[[str], str],
    removed: Callable[[str, str], str],
) -> None:  # fmt: skip
    """The container itself swaps its passwd for a FIFO, then someone runs `exec -u name`."""
    run = removed("container", unique("fifo-exec"))
    docker_cli("run", "-d", "--name", run, *ULIMIT, busybox, "sleep", "1000", timeout=30)
    docker_cli("exec", run, "sh", "-c", "rm /etc/passwd && mkfifo /etc/passwd", timeout=30)
    with _Pinger(daemon.host) as ping:
        res = docker_cli("exec", "-u", "nobody", run, "true", check=False, timeout=30)
        # (where the exec start error lands, stream or status, is the exec route's business)
        assert "/etc/passwd is not a regular file" in res.stdout + res.stderr, res
        assert docker_cli("rm", "-f", run, timeout=30).returncode == 0
    assert not ping.failures, ping.failures
    assert ping.slowest < 3, f"the daemon stalled for {ping.slowest:.1f}s"


# ---- 3. VOLUME through a symlink to a host directory ----------------------------------------


def _volume_files(docker_cli: Runner, ctr: str, dest: str) -> set[str]:
    mounts = json.loads(docker_cli("inspect", ctr).stdout)[0]["Mounts"]
    (m,) = [m for m in mounts if m["Destination"] == dest]
    return {p.name for p in Path(m["Source"]).iterdir()}


def test_volume_copy_up_stays_in_the_image(
    daemon: Daemon, docker_cli: Runner, unique: Callable[[str], str], removed: Callable[[str, str], str], host_dir: Path
) -> None:
    (host_dir / "sub").mkdir()
    (host_dir / "sub" / "stolen").write_text(MARKER)
    p = tarfile.TarInfo("./p")  # /p -> the host directory; the VOLUME is below it
    p.type, p.linkname = tarfile.SYMTYPE, str(host_dir)
    x = tarfile.TarInfo("./x")  # /x -> /etc: Docker copies the image's /etc, not the host's
    x.type, x.linkname = tarfile.SYMTYPE, "/etc"
    img = removed("image", unique("vol-link") + ":latest")
    _import(daemon, _rewrite(_busybox_tar(), lambda m: None, [p, x]), img, "VOLUME /p/sub", "VOLUME /x")
    ctr = removed("container", unique("vol-link"))
    docker_cli("run", "--name", ctr, *ULIMIT, img, "true", timeout=60)
    assert "stolen" not in _volume_files(docker_cli, ctr, "/p/sub")
    assert _volume_files(docker_cli, ctr, "/x") >= {"passwd", "group"}
    mounts = json.loads(docker_cli("inspect", ctr).stdout)[0]["Mounts"]
    (etc,) = [m for m in mounts if m["Destination"] == "/x"]
    assert "nobody:x:65534:65534:nobody:/home:/bin/false" in Path(etc["Source"], "passwd").read_text()
    assert sorted(p.name for p in host_dir.iterdir()) == sorted([*(f"f{i}" for i in range(FILES)), "sub"])
    assert [p.name for p in (host_dir / "sub").iterdir()] == ["stolen"]
