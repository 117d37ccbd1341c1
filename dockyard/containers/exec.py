"""Exec: extra processes in a running container, each under a conmon of its own.

`ExecService` owns the exec records and their directories; conmon's side of starting one
is `runtime.monitor.Conmon.exec`. An exec process is conmon's child, not the daemon's:
conmon holds its stdio (pipes, or the terminal's master), serves an attach socket that an
attached client's `ExecSession` reads, and writes the exit code to a file when the process
ends. So exec processes outlive the daemon as containers do (Docker's belong to the
containerd shim). On start, `reconcile` watches again the conmons of records that still
say Running, and takes the exit codes of those that ended meanwhile from their files.

An exec's output goes to its attached client only, never to the container's log; with
nobody attached (detached, the client gone, or no daemon) conmon drops it. On disk::

    <exec-root>/execs/<exec id>/    from start until the exit is recorded (files: monitor.py)
        process.json                the OCI process spec for `<runtime> exec`
        <container id>              the exit code, once the process has ended
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard import errdefs
from dockyard.containers import state
from dockyard.containers.attach import STDERR, STDOUT, AttachConnection
from dockyard.containers.files import resolve_user
from dockyard.runtime.monitor import Conmon, ExecFailed
from dockyard.runtime.oci import bounding_capabilities, limit_capabilities
from dockyard.runtime.spec import ALL_CAPS

log = logging.getLogger(__name__)

# conmon died without writing an exit code: as for a container, the process is taken as killed
LOST_EXIT_CODE = 137
PROBE_OUTPUT = 4096  # bytes of a healthcheck probe's output kept (Docker's limit)


class ExecNotFound(errdefs.NotFound):
    pass


class ExecSession:
    """An exec process as its starter sees it: output chunks out, stdin in, exit code at the end.

    `ExecService.start` makes the session; conmon has it `connect` to the attach socket
    before the process runs, and `begin` pumps the output once it does. When conmon exits,
    the service records the exit and resolves `exited`; `done` then queues the end marker
    (None) after the last output and returns the exit code. A detached session has no
    connection. `detach` stops following the process, `abandon` also gives it the signal
    a closed pipe or hung-up terminal would.
    """

    def __init__(self, *, tty: bool, want: frozenset[int]) -> None:
        loop = asyncio.get_running_loop()
        self.tty = tty
        self._want = want  # the streams the client attached
        self.output: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(maxsize=64)
        self.exited: asyncio.Future[int] = loop.create_future()
        self._conn: AttachConnection | None = None
        self._pidfd = -1  # the exec process, for signals that cannot hit a reused pid
        self._pump: asyncio.Task[None] | None = None
        self._eof: asyncio.Task[None] | None = None
        self.done: asyncio.Task[int] = loop.create_task(self._finish())

    def __repr__(self) -> str:
        st = "exited" if self.exited.done() else "attached" if self._conn else "running"
        return f"<ExecSession {st}{' tty' if self.tty else ''}>"

    async def connect(self, exec_dir: Path) -> None:
        self._conn = await AttachConnection.open(exec_dir)

    def begin(self, pid: int) -> None:
        """The process runs: follow its output."""
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            pass  # already over; conmon has its exit code
        if self._conn is not None:
            self._pump = asyncio.get_running_loop().create_task(self._pump_output(self._conn))

    async def _pump_output(self, conn: AttachConnection) -> None:
        while (item := await conn.recv()) is not None:
            if item[0] in self._want:
                await self.output.put(item)

    async def _finish(self) -> int:
        try:
            code = await self.exited
            if self._pump is not None:
                # conmon is gone: whatever it sent before is in our socket buffer
                await asyncio.gather(self._pump, return_exceptions=True)
            await self.output.put(None)
            return code
        finally:
            self._release()

    async def write_stdin(self, data: bytes) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):  # the process is gone, or we let go of it
                await self._conn.send(data)

    def close_stdin(self) -> None:
        conn = self._conn
        if conn is None:
            return
        if not self.tty:
            conn.close_stdin()  # conmon closes the process's stdin pipe
            return

        async def send_eof() -> None:
            # EOF on a terminal is ^D; a shutdown would only make conmon close its own
            # copy of the terminal's master
            with contextlib.suppress(OSError):
                await conn.send(b"\x04")

        self._eof = asyncio.get_running_loop().create_task(send_eof())

    def detach(self) -> None:
        """Stop following the process (detach keys, daemon shutdown). It runs on under
        conmon, which drops its output from now on."""
        self._drop_connection()
        while not self.output.empty():
            self.output.get_nowait()
        self.output.put_nowait(None)  # wakes a reader waiting for output

    def abandon(self) -> None:
        """The client went away while output was coming. Under Docker the process's pipe
        closes and its next write kills it with SIGPIPE (a hung-up terminal sends SIGHUP);
        conmon keeps both open, so send that signal ourselves."""
        if self.exited.done():
            return
        if self._pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGHUP if self.tty else signal.SIGPIPE)
        self.detach()

    def close(self) -> None:
        """Daemon shutdown or a failed start: let go of everything, record nothing."""
        self.done.cancel()
        self._release()

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        for t in (self._pump, self._eof):
            if t is not None and not t.done():
                t.cancel()
        if conn is None:
            return
        if self._pump is not None and not self._pump.done():
            self._pump.add_done_callback(lambda _t: conn.close())  # after its recv is off the loop
        else:
            conn.close()

    def _release(self) -> None:
        self._drop_connection()
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1


@dataclass(frozen=True)
class _Watch:
    pidfd: int  # of the exec's conmon
    cid: str
    container: dict[str, Any] | None  # for the exec_die event should the container be gone by then


class ExecService:
    """Exec records (`create`, `inspect`), and exec processes under conmon.

    Flow: `create` stores the record; `start` writes the process spec, has conmon start the
    process (attached: an `ExecSession` connected first), marks the record Running and
    watches conmon through a pidfd; when conmon exits, `_exited` records the exit code
    from its file, publishes `exec_die`, removes the exec's directory and ends the session.
    `reconcile` (daemon start) and `close` (daemon stop) keep the watching going across
    daemons.
    """

    def __init__(self, containers: Any, exec_dir: Path) -> None:
        self.containers = containers
        self.store = containers.store
        self.conmon: Conmon = containers.conmon
        self.dir = exec_dir
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.sessions: dict[str, ExecSession] = {}
        self._watched: dict[str, _Watch] = {}
        self._starting: set[str] = set()
        # terminal sizes of starting execs whose ctl fifo conmon has not made yet
        self._sizes: dict[str, tuple[int, int] | None] = {}

    def __repr__(self) -> str:
        return f"<ExecService {len(self._watched)} running, {len(self.sessions)} sessions>"

    # ---- daemon start and stop -------------------------------------------------------

    async def reconcile(self) -> None:
        """Adopt the exec processes of the previous daemon: a record still Running is
        watched again while its conmon lives; otherwise it gets its exit code from
        conmon's exit file."""
        for rec in self.store.execs.all():
            if not rec.get("Running"):
                continue
            eid, cid = rec["ID"], rec["ContainerID"]
            pid = int(rec.get("Dockyard", {}).get("ConmonPid") or 0)
            crec = self.store.containers.get(cid)
            if pid and self.conmon.monitors(pid, self.dir / eid):
                self._watch(eid, cid, pid, crec)
            else:
                self._exited(eid, cid, crec)
        # directories of starts cut short with the daemon, and the flat files of old daemons
        for entry in self.dir.iterdir():
            if entry.name not in self._watched:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    async def close(self) -> None:
        """Daemon shutdown: stop watching. Exec processes and their conmons keep running,
        and their records keep saying so, for the next daemon to adopt."""
        loop = asyncio.get_running_loop()
        for w in self._watched.values():
            loop.remove_reader(w.pidfd)
            os.close(w.pidfd)
        self._watched.clear()
        for session in self.sessions.values():
            session.close()
        self.sessions.clear()

    # ---- records ---------------------------------------------------------------------------

    def get(self, eid: str) -> dict[str, Any]:
        rec = self.store.execs.get(eid)
        if rec is None:
            raise ExecNotFound(f"No such exec instance: {eid}")
        return dict(rec)

    def inspect(self, eid: str) -> dict[str, Any]:
        rec = self.get(eid)
        return {k: v for k, v in rec.items() if k != "Dockyard"}

    async def create(self, ref: str, body: dict[str, Any], *, listed: bool = True) -> str:
        """`listed=False`: a healthcheck probe's exec, left out of the container's ExecIDs."""
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
                "ConmonPid": 0,
            },
        }
        if not listed:
            rec["Dockyard"]["Probe"] = True  # its record goes when it ends, even under a later daemon
        self.store.execs.put(eid, rec, name=crec["Id"])
        if not listed:
            self.containers.publish(crec, f"exec_create: {_action_cmd(cmd)}", execID=eid)
            return eid
        async with self.containers.lock(crec["Id"]):
            crec = self.containers.get(crec["Id"])
            crec["Dockyard"].setdefault("ExecIDs", []).append(eid)
            self.containers.save(crec)
        self.containers.publish(crec, f"exec_create: {_action_cmd(cmd)}", execID=eid)
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
            u = resolve_user(bundle / "rootfs", pc["user"], crec["HostConfig"].get("GroupAdd") or ())
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

    # ---- start, exit -------------------------------------------------------------------

    def check_start(self, eid: str) -> None:
        """Raises what `start` would for an exec that may not start now (NotFound, Conflict)."""
        self._startable(eid)

    def _startable(self, eid: str) -> tuple[dict[str, Any], dict[str, Any]]:
        rec = self.get(eid)
        if rec["Running"] or rec["ExitCode"] is not None or eid in self._starting:
            raise errdefs.Conflict(f"exec {eid} has already run")
        crec = self.containers.get(rec["ContainerID"])
        state.check("exec", crec)
        return rec, crec

    async def start(
        self, eid: str, *, detach: bool, console_size: Sequence[int] | None = None
    ) -> ExecSession:
        """Start the exec process; the session's `done` gives its exit code.

        Every start that fails records an exit code, as dockerd's does (the CLI exits with
        it): a command the runtime cannot start still makes a session whose output is
        Docker's error text and whose code follows moby's `setExitCodeFromError` (126 cannot
        run, 127 missing, 128 anything else); a failure before the runtime runs (the user
        cannot be found, the image's passwd is a FIFO...) records 126 and raises. Detached,
        a runtime failure raises too (dockerd answers the start request with the error)."""
        rec, crec = self._startable(eid)
        self._starting.add(eid)
        try:
            return await self._start(rec, crec, detach, console_size)
        finally:
            self._starting.discard(eid)
            self._sizes.pop(eid, None)

    async def _start(
        self, rec: dict[str, Any], crec: dict[str, Any], detach: bool, console_size: Sequence[int] | None
    ) -> ExecSession:
        eid, cid = rec["ID"], crec["Id"]
        edir = self.dir / eid
        edir.mkdir(mode=0o700, exist_ok=True)  # `_starting` keeps a second start out
        pc = rec["ProcessConfig"]
        tty = bool(pc["tty"])
        want = (
            frozenset()
            if detach
            else frozenset(s for s, key in ((STDOUT, "OpenStdout"), (STDERR, "OpenStderr")) if rec[key])
        )
        size = console_size or rec["Dockyard"].get("ConsoleSize")
        self._sizes[eid] = (int(size[0]), int(size[1])) if size else None
        session = ExecSession(tty=tty, want=want)

        async def before_start() -> None:
            # conmon's attach socket and ctl fifo exist; the process does not run yet
            size = self._sizes.pop(eid, None)
            if size and tty:
                self.conmon.resize(edir, *size)
            if not detach:
                await session.connect(edir)

        try:
            # off the loop: it reads the image's passwd/group (_process_spec)
            process = await asyncio.to_thread(self._process_spec, crec, rec)
            (edir / "process.json").write_text(json.dumps(process))
            started = await self.conmon.exec(
                cid, edir, self.containers.runtime(crec),
                terminal=tty,
                stdin=bool(rec["OpenStdin"]) and not detach,
                before_start=before_start,
            )  # fmt: skip
        except ExecFailed as err:
            # Docker writes the error into the stream and records the exit code
            message = f"OCI runtime exec failed: {err}: unknown"
            code = _failed_start_code(str(err))
            self._publish_start(crec, rec)
            if detach:
                session.close()
                self._exited(eid, cid, crec, code)
                raise (errdefs.InvalidArgument if code != EXIT_UNKNOWN else errdefs.Internal)(message) from None
            self.sessions[eid] = session
            session.output.put_nowait((STDOUT, f"{message}\r\n".encode()))
            self._exited(eid, cid, crec, code)
            return session
        except Exception:
            # dockerd's default for a start that failed before the runtime said why: the
            # exec has run (a second start is a conflict) and `docker exec` exits 126
            session.close()
            self._publish_start(crec, rec)
            self._exited(eid, cid, crec, EXIT_CANNOT_RUN)
            raise
        except BaseException:
            session.close()
            shutil.rmtree(edir, ignore_errors=True)
            raise
        rec["Running"] = True
        rec["Pid"] = started.pid
        rec["Dockyard"]["ConmonPid"] = started.conmon_pid
        self.store.execs.put(eid, rec, name=cid)
        self._publish_start(crec, rec)
        self.sessions[eid] = session
        session.begin(started.pid)
        self._watch(eid, cid, started.conmon_pid, crec)
        return session

    def _publish_start(self, crec: dict[str, Any], rec: dict[str, Any]) -> None:
        cmd = _action_cmd([rec["ProcessConfig"]["entrypoint"], *rec["ProcessConfig"]["arguments"]])
        self.containers.publish(crec, f"exec_start: {cmd}", execID=rec["ID"])

    def _watch(self, eid: str, cid: str, conmon_pid: int, crec: dict[str, Any] | None) -> None:
        try:
            fd = os.pidfd_open(conmon_pid)
        except ProcessLookupError:
            self._exited(eid, cid, crec)
            return
        self._watched[eid] = _Watch(fd, cid, crec)
        asyncio.get_running_loop().add_reader(fd, self._on_conmon_exit, eid)

    def _on_conmon_exit(self, eid: str) -> None:
        w = self._watched.pop(eid, None)
        if w is None:
            return
        asyncio.get_running_loop().remove_reader(w.pidfd)
        os.close(w.pidfd)
        self._exited(eid, w.cid, w.container)

    def _exited(self, eid: str, cid: str, crec: dict[str, Any] | None, code: int | None = None) -> None:
        """Record the end of an exec process, with `code` or else the one conmon wrote."""
        edir = self.dir / eid
        if code is None:
            code = self.conmon.read_exec_exit(edir, cid)
            if code is None:
                log.warning("exec %s: conmon left no exit code", eid[:12])
                code = LOST_EXIT_CODE
        rec = self.store.execs.get(eid)
        if rec is not None and rec.get("Dockyard", {}).get("Probe"):
            self.store.execs.delete(eid)  # a healthcheck probe: nobody inspects it afterwards
        elif rec is not None:  # None when the container (and so the exec) was removed
            rec.update(Running=False, ExitCode=code, Pid=0)
            rec.setdefault("Dockyard", {})["ConmonPid"] = 0
            self.store.execs.put(eid, rec, name=cid)
        crec = self.store.containers.get(cid) or crec
        if crec is not None:
            self.containers.publish(crec, "exec_die", execID=eid, exitCode=str(code))
        shutil.rmtree(edir, ignore_errors=True)
        session = self.sessions.pop(eid, None)
        if session is not None and not session.exited.done():
            session.exited.set_result(code)

    async def probe(self, cid: str, argv: list[str], timeout: float) -> tuple[int, bytes, bool]:
        """Run a healthcheck probe as an exec: (exit code, output (stdout and stderr, at most
        `PROBE_OUTPUT` bytes kept), timed out). At the timeout the probe's whole process tree
        is killed, so a probe that hangs leaves nothing running in the container. The exec
        record lives only while the probe runs."""
        eid = await self.create(cid, {"Cmd": argv, "AttachStdout": True, "AttachStderr": True}, listed=False)
        out = bytearray()
        timed_out = False
        try:
            session = await self.start(eid, detach=False)
            pid = int((self.store.execs.get(eid) or {}).get("Pid") or 0)

            async def collect() -> int:
                while (item := await session.output.get()) is not None:
                    if len(out) <= PROBE_OUTPUT:  # one byte more tells "truncated"
                        out.extend(item[1][: PROBE_OUTPUT + 1 - len(out)])
                return await session.done

            try:
                async with asyncio.timeout(timeout):
                    code = await collect()
            except TimeoutError:
                timed_out = True
                if pid:
                    await asyncio.to_thread(kill_process_tree, pid)
                async with asyncio.timeout(10):  # conmon exits once its child has gone
                    code = await collect()
            except asyncio.CancelledError:
                if pid:  # the container stopped or the daemon is leaving: no orphan probe
                    kill_process_tree(pid)
                raise
            return code, bytes(out), timed_out
        finally:
            self.store.execs.delete(eid)

    def publish_detach(self, eid: str) -> None:
        """The client left with the detach keys (Docker's `exec_detach` event)."""
        rec = self.get(eid)
        crec = self.store.containers.get(rec["ContainerID"])
        if crec is not None:
            self.containers.publish(crec, "exec_detach", execID=eid)

    def resize(self, eid: str, height: int, width: int) -> None:
        rec = self.get(eid)
        if eid in self._sizes:
            # conmon has no ctl fifo yet (clients resize as soon as the start's response
            # arrives): the size applies before the process runs
            self._sizes[eid] = (height, width)
            return
        if not (rec["Running"] or eid in self._starting):
            raise errdefs.Conflict(f"exec {eid} is not running")
        if rec["ProcessConfig"]["tty"]:
            self.conmon.resize(self.dir / eid, height, width)


EXIT_CANNOT_RUN = 126  # moby's exitEaccess, also its default for a start that failed early
EXIT_NOT_FOUND = 127  # exitCmdNotFound
EXIT_UNKNOWN = 128  # exitUnknown


def _failed_start_code(message: str) -> int:
    """The exit code of an exec the runtime could not start, by moby's rules (its daemon's
    `setExitCodeFromError`, checked in this order)."""
    text = message.lower()
    if "permission denied" in text or "is a directory" in text:
        return EXIT_CANNOT_RUN
    if "not a directory" in text:
        return EXIT_NOT_FOUND
    if any(m in text for m in ("executable file not found", "no such file or directory", "failed to run runc create/exec call")):
        return EXIT_NOT_FOUND
    return EXIT_UNKNOWN


def _children() -> dict[int, list[int]]:
    """parent pid -> child pids, from one pass over /proc."""
    out: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        out.setdefault(ppid, []).append(int(name))
    return out


def _tree(pid: int) -> list[int]:
    children = _children()
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(children.get(p, []))
    return seen


def kill_process_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants. They are stopped first, until no new
    child appears, so none escapes by forking or is re-parented to the container's init
    between the walk and the kill."""
    stopped: set[int] = set()
    for _ in range(20):
        tree = [p for p in _tree(pid) if p not in stopped]
        if not tree:
            break
        for p in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGSTOP)
            stopped.add(p)
    for p in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def _action_cmd(cmd: list[str]) -> str:
    """The command in an exec event's action as dockerd writes it: the entrypoint, a space,
    the arguments (`exec_start: true ` for `exec c true`); `event=` filters match it."""
    return f"{cmd[0]} {' '.join(cmd[1:])}" if cmd else ""
