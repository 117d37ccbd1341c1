"""conmon as the monitor of every container process and of every exec process.

`create`: conmon runs `<runtime> create`, then stays as the container's parent: it holds
stdio, writes the log (k8s-file format), serves the attach socket and records the exit
code in `<exit_dir>/<id>`. `exec`: one more conmon per exec process, which runs
`<runtime> exec --detach` and then does the same for that process, without a log. Both
outlive the daemon, which is what makes live-restore possible, for execs too.

Files conmon keeps in the bundle directory::

    <bundle>/attach      SOCK_SEQPACKET; output messages are 1 stream byte + data
                         (2 stdout, 3 stderr); what a client writes goes to stdin;
                         shutdown(SHUT_WR) closes stdin unless --leave-stdin-open
    <bundle>/ctl         fifo; "1 <height> <width>\n" resizes the terminal
    <bundle>/winsz       fifo; conmon's own, between ctl and the terminal
    <bundle>/conmon.pid  conmon's own pid
    <bundle>/oom         appears when the kernel OOM-killed the container

An exec's directory (`-b`, `--exit-dir`, `--persist-dir` and `--socket-dir-path` all
point at it, so one removal cleans up after it)::

    <exec dir>/process.json     the OCI process spec (the caller writes it)
    <exec dir>/attach, ctl,     as in a bundle, for the exec process
              winsz, conmon.pid
    <exec dir>/pid              the exec process's pid (`runtime exec --pid-file`)
    <exec dir>/<container id>   its exit code (--exit-dir), written before conmon exits
    <exec dir>/exit             the same code (--persist-dir)
    <exec dir>/<exec dir name>  conmon's symlink back to the directory (--socket-dir-path;
                                conmon would leave it behind in a shared directory)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from dockyard.errdefs import Internal
from dockyard.runtime.oci import OCIRuntime, runtime_error_text

log = logging.getLogger(__name__)

ATTACH_STDOUT, ATTACH_STDERR = 2, 3


class MonitorFailed(Internal):
    pass


class ExecFailed(MonitorFailed):
    """The runtime could not start an exec process (missing command, not executable...);
    the message is the runtime's."""


@dataclass(frozen=True)
class Started:
    pid: int  # the container's init process
    conmon_pid: int


@dataclass(frozen=True)
class Restore:
    """What `Conmon.create` needs to restore a checkpoint instead of creating afresh."""

    images: Path  # CRIU's image directory (runc's --image-path)
    criu: str  # the criu binary runc must use
    runtime_opts: tuple[str, ...] = ()  # extra `runc restore` options (e.g. --empty-ns network)
    # the dump left the network namespace out (external): restore into one the daemon
    # pins and plugs first, so restored TCP sockets find their address and routes
    pinned_netns: bool = False


class Conmon:
    def __init__(self, binary: str, exit_dir: Path, socket_dir: Path) -> None:
        self.binary = binary
        self.exit_dir = exit_dir
        self.socket_dir = socket_dir
        exit_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def exit_file(self, cid: str) -> Path:
        return self.exit_dir / cid

    async def create(
        self,
        cid: str,
        name: str,
        bundle: Path,
        log_path: Path,
        runtime: OCIRuntime,
        *,
        terminal: bool,
        stdin: bool,
        stdin_once: bool,
        restore: Restore | None = None,
        log_driver: str = "k8s-file",
        log_size_max: int = -1,
        timeout: float = 30,
    ) -> Started:
        """Start conmon, which runs `runtime create`; return once the container exists.

        With `restore`, conmon runs `runtime restore --detach --image-path <images>
        --work-path <bundle>` instead (CRIU's restore.log lands in the bundle), handing the
        runtime new stdio pipes that runc maps onto the checkpointed process's pipes. The
        container is then already running: there is no `runtime start`. `log_driver`
        "none" keeps no log; `log_size_max` > 0 makes the log file start over when it
        would grow past that many bytes."""
        self.exit_file(cid).unlink(missing_ok=True)
        (bundle / "oom").unlink(missing_ok=True)
        argv = [
            self.binary, "--api-version", "1",
            "-c", cid, "-u", cid[:12], "-n", name,
            "-r", runtime.binary, "--runtime-arg", "--root", "--runtime-arg", str(runtime.root),
            "-b", str(bundle), "-p", str(bundle / "init.pid"),
            "-l", f"k8s-file:{log_path}" if log_driver == "k8s-file" else "none",
            "--log-size-max", str(log_size_max),
            "--exit-dir", str(self.exit_dir), "--socket-dir-path", str(self.socket_dir),
            "--conmon-pidfile", str(bundle / "conmon.pid"), "--no-sync-log",
        ]  # fmt: skip
        if terminal:
            argv.append("-t")
        if stdin:
            argv.append("-i")
            if not stdin_once:
                argv.append("--leave-stdin-open")
        if restore is not None:
            (bundle / "restore.log").unlink(missing_ok=True)
            argv += ["--runtime-arg", "--criu", "--runtime-arg", restore.criu, "--restore", str(restore.images)]
            for opt in restore.runtime_opts:
                argv += ["--runtime-opt", opt]
        r, w = os.pipe()
        try:
            env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "_OCI_SYNCPIPE": str(w)}
            log.debug("run %s", argv)
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(w,),
                env=env,
                cwd=bundle,  # conmon writes its "oom" marker relative to its working directory
            )
            os.close(w)
            w = -1
            async with asyncio.timeout(timeout):
                msg = await asyncio.to_thread(_read_all, r)
                err = await proc.stderr.read() if proc.stderr else b""
                await proc.wait()
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
        pid = _sync_pid(msg)
        if pid <= 0:
            detail = _sync_message(msg) or err.decode(errors="replace").strip() or "conmon failed"
            raise MonitorFailed(detail)
        conmon_pid = int((bundle / "conmon.pid").read_text().strip())
        return Started(pid, conmon_pid)

    def resize(self, bundle: Path, height: int, width: int) -> None:
        ctl = bundle / "ctl"
        try:
            fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return
        try:
            os.write(fd, f"1 {height} {width}\n".encode())
        finally:
            os.close(fd)

    def read_exit(self, cid: str) -> int | None:
        return _read_code(self.exit_file(cid))

    async def exec(
        self,
        cid: str,
        exec_dir: Path,
        runtime: OCIRuntime,
        *,
        terminal: bool,
        stdin: bool,
        before_start: Callable[[], Awaitable[None]] | None = None,
        timeout: float = 30,
    ) -> Started:
        """Start conmon in exec mode on `<exec_dir>/process.json`; return once the process runs.

        The handshake runs over three pipes. conmon blocks until a first byte arrives on
        its start pipe (podman moves it into a cgroup meanwhile), forks away from its
        launcher, makes the attach socket and ctl fifo, and says so on the attach pipe.
        Then `before_start` runs: it may size the terminal (`resize`) and connect to the
        socket, so that no output is lost. A second start byte lets conmon run
        `<runtime> exec --detach`, and the sync pipe gives the process's pid, or -1 and
        the runtime's error, which is raised as `ExecFailed`. conmon stays the process's
        parent until it ends, then writes the exit code to `<exec_dir>/<cid>`
        (`read_exec_exit`) and exits.
        """
        argv = [
            self.binary, "--api-version", "1",
            "-c", cid, "-u", exec_dir.name,
            "-r", runtime.binary, "--runtime-arg", "--root", "--runtime-arg", str(runtime.root),
            "-b", str(exec_dir), "-p", str(exec_dir / "pid"),
            # an exec's output is for its client only, never in the container's log
            "-l", "none",
            "--exit-dir", str(exec_dir), "--persist-dir", str(exec_dir), "--socket-dir-path", str(exec_dir),
            "--conmon-pidfile", str(exec_dir / "conmon.pid"),
        ]  # fmt: skip
        if terminal:
            argv.append("-t")
        if stdin:
            argv.append("-i")
        argv += ["-e", "--exec-attach", "--exec-process-spec", str(exec_dir / "process.json")]
        sync_r, sync_w = os.pipe()
        start_r, start_w = os.pipe()
        attach_r, attach_w = os.pipe()
        ours, theirs = [sync_r, start_w, attach_r], [sync_w, start_r, attach_w]
        proc: asyncio.subprocess.Process | None = None
        try:
            env = {
                "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                "_OCI_SYNCPIPE": str(sync_w),
                "_OCI_STARTPIPE": str(start_r),
                "_OCI_ATTACHPIPE": str(attach_w),
            }
            log.debug("run %s", argv)
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=tuple(theirs),
                env=env,
                cwd=exec_dir,
            )
            for fd in theirs:
                os.close(fd)
            theirs = []
            async with asyncio.timeout(timeout):
                _send_start(start_w)
                ready = await _read_message(attach_r)
                if _sync_pid(ready) < 0:
                    await proc.wait()
                    raise MonitorFailed(_sync_message(ready) or await _stderr(proc) or "conmon failed")
                if before_start is not None:
                    await before_start()
                _send_start(start_w)
                msg = await _read_message(sync_r)
                await proc.wait()
        except BaseException as err:
            if proc is not None:
                await _abort(proc, exec_dir)
            if isinstance(err, TimeoutError):
                raise MonitorFailed(f"conmon did not start the exec process within {timeout}s") from err
            raise
        finally:
            for fd in ours + theirs:
                os.close(fd)
        pid = _sync_pid(msg)
        if pid <= 0:
            if text := _sync_message(msg):
                raise ExecFailed(text)
            raise MonitorFailed(await _stderr(proc) or "conmon exited without starting the exec process")
        return Started(pid, int((exec_dir / "conmon.pid").read_text().strip()))

    def read_exec_exit(self, exec_dir: Path, cid: str) -> int | None:
        """The exit code of an exec process, once its conmon has written it."""
        return _read_code(exec_dir / cid)

    def monitors(self, pid: int, directory: Path) -> bool:
        """Whether `pid` is a live conmon started on `directory` (and not a process that
        reused the pid of one that is gone)."""
        return _monitors(pid, directory)


def _monitors(pid: int, directory: Path) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False  # gone; a zombie's cmdline is empty, so it is gone too
    return str(directory).encode() in argv


def _read_code(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or "0")
    except (FileNotFoundError, ValueError):
        return None


async def _read_message(fd: int) -> bytes:
    """The first JSON message on a conmon pipe, read without blocking the loop; b"" when
    conmon closed the pipe without one. A quick exec process's exit code may already
    follow its pid in the pipe: only the first message counts."""
    os.set_blocking(fd, False)
    loop = asyncio.get_running_loop()
    decoder = json.JSONDecoder()
    buf = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, _wake, ready)
            try:
                await ready
            finally:
                loop.remove_reader(fd)
            continue
        if not chunk:
            return buf
        buf += chunk
        text = buf.decode(errors="replace").lstrip()
        try:
            _, end = decoder.raw_decode(text)
        except ValueError:
            continue
        return text[:end].encode()


def _send_start(fd: int) -> None:
    try:
        os.write(fd, b"0")
    except BrokenPipeError:
        pass  # conmon is gone: its pipes' end-of-file and its stderr tell why


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():  # the reader may fire again before its waiter runs
        fut.set_result(None)


async def _stderr(proc: asyncio.subprocess.Process) -> str:
    if proc.stderr is None:
        return ""
    try:
        async with asyncio.timeout(1):
            return (await proc.stderr.read()).decode(errors="replace").strip()
    except TimeoutError:
        return ""


async def _abort(proc: asyncio.subprocess.Process, exec_dir: Path) -> None:
    """Stop an exec whose start went wrong. Closing the start pipe is no stop: conmon takes
    end-of-file as the go-ahead, so it is killed (its runtime child has SIGKILL as its
    parent-death signal)."""
    try:
        async with asyncio.timeout(5):
            await proc.wait()  # the launcher writes conmon.pid before it exits
    except TimeoutError:
        proc.kill()
    try:
        pid = int((exec_dir / "conmon.pid").read_text().strip())
    except (OSError, ValueError):
        return
    if _monitors(pid, exec_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _read_all(fd: int) -> bytes:
    """conmon writes {"data": pid} (or {"data": -1, "message": ...}) and closes the pipe."""
    chunks = []
    while True:
        b = os.read(fd, 65536)
        if not b:
            break
        chunks.append(b)
        try:
            json.loads(b"".join(chunks))
            break
        except ValueError:
            continue
    return b"".join(chunks)


def _sync_pid(msg: bytes) -> int:
    try:
        return int(json.loads(msg).get("data", -1))
    except (ValueError, AttributeError):
        return -1


def _sync_message(msg: bytes) -> str:
    try:
        text = str(json.loads(msg).get("message", "")).strip()
    except (ValueError, AttributeError):
        return ""
    return runtime_error_text(text)

