"""Exec: extra processes in a running container, run by `<runtime> exec` as our child.

Without a TTY the runtime hands our pipes straight to the process. With a TTY we give the
runtime a pseudo-terminal of our own as its stdio; it puts that into raw mode, proxies it
to the container's terminal and forwards SIGWINCH, so a resize is: set the size on our
pty, then signal the runtime. Exec processes are children of the daemon, so unlike
containers they end with it (Docker's do not; conmon's exec mode would fix that).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import secrets
import signal
import struct
import termios
from pathlib import Path
from typing import Any

from dockyard import errdefs
from dockyard.containers import state
from dockyard.containers.files import resolve_user
from dockyard.runtime.oci import bounding_capabilities, limit_capabilities
from dockyard.runtime.spec import ALL_CAPS

log = logging.getLogger(__name__)

STDOUT, STDERR = 1, 2


class ExecNotFound(errdefs.NotFound):
    pass


class ExecSession:
    """One running exec process: output chunks out, stdin in, exit code at the end."""

    def __init__(self, proc: asyncio.subprocess.Process, master: int | None) -> None:
        self.proc = proc
        self.master = master
        self.output: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(maxsize=64)
        self.tail = b""  # the last output, where the runtime's own error lands
        self._readers: list[asyncio.Task[None]] = []
        loop = asyncio.get_running_loop()
        if master is not None:
            self._readers.append(loop.create_task(self._pump_fd(master)))
        else:
            if proc.stdout:
                self._readers.append(loop.create_task(self._pump(proc.stdout, STDOUT)))
            if proc.stderr:
                self._readers.append(loop.create_task(self._pump(proc.stderr, STDERR)))
        self.done = loop.create_task(self._finish())

    async def _pump(self, reader: asyncio.StreamReader, stream: int) -> None:
        while chunk := await reader.read(65536):
            self.tail = (self.tail + chunk)[-4096:]
            await self.output.put((stream, chunk))

    async def _pump_fd(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        while True:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, lambda r=ready: r.done() or r.set_result(None))
            try:
                await ready
            finally:
                loop.remove_reader(fd)
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the other side of the pty is closed
                return
            if not chunk:
                return
            self.tail = (self.tail + chunk)[-4096:]
            await self.output.put((STDOUT, chunk))

    def abandon(self) -> None:
        """The client went away: stop reading the output, so the process meets a closed
        pipe (SIGPIPE) or terminal (SIGHUP) as under Docker, instead of blocking forever
        on a full one."""
        for t in self._readers:
            t.cancel()
        for fd in (1, 2):
            pipe = self.proc._transport.get_pipe_transport(fd) if self.proc._transport else None  # type: ignore[attr-defined]
            if pipe is not None:
                pipe.close()
        if self.master is not None:
            os.close(self.master)
            self.master = None
        while not self.output.empty():  # let _finish post its end marker
            self.output.get_nowait()

    async def _finish(self) -> int:
        code = await self.proc.wait()
        if self.master is not None:
            # the runtime has exited; whatever it wrote is in the pty buffer
            await asyncio.sleep(0.01)
            for t in self._readers:
                t.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        await self.output.put(None)
        if self.master is not None:
            os.close(self.master)
            self.master = None
        return code

    async def write_stdin(self, data: bytes) -> None:
        if self.master is not None:
            os.write(self.master, data)
        elif self.proc.stdin:
            self.proc.stdin.write(data)
            await self.proc.stdin.drain()

    def close_stdin(self) -> None:
        if self.master is not None:
            try:
                os.write(self.master, b"\x04")  # EOF on a terminal is ^D
            except OSError:
                pass
        elif self.proc.stdin:
            self.proc.stdin.close()

    def resize(self, height: int, width: int) -> None:
        if self.master is None:
            return
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
        try:
            self.proc.send_signal(signal.SIGWINCH)
        except ProcessLookupError:
            pass


class ExecService:
    def __init__(self, containers: Any, exec_dir: Path) -> None:
        self.containers = containers
        self.store = containers.store
        self.dir = exec_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sessions: dict[str, ExecSession] = {}
        self._forget_orphans()

    def _forget_orphans(self) -> None:
        """Exec processes are the previous daemon's children: none of them is ours to watch
        any more, so a record still saying Running would say so forever."""
        for rec in self.store.execs.all():
            if rec.get("Running"):
                rec.update(Running=False, Pid=0)
                self.store.execs.put(rec["ID"], rec, name=rec["ContainerID"])

    def get(self, eid: str) -> dict[str, Any]:
        rec = self.store.execs.get(eid)
        if rec is None:
            raise ExecNotFound(f"No such exec instance: {eid}")
        return rec

    def inspect(self, eid: str) -> dict[str, Any]:
        rec = self.get(eid)
        return {k: v for k, v in rec.items() if k != "Dockyard"}

    async def create(self, ref: str, body: dict[str, Any]) -> str:
        crec = self.containers.get(ref)
        state.check("exec", crec)
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd:
            raise errdefs.InvalidArgument("No exec command specified")
        eid = secrets.token_hex(32)
        rec = {
            "ID": eid,
            "Running": False,
            "ExitCode": None,
            "ProcessConfig": {
                "tty": bool(body.get("Tty")),
                "entrypoint": cmd[0],
                "arguments": cmd[1:],
                "privileged": bool(body.get("Privileged")),
                "user": body.get("User") or "",
            },
            "OpenStdin": bool(body.get("AttachStdin")),
            "OpenStderr": bool(body.get("AttachStderr")),
            "OpenStdout": bool(body.get("AttachStdout")),
            "CanRemove": False,
            "ContainerID": crec["Id"],
            "DetachKeys": body.get("DetachKeys") or "",
            "Pid": 0,
            "Dockyard": {
                "Env": list(body.get("Env") or []),
                "WorkingDir": body.get("WorkingDir") or "",
                "ConsoleSize": body.get("ConsoleSize"),
            },
        }
        self.store.execs.put(eid, rec, name=crec["Id"])
        async with self.containers.lock(crec["Id"]):
            crec = self.containers.get(crec["Id"])
            crec["Dockyard"].setdefault("ExecIDs", []).append(eid)
            self.containers.save(crec)
        self.containers.publish(crec, f"exec_create: {' '.join(cmd)}", execID=eid)
        return eid

    def _process_spec(self, crec: dict[str, Any], rec: dict[str, Any]) -> dict[str, Any]:
        bundle = self.containers.bundle(crec["Id"])
        base = json.loads((bundle / "config.json").read_text())["process"]
        pc = rec["ProcessConfig"]
        env = list(base.get("env") or [])
        keys = {e.split("=", 1)[0]: i for i, e in enumerate(env)}
        for e in rec["Dockyard"]["Env"]:
            k = e.split("=", 1)[0]
            if k in keys:
                env[keys[k]] = e
            else:
                env.append(e)
        if pc["tty"] and not any(e.startswith("TERM=") for e in env):
            env.append("TERM=xterm")
        proc = dict(base)
        proc.update(args=[pc["entrypoint"], *pc["arguments"]], env=env, terminal=pc["tty"])
        if rec["Dockyard"]["WorkingDir"]:
            proc["cwd"] = rec["Dockyard"]["WorkingDir"]
        if pc["user"]:
            u = resolve_user(bundle / "rootfs", pc["user"])
            proc["user"] = {
                "uid": u.uid,
                "gid": u.gid,
                **({"additionalGids": list(u.additional_gids)} if u.additional_gids else {}),
            }
        if pc["privileged"]:
            caps = limit_capabilities(list(ALL_CAPS), bounding_capabilities())
            proc["capabilities"] = {k: list(caps) for k in ("bounding", "effective", "permitted")}
        proc.pop("consoleSize", None)
        return proc

    async def start(self, eid: str, *, detach: bool) -> ExecSession:
        rec = self.get(eid)
        if rec["Running"] or rec["ExitCode"] is not None:
            raise errdefs.Conflict(f"exec {eid} has already run")
        crec = self.containers.get(rec["ContainerID"])
        state.check("exec", crec)
        spec_path = self.dir / f"{eid}.json"
        spec_path.write_text(json.dumps(self._process_spec(crec, rec)))
        runtime = self.containers.runtime(crec)
        tty = rec["ProcessConfig"]["tty"] and not detach
        pid_file = self.dir / f"{eid}.pid"
        pid_file.unlink(missing_ok=True)
        argv = runtime.argv(
            "exec",
            *(["-t"] if tty else []),
            "--pid-file",
            str(pid_file),
            "--process",
            str(spec_path),
            crec["Id"],
        )
        master: int | None = None
        try:
            if tty:
                master, slave = os.openpty()
                size = rec["Dockyard"].get("ConsoleSize")
                if size:
                    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
                )
                os.close(slave)
            else:
                pipe = asyncio.subprocess.PIPE
                devnull = asyncio.subprocess.DEVNULL
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=pipe if rec["OpenStdin"] and not detach else devnull,
                    stdout=pipe if rec["OpenStdout"] and not detach else devnull,
                    stderr=pipe if rec["OpenStderr"] and not detach else devnull,
                )
        except BaseException:
            if master is not None:
                os.close(master)
            spec_path.unlink(missing_ok=True)
            raise
        session = ExecSession(proc, master)
        self.sessions[eid] = session
        rec["Running"] = True
        rec["Pid"] = proc.pid
        self.store.execs.put(eid, rec, name=crec["Id"])
        cmd = " ".join([rec["ProcessConfig"]["entrypoint"], *rec["ProcessConfig"]["arguments"]])
        self.containers.publish(crec, f"exec_start: {cmd}", execID=eid)
        session.done.add_done_callback(lambda t: self._finished(eid, crec, t, session))
        return session

    def _finished(
        self, eid: str, crec: dict[str, Any], task: asyncio.Task[int], session: ExecSession
    ) -> None:
        self.sessions.pop(eid, None)
        if task.cancelled():
            return  # daemon shutdown: the process may still run; its record stays as it was
        (self.dir / f"{eid}.json").unlink(missing_ok=True)
        pid_file = self.dir / f"{eid}.pid"
        started = pid_file.exists()
        pid_file.unlink(missing_ok=True)
        rec = self.store.execs.get(eid)
        code = task.result() if task.exception() is None else -1
        if not started and code == 255:
            # the runtime never started the process (it writes the pid file once it has):
            # Docker's codes for a command that is missing (127) or cannot run (126)
            tail = session.tail.decode(errors="replace").lower()
            code = 127 if "no such file" in tail or "not found" in tail else 126
        if rec is not None:
            rec["Running"] = False
            rec["ExitCode"] = code
            rec["Pid"] = 0
            self.store.execs.put(eid, rec, name=crec["Id"])
        self.containers.publish(crec, "exec_die", execID=eid, exitCode=str(code))

    def resize(self, eid: str, height: int, width: int) -> None:
        self.get(eid)
        session = self.sessions.get(eid)
        if session is None:
            raise errdefs.Conflict(f"exec {eid} is not running")
        session.resize(height, width)
