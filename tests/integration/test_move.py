"""Cold move of a container between two daemons on this machine (`dockyard container move`).

The session daemon is the source; a second daemon from make_daemon (its own data root,
socket and bridge) is the target, with no image at first, so the image's layers travel;
a second move of the same image sends none. The moved container keeps a changed file, a
deleted image file (a whiteout), a named volume's data, its env, labels, restart policy
and name; the source no longer has it. Refusals: a name taken on the target, a bind mount
of a host path, a device. A start that fails on the target leaves the container running
on the source, unchanged, and nothing on the target.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import BIN, Daemon, Runner, _runner, destroy_daemon, import_busybox, make_daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlayfs, runc)")


@pytest.fixture(scope="module")
def target() -> Iterator[Daemon]:
    d = make_daemon()
    yield d
    destroy_daemon(d)


def _move(source: Daemon, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [str(BIN / "dockyard"), "-H", source.host, "container", "move", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if check:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


def test_cold_move_keeps_changes_volume_and_config(
    daemon: Daemon, target: Daemon, docker_cli: Runner, busybox: str, unique
) -> None:
    dst = _runner(["docker"], target.host)
    name, vol = unique("mv"), unique("mvdata")
    try:
        docker_cli("volume", "create", vol)
        docker_cli(
            "run", "-d", "--name", name, "-v", f"{vol}:/data", "-e", "FOO=bar", "-l", "app=web",
            "--restart", "unless-stopped", busybox, "sleep", "3600",
        )  # fmt: skip
        docker_cli(
            "exec",
            name,
            "sh",
            "-c",
            "echo kept > /data/v; mkdir -p /root/d; echo changed > /root/d/f; rm /bin/vi",
        )

        dry = _move(daemon, name, "--to", target.host, "--with-volumes", "--dry-run")
        assert "layers to send" in dry.stdout and f"volume {vol} at /data: sent" in dry.stdout
        assert "dry run: nothing sent" in dry.stdout
        assert dst("ps", "-a", "-q", "--filter", f"name={name}").stdout.strip() == ""

        out = _move(daemon, name, "--to", target.host, "--with-volumes").stdout
        assert "sent image (1 layers)" in out and f"moved {name}" in out

        assert docker_cli("ps", "-a", "-q", "--filter", f"name={name}").stdout.strip() == ""
        assert dst("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"
        assert dst("exec", name, "cat", "/root/d/f").stdout.strip() == "changed"
        assert dst("exec", name, "cat", "/data/v").stdout.strip() == "kept"
        assert dst("exec", name, "ls", "/bin/vi", check=False).returncode != 0
        assert "FOO=bar" in dst("inspect", "-f", "{{json .Config.Env}}", name).stdout
        assert dst("inspect", "-f", "{{.Config.Labels.app}}", name).stdout.strip() == "web"
        assert (
            dst("inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", name).stdout.strip()
            == "unless-stopped"
        )
        assert dst("inspect", "-f", "{{.Config.Image}}", name).stdout.strip() == busybox

        # back again: the source has the image, so no layer travels
        back = _move(target, name, "--to", daemon.host, "--with-volumes").stdout
        assert "0 of 1 layers to send" in back
        assert docker_cli("exec", name, "cat", "/root/d/f").stdout.strip() == "changed"
    finally:
        for run in (docker_cli, dst):
            run("rm", "-f", name, check=False)
            run("volume", "rm", "-f", vol, check=False)


def test_move_refusals(
    daemon: Daemon, target: Daemon, docker_cli: Runner, busybox: str, unique, tmp_path
) -> None:
    dst = _runner(["docker"], target.host)
    import_busybox(target.host)
    name, bind, dev = unique("mvtaken"), unique("mvbind"), unique("mvdev")
    try:
        docker_cli("run", "-d", "--name", name, busybox, "sleep", "60")
        dst("create", "--name", name, busybox, "true")
        res = _move(daemon, name, "--to", target.host, check=False)
        assert res.returncode != 0 and f"the name {name} is already in use on" in res.stderr
        assert docker_cli("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"

        docker_cli("run", "-d", "--name", bind, "-v", f"{tmp_path}:/host", busybox, "sleep", "60")
        res = _move(daemon, bind, "--to", target.host, check=False)
        assert res.returncode != 0 and f"bind-mounts the host path {tmp_path}" in res.stderr

        docker_cli("create", "--name", dev, "--device", "/dev/null:/dev/xnull", busybox, "true")
        res = _move(daemon, dev, "--to", target.host, check=False)
        assert res.returncode != 0 and "uses the host device /dev/null" in res.stderr
    finally:
        for n in (name, bind, dev):
            docker_cli("rm", "-f", n, check=False)
        dst("rm", "-f", name, check=False)


def test_failed_start_on_target_resumes_on_source(busybox: str, unique) -> None:
    """The runtime `flaky` is runc on the source and /bin/false on the target: the target's
    start fails after the container was stopped, created and filled there."""
    src_d = make_daemon(("--add-runtime", "flaky=/usr/sbin/runc"))
    dst_d = make_daemon(("--add-runtime", "flaky=/bin/false"))
    try:
        import_busybox(src_d.host)
        src, dst = _runner(["docker"], src_d.host), _runner(["docker"], dst_d.host)
        name = unique("mvfail")
        src("run", "-d", "--name", name, "--runtime", "flaky", busybox, "sh", "-c", "echo 1 > /n; sleep 3600")
        started = src("inspect", "-f", "{{.State.StartedAt}}", name).stdout.strip()
        res = _move(src_d, name, "--to", dst_d.host, check=False)
        assert res.returncode != 0 and "resuming" in res.stderr, res.stdout + res.stderr
        assert src("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"
        assert src("inspect", "-f", "{{.State.StartedAt}}", name).stdout.strip() != started
        assert src("exec", name, "cat", "/n").stdout.strip() == "1"
        assert dst("ps", "-a", "-q").stdout.strip() == ""
    finally:
        destroy_daemon(dst_d)
        destroy_daemon(src_d)


def _tar(entries: list[tuple[str, bytes | None, str]]) -> bytes:
    """(name, data or None for a symlink, link target)"""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data, link in entries:
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type, ti.linkname = tarfile.SYMTYPE, link
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_hostile_layer_from_a_source_stays_inside(
    daemon: Daemon, docker_cli: Runner, busybox: str, unique, tmp_path
) -> None:
    """What a compromised source daemon could send as a writable layer: names climbing out
    with `..`, an absolute name, and a symlink to a host directory followed by a file
    through it. The target refuses the layer and writes nothing outside the container."""
    import docker

    outside = tmp_path / "outside"
    outside.mkdir()
    name, vol = unique("mvhostile"), unique("mvvol")
    api = docker.APIClient(base_url=daemon.host, version="1.47")
    try:
        cid = docker_cli("create", "--name", name, busybox, "true").stdout.strip()
        body = _tar([
            (f"../../../../../../..{outside}/climb", b"x", ""),
            (f"{outside}/abs", b"x", ""),
            ("esc", None, str(outside)),
            ("esc/through", b"x", ""),
            ("ok", b"fine", ""),
        ])  # fmt: skip
        res = api._put(api._url("/dockyard/containers/{0}/layer", cid), data=body)
        assert res.status_code == 400 and "unsafe entries refused" in res.json()["message"], res.text
        assert os.listdir(outside) == []
        # a layer goes only into a created container's empty layer
        res = api._put(api._url("/dockyard/containers/{0}/layer", cid), data=_tar([("x", b"1", "")]))
        assert res.status_code == 409 and "is not empty" in res.json()["message"]
        # and a volume's files are read only when no running container can change them
        docker_cli("run", "-d", "--name", name + "r", "-v", f"{vol}:/d", busybox, "sleep", "60")
        res = api._get(api._url("/dockyard/volumes/{0}/content", vol))
        assert res.status_code == 409 and "in use by running container" in res.json()["message"]
    finally:
        docker_cli("rm", "-f", name, name + "r", check=False)
        docker_cli("volume", "rm", "-f", vol, check=False)
        api.close()
