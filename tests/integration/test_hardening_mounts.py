"""The temporary rootfs mount of a stopped container (docker export, docker cp) is nosuid,nodev
on the host, like the mount made at start (CVE-2021-41091: a host user must not run a
setuid-root file a container made through its path under the data root).

Watched from the host while the stream is held open: the client stops reading a large
export (the daemon blocks on a full socket) and /proc/self/mountinfo is read then. (`commit`
mounts nothing: it reads the snapshot's upper dir. The builder's COPY/ADD mounts come from
the same `prepare_rootfs` and so carry the same flags.)
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon, wait_for

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def _mount_options(target: Path) -> set[str] | None:
    """The per-mount options of the mount at `target` (mountinfo's field 6), or None."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == str(target):
                return set(fields[5].split(","))
    return None


@pytest.fixture
def stopped(daemon: Daemon, docker_cli: Runner, busybox: str, unique: Callable[[str], str]) -> Iterator[Path]:
    """A stopped container holding 96 MiB (more than any socket and pipe buffer hold);
    yields its rootfs mount point."""
    name = unique("mnt")
    docker_cli("run", "--name", name, busybox, "sh", "-c",
               "dd if=/dev/zero of=/big bs=1M count=96 2>/dev/null",
               timeout=60)  # fmt: skip
    cid = docker_cli("inspect", "-f", "{{.Id}}", name).stdout.strip()
    rootfs = daemon.data_root / "containers" / cid / "rootfs"
    try:
        assert _mount_options(rootfs) is None  # stopped: not mounted
        yield rootfs
    finally:
        docker_cli("rm", "-f", name, check=False, timeout=30)


@pytest.mark.parametrize("how", ["export", "cp"])
def test_temporary_rootfs_mount_is_nosuid_nodev(daemon: Daemon, stopped: Path, how: str) -> None:
    cid = stopped.parent.name
    argv = ["docker", "export", cid] if how == "export" else ["docker", "cp", f"{cid}:/big", "-"]
    env = {**os.environ, "DOCKER_HOST": daemon.host}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        opts = wait_for(lambda: _mount_options(stopped), what=f"the temporary mount of {how}")
        assert {"nosuid", "nodev"} <= opts, opts
        # and it holds while the stream is stuck mid-way (nothing read yet)
        assert proc.poll() is None
        assert {"nosuid", "nodev"} <= (_mount_options(stopped) or set())
    finally:
        assert proc.stdout is not None
        while proc.stdout.read(1 << 20):  # drain: the daemon finishes and unmounts
            pass
        proc.wait(timeout=60)
    assert proc.returncode == 0
    wait_for(lambda: _mount_options(stopped) is None, what="the temporary mount to go")
