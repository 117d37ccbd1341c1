"""Checkpoints of running containers (Docker's experimental checkpoint API), over runc and CRIU.

This module owns where checkpoints live, their names, and the create / list / delete
steps; `ContainerService.start_container(checkpoint=...)` restores one through
`restore_for`. It decides no container states itself: the container's own lock, guards
and exit handling (in `service.py`) do.

A checkpoint is a directory; it counts once its `config.json` exists (written last, by
rename), so a dump cut short is never listed nor restored::

    <checkpoints>/                   <data-root>/containers/<id>/checkpoints (default),
                                     or the CheckpointDir / `dir` / `checkpoint-dir` given
      <name>/
        config.json                  {"Name", "ContainerID", "Created", "Exit",
                                     "TCPEstablished", "NetnsExternal"}: Docker's
                                     `checkpoint ls` shape plus what a restore must know
        criu/                        CRIU's images (runc --image-path)
        work/                        CRIU's dump.log while it runs (removed on success)

Nothing about a checkpoint is in the SQLite store: the directory is the object, as in
Docker, so a checkpoint directory given by the user (`--checkpoint-dir`) is self-contained
and can be copied elsewhere. Names follow Docker's rule for restricted names, so a name is
one path component and never `..`.

What CRIU cannot do here, and we refuse up front: a container with a TTY (its terminal's
other end belongs to conmon, outside the dump), one that is not running.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Protocol

from dockyard import errdefs
from dockyard._sys.fs import write_atomic
from dockyard.containers import state
from dockyard.runtime.monitor import Restore
from dockyard.runtime.oci import OCIRuntime
from dockyard.timefmt import now_rfc3339

log = logging.getLogger(__name__)

__all__ = ["CheckpointNotFound", "CheckpointService", "criu_binary", "criu_problem", "restore_for"]

# Docker's RestrictedNamePattern (daemon/names): one path component, never "." or ".."
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
DEFAULT_CRIU = "/usr/local/sbin/criu"  # where scripts/install-criu.sh puts it

Record = dict[str, Any]


class CheckpointNotFound(errdefs.NotFound):
    pass


def criu_binary(configured: str = "") -> str:
    """The criu to hand runc: the configured one, else the one `make` installs, else PATH."""
    if configured:
        return configured
    if os.access(DEFAULT_CRIU, os.X_OK):
        return DEFAULT_CRIU
    found = shutil.which("criu")
    if not found:
        raise errdefs.Unavailable("checkpoint/restore needs criu 4.1 or newer: run scripts/install-criu.sh")
    return found


def criu_problem(configured: str = "") -> str:
    """Why this daemon cannot checkpoint, or "" when its criu is 4.1 or newer (older ones
    fail on this kernel: see docs/decisions/checkpoint.md)."""
    try:
        criu = criu_binary(configured)
    except errdefs.Unavailable as err:
        return str(err)
    try:
        out = subprocess.run([criu, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except OSError as err:
        return f"criu at {criu} does not run: {err.strerror}"
    found = re.search(r"Version:\s*(\d+)\.(\d+)", out)
    if not found or (int(found[1]), int(found[2])) < (4, 1):
        return f"criu at {criu} is older than 4.1 ({out.strip().splitlines()[0] if out.strip() else 'no version'})"
    return ""


def checkpoints_root(container_dir: Path, custom: str | None) -> Path:
    if not custom:
        return container_dir / "checkpoints"
    if not os.path.isabs(custom):
        raise errdefs.InvalidArgument(f"checkpoint directory must be an absolute path: {custom}")
    return Path(os.path.normpath(custom))


def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name or ""):
        raise errdefs.InvalidArgument(f"Invalid checkpoint ID ({name}), only {NAME_CHARS} are allowed")


def _is_complete(cp_dir: Path) -> bool:
    return (cp_dir / "config.json").is_file() and (cp_dir / "criu").is_dir()


def _short_name(rec: Record) -> str:
    return str(rec["Name"]).lstrip("/")


def checkpoint_dir(rec: Record, container_dir: Path, name: str, custom: str | None) -> Path:
    """The directory of an existing, complete checkpoint; 404 with Docker's words otherwise."""
    check_name(name)
    cp_dir = checkpoints_root(container_dir, custom) / name
    if not _is_complete(cp_dir):
        raise CheckpointNotFound(f"checkpoint {name} does not exist for container {_short_name(rec)}")
    return cp_dir


def restore_for(rec: Record, container_dir: Path, name: str, custom: str | None, criu: str) -> Restore:
    """What conmon needs to start the container from checkpoint `name`."""
    if rec["Config"].get("Tty"):
        raise errdefs.InvalidArgument("cannot restore a container with a tty from a checkpoint")
    cp_dir = checkpoint_dir(rec, container_dir, name, custom)
    opts: tuple[str, ...] = ()
    meta = _meta(cp_dir)
    pinned = bool(meta.get("NetnsExternal")) and _own_netns(rec)
    if _own_netns(rec) and not pinned:
        opts = ("--empty-ns", "network")  # it was dumped empty: see OCIRuntime.checkpoint
    if meta.get("TCPEstablished"):
        # CRIU restores the connections in repair mode; runc must ask for it or it refuses
        opts += ("--tcp-established",)
    return Restore(images=cp_dir / "criu", criu=criu, runtime_opts=opts, pinned_netns=pinned)


CRIU_CONF = "criu.conf"  # in the bundle; every container's spec names it (org.criu.config)


def external_netns_conf(bundle: Path, pid: int) -> bool:
    """Have the next dump leave the container's network namespace out as an external one,
    keyed as runc keys it (`extRootNetNS`), by CRIU's configuration file that runc hands
    CRIU. runc does this itself for a namespace given by path (a restored container); for
    one it made ("new"), we write the file. False when runc does it."""
    spec = json.loads((bundle / "config.json").read_text())
    for ns in spec.get("linux", {}).get("namespaces", []):
        if ns.get("type") == "network" and ns.get("path"):
            return False
    if spec.get("annotations", {}).get("org.criu.config") != str(bundle / CRIU_CONF):
        raise errdefs.Conflict(
            "the container was started by a daemon that could not move it live: restart it first"
        )
    ino = os.stat(f"/proc/{pid}/ns/net").st_ino
    write_atomic(bundle / CRIU_CONF, f"external net[{ino}]:extRootNetNS\n".encode())
    return True


def _meta(cp_dir: Path) -> Record:
    try:
        doc = json.loads((cp_dir / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _own_netns(rec: Record) -> bool:
    mode = str(rec["HostConfig"].get("NetworkMode") or "bridge")
    return mode != "host" and not mode.startswith("container:")


class Containers(Protocol):
    """What checkpoints need of the container service (service.py implements it)."""

    cfg: Any

    def bundle(self, cid: str) -> Path: ...
    def resolve_id(self, ref: str) -> str: ...
    def lock(self, cid: str) -> asyncio.Lock: ...
    def get(self, ref: str) -> Record: ...
    def save(self, rec: Record) -> None: ...
    def runtime(self, rec: Record) -> OCIRuntime: ...
    def publish(self, rec: Record, action: str, **extra: str) -> None: ...
    def exit_future(self, cid: str) -> asyncio.Future[Record]: ...


class CheckpointService:
    """`POST/GET/DELETE /containers/{id}/checkpoints`.

    create: reload the record under its lock; it must run without a TTY; make the
    checkpoint's directory (exclusive: a taken name is a 409); `runc checkpoint` into
    `criu/`; write `config.json`; publish `checkpoint`. Without --leave-running the
    container's processes are gone afterwards: we wait until its exit is recorded (and
    mark it manually stopped, so no restart policy brings it back) before answering.
    """

    def __init__(self, containers: Containers) -> None:
        self.containers = containers

    def _root(self, rec: Record, custom: str | None) -> Path:
        return checkpoints_root(self.containers.bundle(rec["Id"]), custom)

    async def create(
        self, ref: str, name: str, custom_dir: str | None, exit: bool, *, tcp_established: bool = False
    ) -> None:
        svc = self.containers
        cid = svc.resolve_id(ref)
        exited: asyncio.Future[Record] | None = None
        async with svc.lock(cid):
            rec = svc.get(cid)
            if state.status(rec) != state.RUNNING:
                raise errdefs.Conflict(f"Container {cid} is not running")
            if rec["Config"].get("Tty"):
                # the terminal's master end is conmon's: CRIU cannot dump or restore it
                raise errdefs.InvalidArgument("checkpoint not supported on containers with tty")
            check_name(name)
            criu = criu_binary(svc.cfg.criu)
            root = self._root(rec, custom_dir)
            cp_dir = root / name
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                cp_dir.mkdir(mode=0o700)
            except FileExistsError:
                raise errdefs.Conflict(
                    f"checkpoint with name {name} already exists for container {_short_name(rec)}"
                ) from None
            try:
                (cp_dir / "criu").mkdir()
                (cp_dir / "work").mkdir()
                # keeping connections needs their address where they are restored: the
                # namespace is left out of the dump (external) rather than dumped empty,
                # and a restore goes into one pinned and plugged first (Restore.pinned_netns)
                external = tcp_established and _own_netns(rec)
                if external:
                    external_netns_conf(svc.bundle(cid), int(rec["State"]["Pid"]))
                if exit:
                    rec["Dockyard"]["ManuallyStopped"] = True
                    svc.save(rec)
                    exited = svc.exit_future(cid)
                await svc.runtime(rec).checkpoint(
                    cid, cp_dir / "criu", cp_dir / "work", criu=criu, leave_running=not exit,
                    empty_netns=_own_netns(rec) and not external, tcp_established=tcp_established,
                )  # fmt: skip
                meta = {
                    "Name": name, "ContainerID": cid, "Created": now_rfc3339(), "Exit": exit,
                    "TCPEstablished": tcp_established, "NetnsExternal": external,
                }  # fmt: skip
                write_atomic(cp_dir / "config.json", json.dumps(meta).encode())
            except BaseException as err:
                (svc.bundle(cid) / CRIU_CONF).unlink(missing_ok=True)
                detail = _log_tail(cp_dir / "work" / "dump.log")
                await asyncio.to_thread(shutil.rmtree, cp_dir, True)
                if exited is not None:
                    rec["Dockyard"]["ManuallyStopped"] = False
                    svc.save(rec)
                    exited.cancel()  # _handle_exit skips a waiter that is done
                    exited = None
                if isinstance(err, errdefs.DockyardError):
                    raise errdefs.Internal(
                        f"Cannot checkpoint container {_short_name(rec)}: {err}{detail}"
                    ) from err
                raise
            (svc.bundle(cid) / CRIU_CONF).unlink(missing_ok=True)
            shutil.rmtree(cp_dir / "work", ignore_errors=True)
            svc.publish(rec, "checkpoint")
        if exited is not None:
            try:
                async with asyncio.timeout(30):
                    await exited
            except TimeoutError:
                log.warning("container %s: no exit seen 30s after its checkpoint", cid[:12])

    def list(self, ref: str, custom_dir: str | None) -> list[dict[str, Any]]:
        rec = self.containers.get(ref)
        root = self._root(rec, custom_dir)
        out = []
        try:
            entries = sorted(os.scandir(root), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        except NotADirectoryError:
            raise errdefs.InvalidArgument(f"{root} is not a directory") from None
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                continue
            if not _is_complete(Path(entry.path)):
                continue
            try:
                meta = json.loads((Path(entry.path) / "config.json").read_text())
            except (OSError, ValueError):
                continue
            out.append({"Name": str(meta.get("Name") or entry.name)})
        return out

    async def delete(self, ref: str, name: str, custom_dir: str | None) -> None:
        rec = self.containers.get(ref)
        check_name(name)
        cp_dir = self._root(rec, custom_dir) / name
        if not cp_dir.is_dir() or cp_dir.is_symlink():
            raise CheckpointNotFound(f"checkpoint {name} does not exist for container {_short_name(rec)}")
        # rename first so a concurrent restore or listing never sees half a checkpoint
        doomed = cp_dir.with_name(f".{name}.removing")
        os.rename(cp_dir, doomed)
        await asyncio.to_thread(shutil.rmtree, doomed, True)


def _log_tail(path: Path, lines: int = 3) -> str:
    """The last errors of a CRIU log, to say why a dump or restore failed."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    errors = [ln for ln in text if "Error" in ln or "err" in ln.lower()] or text
    return ("; criu: " + " | ".join(errors[-lines:])) if errors else ""


def restore_log_tail(bundle: Path) -> str:
    return _log_tail(bundle / "restore.log")
