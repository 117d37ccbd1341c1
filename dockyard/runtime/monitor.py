"""conmon as the per-container monitor.

conmon runs `<runtime> create`, then stays as the container's parent: it holds stdio,
writes the log (k8s-file format), serves the attach socket and records the exit code in
`<exit_dir>/<id>`. It outlives the daemon, which is what makes live-restore possible.

Files conmon keeps in the bundle directory::

    <bundle>/attach      SOCK_SEQPACKET; output messages are 1 stream byte + data
                         (2 stdout, 3 stderr); what a client writes goes to stdin
    <bundle>/ctl         fifo; "1 <height> <width>\n" resizes the terminal
    <bundle>/conmon.pid  conmon's own pid
    <bundle>/oom         appears when the kernel OOM-killed the container
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from dockyard.errdefs import Internal
from dockyard.runtime.oci import OCIRuntime

log = logging.getLogger(__name__)

ATTACH_STDOUT, ATTACH_STDERR = 2, 3


class MonitorFailed(Internal):
    pass


@dataclass(frozen=True)
class Started:
    pid: int  # the container's init process
    conmon_pid: int


class Conmon:
    def __init__(self, binary: str, exit_dir: Path, socket_dir: Path) -> None:
        self.binary = binary
        self.exit_dir = exit_dir
        self.socket_dir = socket_dir
        exit_dir.mkdir(parents=True, exist_ok=True)
        socket_dir.mkdir(parents=True, exist_ok=True)

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
        timeout: float = 30,
    ) -> Started:
        """Start conmon, which runs `runtime create`; return once the container exists."""
        self.exit_file(cid).unlink(missing_ok=True)
        (bundle / "oom").unlink(missing_ok=True)
        argv = [
            self.binary, "--api-version", "1",
            "-c", cid, "-u", cid[:12], "-n", name,
            "-r", runtime.binary, "--runtime-arg", "--root", "--runtime-arg", str(runtime.root),
            "-b", str(bundle), "-p", str(bundle / "init.pid"),
            "-l", f"k8s-file:{log_path}", "--log-size-max", "-1",
            "--exit-dir", str(self.exit_dir), "--socket-dir-path", str(self.socket_dir),
            "--conmon-pidfile", str(bundle / "conmon.pid"), "--no-sync-log",
        ]  # fmt: skip
        if terminal:
            argv.append("-t")
        if stdin:
            argv.append("-i")
            if not stdin_once:
                argv.append("--leave-stdin-open")
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
        try:
            return int(self.exit_file(cid).read_text().strip() or "0")
        except (FileNotFoundError, ValueError):
            return None


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


_LOGRUS_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


def runtime_error_text(text: str) -> str:
    """runc logs errors logrus-style (time=... level=error msg="..."); keep the message."""
    found = _LOGRUS_MSG.findall(text)
    if not found:
        return text
    return found[-1].encode().decode("unicode_escape")
