"""attach, exec and interactive terminals through real clients.

Hijacked attach (stdin half-close, stdout/stderr split, TTY and not), detach keys, resize
through conmon's ctl fifo, exec options and exit codes, and `run -it` / `exec -it` /
`attach` driven through a pseudo-terminal the way a user's terminal drives them.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.conftest import Daemon, Runner, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlayfs, runc)")

DOCKYARD = str(Path(sys.executable).parent / "dockyard")


@pytest.fixture
def made(docker_cli: Runner) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for n in reversed(names):
        docker_cli("rm", "-f", n, check=False)



class Terminal:
    """A command on the slave side of a pty, as if typed at a user's terminal."""

    def __init__(self, argv: list[str], host: str, rows: int = 30, cols: int = 100) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child
            os.environ["DOCKER_HOST"] = host
            try:
                os.execvp(argv[0], argv)
            finally:
                os._exit(127)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.out = b""
        self.code: int | None = None

    def expect(self, text: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.out:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"{text!r} not seen; got {self.out!r}")

    def _read(self, timeout: float) -> bool:
        r, _, _ = select.select([self.fd], [], [], min(timeout, 0.2))
        if not r:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            return False
        self.out += data
        return bool(data)

    def resize(self, rows: int, cols: int) -> None:
        """Like a user resizing the window: the kernel sends SIGWINCH to the foreground job."""
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def send(self, data: str | bytes) -> None:
        os.write(self.fd, data.encode() if isinstance(data, str) else data)

    def wait(self, timeout: float = 15) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                while self._read(0.05) and time.monotonic() < deadline:
                    pass
                os.close(self.fd)
                self.code = os.waitstatus_to_exitcode(status)
                return self.code
            self._read(0.05)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        raise AssertionError(f"terminal command did not exit; output {self.out!r}")


# -- attach -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cli", ["docker", "dockyard"])
def test_run_i_stdin_half_close(cli: str, docker_cli: Runner, dockyard_cli: Runner, busybox: str):
    run = docker_cli if cli == "docker" else dockyard_cli
    r = run("run", "-i", "--rm", busybox, "cat", input="hi\n")
    assert r.stdout == "hi\n" and r.returncode == 0
    big = "".join(f"line {i:06d}\n" for i in range(20000))  # 240 kB through attach, in and out
    r = run("run", "-i", "--rm", busybox, "sh", "-c", "cat; echo done >&2; exit 3", input=big, check=False)
    assert r.returncode == 3 and r.stdout == big and r.stderr == "done\n"


def test_attach_non_tty_split_streams(docker_cli: Runner, busybox: str, unique, made):
    name = unique("att")
    made.append(name)
    docker_cli("run", "-d", "-i", "--name", name, busybox, "sh", "-c", "read l; echo got:$l; echo err:$l >&2")
    r = docker_cli("attach", name, input="hello\n")
    assert r.stdout == "got:hello\n" and r.stderr == "err:hello\n"
    # start -ai on a created container: attach before start sees everything
    n2 = unique("startai")
    made.append(n2)
    docker_cli("create", "-i", "--name", n2, busybox, "sh", "-c", "echo first; cat; exit 4")
    r = docker_cli("start", "-ai", n2, input="piped\n", check=False)
    assert r.returncode == 4 and r.stdout == "first\npiped\n"


def test_attach_docker_py_socket(docker_py: docker.DockerClient, busybox: str, unique, made):
    name = unique("pyatt")
    made.append(name)
    c = docker_py.containers.create(busybox, ["sh", "-c", "echo out; echo err >&2"], name=name)
    stream = c.attach(stdout=True, stderr=True, stream=True, logs=True, demux=True)
    c.start()
    got_out, got_err = b"", b""
    for out, err in stream:
        got_out += out or b""
        got_err += err or b""
    assert (got_out, got_err) == (b"out\n", b"err\n")
    assert c.wait(timeout=10)["StatusCode"] == 0
    # logs=True replays what was written before the attach
    assert c.attach(stdout=True, stderr=True, logs=True, stream=False) == b"out\nerr\n"


def test_tty_attach_detach_keys_and_resize(
    daemon: Daemon, docker_cli: Runner, docker_py: docker.DockerClient, busybox: str, unique, made
):
    name = unique("tty")
    made.append(name)
    docker_cli("run", "-dit", "--name", name, busybox, "sh")
    t = Terminal(["docker", "attach", name], daemon.host, rows=31, cols=91)
    t.send("\n")
    t.send("echo hi-$((20+22)); stty size\n")
    t.expect("hi-42")
    t.expect("31 91")  # attach resized the container's terminal to ours
    t.send(b"\x10\x11")  # ctrl-p ctrl-q
    assert t.wait() == 1  # docker attach reports the detach as an error; run -it does not
    assert b"read escape sequence" in t.out
    assert docker_py.api.inspect_container(name)["State"]["Running"]
    # custom detach keys, and resize through the API (conmon's ctl fifo)
    docker_py.api.resize(name, height=17, width=55)
    r = docker_py.api.exec_create(name, ["sh", "-c", "stty size < /proc/1/fd/0"])
    assert docker_py.api.exec_start(r["Id"]).decode().strip() == "17 55"
    t = Terminal(["docker", "attach", "--detach-keys", "ctrl-x,x", name], daemon.host)
    t.send("\necho again\n")
    t.expect("again")
    t.send(b"\x18x")
    assert t.wait() == 1
    assert docker_py.api.inspect_container(name)["State"]["Running"]
    # and when the shell exits, attach ends with its code
    t = Terminal(["docker", "attach", name], daemon.host)
    t.send("\nexit 6\n")
    assert t.wait() == 6
    assert docker_py.api.inspect_container(name)["State"]["ExitCode"] == 6


@pytest.mark.parametrize("cli", ["docker", DOCKYARD])
def test_run_it_through_a_terminal(cli: str, daemon: Daemon, busybox: str):
    t = Terminal(
        [cli, "-H", daemon.host, "run", "-it", "--rm", busybox, "sh"]
        if cli == DOCKYARD
        else [cli, "run", "-it", "--rm", busybox, "sh"],
        daemon.host,
        rows=24,
        cols=80,
    )
    t.expect("# ")
    t.send("echo typed-$((6*7)); stty size\n")
    t.expect("typed-42")
    t.expect("24 80")
    t.resize(50, 132)
    deadline = time.monotonic() + 10
    while b"50 132" not in t.out and time.monotonic() < deadline:  # SIGWINCH -> resize -> ctl fifo
        t.send("stty size\n")
        time.sleep(0.2)
        t._read(0.2)
    t.expect("50 132", timeout=1)
    t.send("exit 3\n")
    assert t.wait() == 3


@pytest.mark.parametrize("cli", ["docker", DOCKYARD])
def test_run_it_detach_leaves_it_running(
    cli: str, daemon: Daemon, docker_py: docker.DockerClient, busybox: str, unique, made
):
    name = unique("runit")
    made.append(name)
    argv = [cli, "-H", daemon.host] if cli == DOCKYARD else [cli]
    t = Terminal([*argv, "run", "-it", "--name", name, busybox, "sh"], daemon.host)
    t.expect("# ")
    t.send(b"\x10\x11")
    assert t.wait() == 0
    assert docker_py.api.inspect_container(name)["State"]["Running"]


# -- exec -------------------------------------------------------------------------------------


@pytest.mark.parametrize("cli", ["docker", DOCKYARD])
def test_exec_it_through_a_terminal(cli: str, daemon: Daemon, docker_cli: Runner, busybox: str, unique, made):
    name = unique("exit")
    made.append(name)
    docker_cli("run", "-d", "--name", name, busybox, "sleep", "1000")
    argv = [cli, "-H", daemon.host] if cli == DOCKYARD else [cli]
    t = Terminal([*argv, "exec", "-it", name, "sh"], daemon.host, rows=40, cols=120)
    t.expect("# ")
    t.send("echo in-exec-$((2*21)); stty size; tty\n")
    t.expect("in-exec-42")
    t.expect("40 120")
    t.expect("/dev/pts/")
    t.resize(45, 150)
    deadline = time.monotonic() + 10
    while b"45 150" not in t.out and time.monotonic() < deadline:  # exec resize: our pty + SIGWINCH to runc
        t.send("stty size\n")
        time.sleep(0.2)
        t._read(0.2)
    t.expect("45 150", timeout=1)
    t.send("exit 5\n")
    assert t.wait() == 5


def test_exec_detach_keys_leave_it_running(docker_py: docker.DockerClient, busybox: str, unique, made):
    """The daemon's detach keys end the client's stream only, as under Docker: the process
    keeps its terminal under its conmon, and its end is still recorded."""
    name = unique("exdet")
    made.append(name)
    docker_py.containers.run(busybox, ["sleep", "1000"], name=name, detach=True)
    api = docker_py.api
    started = time.time() - 1
    eid = api.exec_create(name, ["sh"], stdin=True, tty=True)["Id"]
    sock = api.exec_start(eid, socket=True, tty=True)
    raw = getattr(sock, "_sock", sock)
    raw.settimeout(10)
    raw.sendall(b"echo marker-$((3*3))\n")
    out = b""
    while b"marker-9" not in out:
        chunk = raw.recv(4096)
        assert chunk, out
        out += chunk
    raw.sendall(b"\x10\x11")  # ctrl-p ctrl-q
    while raw.recv(4096):  # the daemon ends the stream
        pass
    sock.close()

    def actions() -> list[str]:
        events = api.events(since=started, until=time.time(), decode=True,
                            filters={"container": name, "type": "container"})  # fmt: skip
        ours = [e for e in events if e.get("Actor", {}).get("Attributes", {}).get("execID") == eid]
        return [e["Action"].split(":")[0] for e in ours]

    # the detach is over once the daemon has published it; the process must outlive it
    wait_for(lambda: "exec_detach" in actions(), what="the exec_detach event")
    info = api.exec_inspect(eid)
    assert info["Running"] and info["Pid"]
    os.kill(info["Pid"], signal.SIGKILL)
    wait_for(lambda: not api.exec_inspect(eid)["Running"], what="the exec to end")
    assert api.exec_inspect(eid)["ExitCode"] == 137
    got = wait_for(lambda: (a := actions()) and a[-1] == "exec_die" and a, what="the exec_die event")
    assert got == ["exec_create", "exec_start", "exec_detach", "exec_die"], got


def test_exec_options_and_inspect(
    docker_cli: Runner, docker_py: docker.DockerClient, busybox: str, unique, made, dockyard_cli: Runner
):
    name = unique("exec")
    made.append(name)
    docker_cli("run", "-d", "--name", name, "-e", "BASE=1", busybox, "sleep", "1000")
    out = docker_cli(
        "exec", "-e", "X=y", "-u", "nobody", "-w", "/tmp", name, "sh", "-c", "echo $X $BASE; id -u; pwd"
    ).stdout
    assert out.split() == ["y", "1", "65534", "/tmp"]
    assert dockyard_cli(
        "exec", "-e", "X=z", "-w", "/etc", name, "sh", "-c", "echo $X; pwd"
    ).stdout.split() == ["z", "/etc"]
    r = docker_cli("exec", "-i", name, "sh", "-c", "cat; echo e >&2; exit 4", input="in\n", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (4, "in\n", "e\n")
    priv = docker_cli("exec", "--privileged", name, "sh", "-c", "grep CapEff /proc/self/status").stdout
    plain = docker_cli("exec", name, "sh", "-c", "grep CapEff /proc/self/status").stdout
    assert int(priv.split()[1], 16) & (1 << 21) and not int(plain.split()[1], 16) & (1 << 21)  # CAP_SYS_ADMIN
    docker_cli("exec", "-d", name, "sh", "-c", "echo detached > /tmp/d; sleep 0.2")
    wait_for(
        lambda: docker_cli("exec", name, "cat", "/tmp/d", check=False).stdout == "detached\n",
        what="detached exec",
    )
    api = docker_py.api
    eid = api.exec_create(name, ["sh", "-c", "exit 7"])["Id"]
    before = api.exec_inspect(eid)
    assert before["Running"] is False and before["ExitCode"] is None
    api.exec_start(eid)
    info = api.exec_inspect(eid)
    assert (
        info["ExitCode"] == 7
        and info["Running"] is False
        and info["ContainerID"] == api.inspect_container(name)["Id"]
    )
    assert eid in api.inspect_container(name)["ExecIDs"]
    missing = docker_cli("exec", name, "/no/such", check=False)
    assert missing.returncode in (126, 127)
    stopped = unique("stopped")
    made.append(stopped)
    docker_cli("create", "--name", stopped, busybox, "true")
    r = docker_cli("exec", stopped, "true", check=False)
    assert r.returncode != 0 and "is not running" in r.stderr
    with pytest.raises(docker.errors.NotFound):
        api.exec_inspect("nosuchexec")
    assert json.loads(docker_cli("inspect", name).stdout)[0]["State"]["Running"]


def test_exec_tty_docker_py(docker_py: docker.DockerClient, busybox: str, unique, made):
    name = unique("pyexec")
    made.append(name)
    c = docker_py.containers.run(busybox, ["sleep", "1000"], name=name, detach=True)
    code, out = c.exec_run(["sh", "-c", "tty; echo x >&2"], tty=True)
    assert (
        (code == 0 and out.replace(b"\r", b"").split(b"\n")[:2] == [b"/dev/pts/0", b"x"]) or b"/dev/pts/" in out
    )
    code, (o, e) = c.exec_run(["sh", "-c", "echo o; echo e >&2; exit 2"], demux=True)
    assert (code, o, e) == (2, b"o\n", b"e\n")


def test_exec_client_gone_ends_a_writer(docker_py: docker.DockerClient, busybox: str, unique, made):
    """A client that disconnects mid-stream must not leave the process blocked on a full pipe."""
    name = unique("gone")
    made.append(name)
    c = docker_py.containers.run(busybox, ["sleep", "1000"], name=name, detach=True)
    api = docker_py.api
    eid = api.exec_create(c.id, ["sh", "-c", "while true; do echo xxxxxxxxxxxxxxxxxxxxxxxx; done"])["Id"]
    sock = api.exec_start(eid, socket=True)
    raw = getattr(sock, "_sock", sock)
    assert raw.recv(4096)
    raw.close()
    sock.close()
    wait_for(lambda: not api.exec_inspect(eid)["Running"], timeout=15, what="the exec to end")
    assert api.exec_inspect(eid)["ExitCode"] in (141, 1, 2, 129)  # SIGPIPE, or the shell's write error
