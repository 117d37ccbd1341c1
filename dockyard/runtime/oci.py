"""A thin driver for any runc-compatible OCI runtime CLI.

It runs the runtime's verbs (start, kill, delete, pause, resume, state, update, exec,
checkpoint) on a bundle that already exists and decides nothing about container states. Failures become
`RuntimeFailed` (an Internal error) carrying argv, exit code and stderr.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from dockyard._sys import proc
from dockyard.errdefs import Internal

log = logging.getLogger(__name__)


class RuntimeFailed(Internal):
    pass


class OCIRuntime:
    def __init__(self, binary: str, root: Path) -> None:
        self.binary = binary
        self.root = root  # the runtime's state directory (--root)

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    async def _run(self, *args: str, timeout: float = 30, stdin: bytes = b"") -> bytes:
        try:
            res = await proc.run(self.argv(*args), timeout=timeout, stdin=stdin)
        except proc.ProcessFailed as err:
            msg = err.stderr.decode(errors="replace").strip()
            raise RuntimeFailed(f"{Path(self.binary).name} {args[0]} failed: {msg}") from err
        return res.stdout

    async def start(self, cid: str) -> None:
        await self._run("start", cid)

    async def kill(self, cid: str, signal: int, *, all: bool = False) -> None:
        await self._run("kill", *(["--all"] if all else []), cid, str(signal))

    async def delete(self, cid: str) -> None:
        await self._run("delete", "--force", cid)

    async def pause(self, cid: str) -> None:
        await self._run("pause", cid)

    async def resume(self, cid: str) -> None:
        await self._run("resume", cid)

    async def state(self, cid: str) -> dict[str, Any] | None:
        try:
            out = await self._run("state", cid)
        except RuntimeFailed:
            return None
        doc: dict[str, Any] = json.loads(out)
        return doc

    async def update(self, cid: str, resources: dict[str, Any]) -> None:
        await self._run("update", "--resources", "-", cid, stdin=json.dumps(resources).encode())

    async def checkpoint(
        self, cid: str, image_path: Path, work_path: Path, *, criu: str, leave_running: bool,
        empty_netns: bool, tcp_established: bool = False, timeout: float = 300,
    ) -> None:  # fmt: skip
        """`runc checkpoint`: CRIU dumps the container's processes into `image_path`
        (its log, dump.log, goes to `work_path`); without `leave_running` they are killed.

        `empty_netns`: the container's network namespace is dumped empty (`--empty-ns
        network`), since its veth has a peer outside that CRIU cannot dump; the restore
        gets a new, empty namespace that the daemon plugs into its networks again.
        `tcp_established`: established TCP connections are dumped too (CRIU's TCP repair
        mode; a live move restores them where the container's address is plugged again)."""
        args = ["--criu", criu, "checkpoint", "--image-path", str(image_path), "--work-path", str(work_path)]
        if leave_running:
            args.append("--leave-running")
        if empty_netns:
            args += ["--empty-ns", "network"]
        if tcp_established:
            args.append("--tcp-established")
        try:
            res = await proc.run([self.binary, "--root", str(self.root), *args, cid], timeout=timeout)
        except proc.ProcessFailed as err:
            msg = runtime_error_text(err.stderr.decode(errors="replace").strip())
            raise RuntimeFailed(f"{Path(self.binary).name} checkpoint failed: {msg}") from err
        log.debug("checkpoint %s: %s", cid[:12], res.stderr.decode(errors="replace").strip())

    async def ps(self, cid: str) -> list[int]:
        out = await self._run("ps", "--format", "json", cid)
        return list(json.loads(out) or [])


_LOGRUS_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


def runtime_error_text(text: str) -> str:
    """runc logs errors logrus-style (time=... level=error msg="..."); keep the message."""
    found = _LOGRUS_MSG.findall(text)
    if not found:
        return text
    return str(found[-1]).encode().decode("unicode_escape")


# Linux capability numbers (include/uapi/linux/capability.h), for reading /proc masks.
_CAP_NUMBERS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip


def bounding_capabilities() -> frozenset[str] | None:
    """The capabilities this daemon may hand out (its bounding set); None if unknown.

    In a restricted host (a sandbox, a container) the set lacks some capabilities, and the
    runtime fails with EPERM when asked to grant one, so `--privileged` means "all we have"
    (as podman does), not every capability the kernel knows.
    """
    try:
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("CapBnd:"))
    except (OSError, StopIteration):
        return None
    mask = int(line.split()[1], 16)
    return frozenset(name for i, name in enumerate(_CAP_NUMBERS) if mask >> i & 1)


def limit_capabilities(caps: list[str], allowed: frozenset[str] | None) -> list[str]:
    return list(caps) if allowed is None else [c for c in caps if c in allowed]
