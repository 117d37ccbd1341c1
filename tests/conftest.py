"""Shared fixtures: a real dockyardd on a temporary socket and data root, and its clients.

The daemon runs once per test session. Tests drive it through the real docker CLI,
docker-py and the dockyard CLI; each test removes what it made.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@dataclass
class Daemon:
    root: Path
    socket: Path
    proc: subprocess.Popen[bytes]
    log: Path
    extra_args: tuple[str, ...] = ()

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def data_root(self) -> Path:
        return self.root / "data"

    @property
    def exec_root(self) -> Path:
        return self.root / "run"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def start(self) -> None:
        """(Re)start the daemon process on the same roots and socket."""
        self.proc = _spawn(self.root, self.socket, self.log, self.extra_args)
        _wait_for_socket(self)


def _spawn(root: Path, sock: Path, log: Path, extra: tuple[str, ...]) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable, "-m", "dockyard.daemon.main",
        "-H", f"unix://{sock}",
        "--data-root", str(root / "data"),
        "--exec-root", str(root / "run"),
        "--config-file", str(root / "daemon.json"),
        "--log-level", "debug",
        *extra,
    ]  # fmt: skip
    out = open(log, "ab")  # noqa: SIM115 - the daemon writes it; the parent's copy closes with it
    return subprocess.Popen(argv, stdout=out, stderr=out, cwd=REPO)


def _wait_for_socket(d: Daemon, timeout: float = 20) -> None:
    client = docker.APIClient(base_url=d.host, version="1.47", timeout=5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if d.proc.poll() is not None:
            raise RuntimeError(f"dockyardd exited early:\n{d.log.read_text()[-4000:]}")
        try:
            client.ping()
            return
        except (OSError, docker.errors.DockerException):  # not listening yet
            time.sleep(0.05)
    raise RuntimeError(f"dockyardd did not answer:\n{d.log.read_text()[-4000:]}")


LOOPBACK_REGISTRIES = ["127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]:*"]


def write_daemon_json(root: Path, settings: dict[str, object]) -> None:
    """daemon.json of a test daemon: its own default bridge (15-char limit) so daemons run
    side by side, and registries on loopback only, so no test can reach Docker Hub."""
    import json

    base: dict[str, object] = {
        "bridge": "dy" + root.name.replace("dy-", "")[:8].replace("_", "x"),
        "allowed-registries": LOOPBACK_REGISTRIES,
    }
    (root / "daemon.json").write_text(json.dumps({**base, **settings}))


def make_daemon(extra: tuple[str, ...] = ()) -> Daemon:
    root = Path(tempfile.mkdtemp(prefix="dy-", dir="/tmp"))
    write_daemon_json(root, {})
    sock = root / "d.sock"
    log = root / "daemon.log"
    d = Daemon(root, sock, _spawn(root, sock, log, extra), log, extra)
    _wait_for_socket(d)
    return d


def _remove_network_leftovers(d: Daemon) -> None:
    """A daemon killed (or stopped with containers running) keeps its bridges, veths and nft
    table for the containers it left; the test session must not leave them on the host."""
    import hashlib
    import json

    # the table is named after the daemon's data root; a remapped daemon's (--userns-remap)
    # after its `<uid>.<gid>` subtree: clean up after both
    roots = [d.data_root, *(p for p in _glob_dirs(d.data_root) if re.fullmatch(r"\d+\.\d+", p.name))]
    tables = ["dockyard-" + hashlib.sha256(str(r).encode()).hexdigest()[:8] for r in roots]
    for table in tables:
        for family in ("ip", "bridge"):
            subprocess.run(["nft", "delete", "table", family, table], capture_output=True, check=False)
    try:
        bridge = json.loads((d.root / "daemon.json").read_text()).get("bridge")
    except (OSError, ValueError):
        bridge = None
    if bridge:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
    # user-defined bridges and host-side veths carry the table name as their interface alias
    tagged = [p.parent.name for p in Path("/sys/class/net").glob("*/ifalias") if _read(p) in tables]
    for dev in sorted(tagged, key=lambda n: not n.startswith("veth")):  # veths before bridges
        subprocess.run(["ip", "link", "del", dev], capture_output=True, check=False)
    # accept rules in iptables' FORWARD chain (only when that chain exists), tagged the same way
    if subprocess.run(["nft", "list", "chain", "ip", "filter", "FORWARD"], capture_output=True, check=False).returncode == 0:
        out = subprocess.run(["iptables", "-w", "-S", "FORWARD"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("-A FORWARD ") and any(f"--comment {t} " in line for t in tables):
                subprocess.run(["iptables", "-w", "-D", *line.split()[1:]], capture_output=True, check=False)


def _glob_dirs(root: Path) -> list[Path]:
    try:
        return [p for p in root.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


def _read(p: Path) -> str:
    try:
        return p.read_text().strip()
    except OSError:
        return ""


def _remove_leftover_containers(d: Daemon) -> None:
    """A daemon that was dead at the end (killed by its test) cannot remove its containers:
    their processes and conmons would outlive the test. runc's own state under the exec
    root names them; `delete --force` kills each, and its conmon then exits by itself."""
    for runtime_root in sorted((d.exec_root / "runtime").glob("*")) if (d.exec_root / "runtime").is_dir() else []:
        for state in sorted(runtime_root.iterdir()) if runtime_root.is_dir() else []:
            subprocess.run(["runc", "--root", str(runtime_root), "delete", "--force", state.name],
                           capture_output=True, check=False, timeout=30)  # fmt: skip


def destroy_daemon(d: Daemon) -> None:
    """Remove every container, stop the daemon, and leave no mount or file behind."""
    if d.proc.poll() is None:
        try:
            client = docker.APIClient(base_url=d.host, version="1.47", timeout=60)
            for c in client.containers(all=True):
                client.remove_container(c["Id"], force=True)
        except (OSError, docker.errors.DockerException):  # a daemon that no longer answers is stopped below
            pass
        d.stop()
    _remove_leftover_containers(d)
    _remove_network_leftovers(d)
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if str(d.root) in line.split()[4]]
    for m in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", m], check=False)
    shutil.rmtree(d.root, ignore_errors=True)


@pytest.fixture(scope="session")
def daemon() -> Iterator[Daemon]:
    d = make_daemon()
    yield d
    destroy_daemon(d)


@pytest.fixture
def own_daemon() -> Iterator[Daemon]:
    """A daemon of the test's own (for tests that kill or restart it), with busybox; at the
    end its log must hold no traceback."""
    d = make_daemon()
    import_busybox(d.host)
    yield d
    if d.proc.poll() is not None:
        d.start()
    log = d.log.read_text(errors="replace")
    destroy_daemon(d)
    assert "Traceback" not in log, log[-3000:]


def import_busybox(host: str, ref: str = "busybox:latest") -> None:
    """The same image `make run` makes: scripts/busybox-rootfs.sh, then `docker import`."""
    tar = subprocess.run([str(REPO / "scripts" / "busybox-rootfs.sh")], capture_output=True, check=True).stdout
    subprocess.run(
        ["docker", "import", "-c", 'CMD ["sh"]', "-", ref],
        input=tar, capture_output=True, check=True, env={**os.environ, "DOCKER_HOST": host},
    )  # fmt: skip


@pytest.fixture(scope="session")
def busybox(daemon: Daemon) -> str:
    import_busybox(daemon.host)
    return "busybox:latest"


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def _runner(argv0: list[str], host: str) -> Runner:
    def run(*args: str, input: str | None = None, check: bool = True, timeout: float = 60):
        env = {**os.environ, "DOCKER_HOST": host, "DOCKER_BUILDKIT": "0"}
        res = subprocess.run(
            [*argv0, *args], input=input, capture_output=True, text=True, timeout=timeout, env=env
        )
        if check and res.returncode != 0:
            raise AssertionError(f"{argv0} {args} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res

    return run


@pytest.fixture(scope="session")
def docker_cli(daemon: Daemon) -> Runner:
    """The real docker CLI pointed at our daemon."""
    return _runner(["docker"], daemon.host)


@pytest.fixture(scope="session")
def dockyard_cli(daemon: Daemon) -> Runner:
    """Our own CLI pointed at our daemon."""
    return _runner([str(BIN / "dockyard"), "-H", daemon.host], daemon.host)


@pytest.fixture(scope="session")
def docker_py(daemon: Daemon) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=daemon.host, version="auto", timeout=60)
    yield client
    client.close()


def wait_for(pred: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    """Polls pred until it returns something true (and returns that), or fails the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def unique() -> Callable[[str], str]:
    """unique("web") -> "web-<random>": names that never collide between tests."""
    import secrets

    return lambda prefix: f"{prefix}-{secrets.token_hex(4)}"


# -- host tools: preconditions, checked once per run, never reasons to skip -------------

# What the Makefile's `apt` target installs (tool -> path, Debian package). A machine
# without one of them is broken, so a test that needs one fails with the fix in the
# message instead of skipping and passing the run.
HOST_TOOLS: dict[str, tuple[str, str]] = {
    "dockerd": ("/usr/sbin/dockerd", "docker.io"),
    "docker-registry": ("/usr/bin/docker-registry", "docker-registry"),
    "skopeo": ("/usr/bin/skopeo", "skopeo"),
    "git-http-backend": ("/usr/lib/git-core/git-http-backend", "git"),
}


@pytest.fixture(scope="session")
def host_tools() -> dict[str, str]:
    """Every tool of HOST_TOOLS, by name; fails (once, cached for the session) when one is
    missing or not executable."""
    missing = [f"{path} ({pkg})" for path, pkg in HOST_TOOLS.values() if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(f"broken test machine: {', '.join(missing)} missing; run `make deps`", pytrace=False)
    return {name: path for name, (path, _) in HOST_TOOLS.items()}


# -- Debian's real dockerd, for interop and comparison tests ---------------------------

DOCKERD = HOST_TOOLS["dockerd"][0]


class RealDocker:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.pidfile = root / "docker.pid"
        self.host = f"unix://{self.socket}"

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKER_HOST": self.host}
        res = subprocess.run(["docker", *args], capture_output=True, text=True, env=env, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"real docker {args} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res


@pytest.fixture(scope="session")
def real_docker(host_tools: dict[str, str]) -> Iterator[RealDocker]:
    """Debian's dockerd on its own roots, checked once to start and to run a container (the
    busybox `make run` makes): when it cannot, every interop test fails with its log."""
    # One real dockerd at a time among our test sessions: serialise on a lock file.
    lock = open("/tmp/dockyard-real-dockerd.lock", "w")  # noqa: SIM115 - held for the session, closed below
    fcntl.flock(lock, fcntl.LOCK_EX)
    root = Path(tempfile.mkdtemp(prefix="dy-real-", dir="/tmp"))
    rd = RealDocker(root)
    log = open(root / "dockerd.log", "wb")  # noqa: SIM115 - dockerd's output, closed below
    proc = subprocess.Popen(
        [
            DOCKERD,
            "--data-root", str(root / "data"),
            "--exec-root", str(root / "exec"),
            "-H", rd.host,
            "--pidfile", str(rd.pidfile),
            "--bridge", "none",
            "--iptables=false",
        ],
        stdout=log,
        stderr=log,
    )  # fmt: skip
    try:
        def answers() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"dockerd exited: {(root / 'dockerd.log').read_text()[-2000:]}", pytrace=False)
            return rd.cli("version", "--format", "{{.Server.Version}}", check=False, timeout=10).returncode == 0

        wait_for(answers, timeout=60, what="the real dockerd to answer")
        import_busybox(rd.host)
        probe = rd.cli("run", "--rm", "--network", "none", "busybox", "true", check=False)
        if probe.returncode != 0:
            pytest.fail(f"the real dockerd cannot run containers: {probe.stderr[-1000:]}", pytrace=False)
        yield rd
    finally:
        try:
            pid = int(rd.pidfile.read_text())
        except (OSError, ValueError):
            pid = proc.pid
        if proc.poll() is None:
            os.kill(pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                proc.wait()
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if line.split()[4].startswith(str(root))]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
