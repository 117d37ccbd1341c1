"""User namespaces (`--userns-remap`, `--userns=host`), driven by the docker CLI and docker-py.

A side daemon runs with `userns-remap` set to a test user made for the module, whose only
subuid and subgid line (also made for it) is a range nobody else uses; the module removes the user,
its lines and the daemon afterwards. The checks are made from the host, as an admin would:
a container's processes and files carry the range's ids on the host while the container
sees root. The daemon and its user come from `_remap.py` (module-scoped fixtures).
"""

# ruff: noqa: F811 (the fixtures imported from _remap are parameters of the tests)
from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import sys
import tarfile
from pathlib import Path

import docker
import pytest

from tests.conftest import Daemon
from tests.integration._remap import BASE, SIZE, remap_user, remapped  # noqa: F401 (fixtures)
from tests.integration._remap import cli as _cli

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (useradd, overlayfs, runc)")


def _host_ids(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    uid = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1]
    gid = next(line for line in status.splitlines() if line.startswith("Gid:")).split()[1]
    return int(uid), int(gid)


def _pid(d: Daemon, name: str) -> int:
    return int(_cli(d, "inspect", "-f", "{{.State.Pid}}", name).stdout)


def test_container_root_is_the_range_base_on_the_host(remapped: Daemon) -> None:
    name = f"uns-{secrets.token_hex(3)}"
    _cli(remapped, "run", "-d", "--name", name, "busybox", "sleep", "60")
    try:
        assert _cli(remapped, "exec", name, "id", "-u").stdout.strip() == "0"
        assert _host_ids(_pid(remapped, name)) == (BASE, BASE)
        uid_map = _cli(remapped, "exec", name, "cat", "/proc/self/uid_map").stdout.split()
        assert uid_map == ["0", str(BASE), str(SIZE)]
    finally:
        _cli(remapped, "rm", "-f", name)


def test_files_the_container_writes_belong_to_the_range_base(remapped: Daemon) -> None:
    name, vol = f"uns-{secrets.token_hex(3)}", f"unsvol-{secrets.token_hex(3)}"
    _cli(remapped, "run", "--name", name, "-v", f"{vol}:/data", "busybox",
         "sh", "-c", "touch /data/f /rootfile && mkdir /data/d")  # fmt: skip
    try:
        mountpoint = Path(_cli(remapped, "volume", "inspect", "-f", "{{.Mountpoint}}", vol).stdout.strip())
        for p in (mountpoint, mountpoint / "f", mountpoint / "d"):
            st = os.lstat(p)
            assert (st.st_uid, st.st_gid) == (BASE, BASE), p
        upper = Path(_cli(remapped, "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", name).stdout.strip())
        st = os.lstat(upper / "rootfile")
        assert (st.st_uid, st.st_gid) == (BASE, BASE)
        # the image's root-owned files: root inside, the range base in the layer on the host
        assert (
            _cli(remapped, "run", "--rm", "busybox", "stat", "-c", "%u:%g", "/bin/busybox").stdout.strip()
            == "0:0"
        )
        lower = _cli(remapped, "inspect", "-f", "{{.GraphDriver.Data.LowerDir}}", name).stdout.strip()
        layer = Path(lower.split(":")[-1])
        st = os.lstat(layer / "bin" / "busybox")
        assert (st.st_uid, st.st_gid) == (BASE, BASE)
    finally:
        _cli(remapped, "rm", "-f", name)
        _cli(remapped, "volume", "rm", vol)


def test_copy_up_hosts_files_tmpfs_and_shm_belong_to_the_container_root(remapped: Daemon) -> None:
    vol = f"unsvol-{secrets.token_hex(3)}"
    script = (
        "stat -c %u /etc/passwd; "  # copied up into the new volume
        "echo 1.2.3.4 x >> /etc/hosts && echo ok; "  # the daemon's file, writable by the container's root
        "touch /t/a /dev/shm/a && stat -c %u /t/a /dev/shm/a"
    )
    try:
        out = _cli(
            remapped, "run", "--rm", "-v", f"{vol}:/etc", "--tmpfs", "/t", "busybox", "sh", "-c", script
        ).stdout
        assert out.split() == ["0", "ok", "0", "0"]
        mountpoint = Path(_cli(remapped, "volume", "inspect", "-f", "{{.Mountpoint}}", vol).stdout.strip())
        assert os.lstat(mountpoint / "passwd").st_uid == BASE
    finally:
        _cli(remapped, "volume", "rm", vol, check=False)


def test_userns_host_runs_without_a_user_namespace(remapped: Daemon) -> None:
    name = f"uns-{secrets.token_hex(3)}"
    _cli(remapped, "run", "-d", "--userns=host", "--name", name, "busybox", "sleep", "60")
    try:
        assert _host_ids(_pid(remapped, name)) == (0, 0)
        assert _cli(remapped, "exec", name, "cat", "/proc/self/uid_map").stdout.split() == [
            "0",
            "0",
            "4294967295",
        ]
        assert _cli(remapped, "inspect", "-f", "{{.HostConfig.UsernsMode}}", name).stdout.strip() == "host"
    finally:
        _cli(remapped, "rm", "-f", name)


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--privileged", ("privileged mode is incompatible with user namespaces.  You must run the container "
                          "in the host namespace when running privileged mode")),
        ("--net=host", "cannot share the host's network namespace when user namespaces are enabled"),
        ("--pid=host", "cannot share the host PID namespace when user namespaces are enabled"),
    ],
)  # fmt: skip
def test_host_namespaces_need_userns_host_as_in_dockerd(remapped: Daemon, flag: str, message: str) -> None:
    res = _cli(remapped, "run", "--rm", flag, "busybox", "true", check=False)
    assert res.returncode == 125 and message in res.stderr
    assert _cli(remapped, "ps", "-aq").stdout.strip() == ""  # nothing was created
    out = _cli(remapped, "run", "--rm", flag, "--userns=host", "busybox", "cat", "/proc/self/uid_map").stdout
    assert out.split() == ["0", "0", "4294967295"]


def test_invalid_userns_mode_is_400(remapped: Daemon) -> None:
    api = docker.APIClient(base_url=remapped.host, version="1.47")
    for mode in ("private", "container:x", "keep-id"):
        with pytest.raises(docker.errors.APIError) as exc:
            api.create_container("busybox", "true", host_config={"UsernsMode": mode})
        assert exc.value.status_code == 400
        assert f"invalid USER mode: {mode}" in exc.value.explanation
    api.close()


def test_info_reports_userns_and_the_remapped_root(remapped: Daemon) -> None:
    client = docker.DockerClient(base_url=remapped.host, version="auto")
    info = client.info()
    client.close()
    assert "name=userns" in info["SecurityOptions"]
    assert info["DockerRootDir"] == str(remapped.data_root / f"{BASE}.{BASE}")
    st = os.stat(info["DockerRootDir"])
    assert (st.st_mode & 0o777, st.st_gid) == (0o710, BASE)


def test_commit_writes_container_ids_into_the_layer(remapped: Daemon) -> None:
    name, tag = f"uns-{secrets.token_hex(3)}", f"unscommit{secrets.token_hex(3)}"
    _cli(remapped, "run", "--name", name, "busybox", "sh", "-c", "touch /made && chown 7:8 /made")
    try:
        _cli(remapped, "commit", name, tag)
        saved = subprocess.run(["docker", "save", tag], capture_output=True, check=True,
                               env={**os.environ, "DOCKER_HOST": remapped.host}).stdout  # fmt: skip
        owners = {}
        with tarfile.open(fileobj=io.BytesIO(saved)) as outer:
            manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
            top = outer.extractfile(manifest[0]["Layers"][-1])
            with tarfile.open(fileobj=top) as layer:  # type: ignore[arg-type]
                owners = {m.name: (m.uid, m.gid) for m in layer}
        assert owners["made"] == (7, 8)
        assert _cli(remapped, "run", "--rm", tag, "stat", "-c", "%u:%g", "/made").stdout.strip() == "7:8"
    finally:
        _cli(remapped, "rm", "-f", name)
        _cli(remapped, "rmi", tag, check=False)


def test_containers_survive_a_daemon_restart_with_remapping(remapped: Daemon) -> None:
    name = f"uns-{secrets.token_hex(3)}"
    _cli(remapped, "run", "-d", "--name", name, "busybox", "sleep", "300")
    try:
        pid = _pid(remapped, name)
        remapped.stop()
        remapped.start()
        assert _pid(remapped, name) == pid and _host_ids(pid) == (BASE, BASE)
        _cli(remapped, "restart", "-t", "1", name)
        assert _host_ids(_pid(remapped, name)) == (BASE, BASE)
        _cli(remapped, "stop", "-t", "1", name)
        _cli(remapped, "start", name)
        assert _host_ids(_pid(remapped, name)) == (BASE, BASE)
        # a container joining its network namespace joins its user namespace too
        out = _cli(
            remapped, "run", "--rm", f"--net=container:{name}", "busybox", "cat", "/proc/self/uid_map"
        ).stdout
        assert out.split() == ["0", str(BASE), str(SIZE)]
    finally:
        _cli(remapped, "rm", "-f", name)


def test_bad_remap_settings_stop_the_daemon_with_dockerds_message(tmp_path: Path) -> None:
    cases = [
        ("no-such-user-dy", 'Error during uid lookup for "no-such-user-dy"'),
        ("a:b:c", 'Invalid user/group specification in --userns-remap: "a:b:c"'),
        ("nobody:nogroup", 'no subuid ranges found for user "nobody"'),
    ]
    (tmp_path / "daemon.json").write_text("{}")
    for setting, message in cases:
        res = subprocess.run(
            [
                sys.executable, "-m", "dockyard.daemon.main",
                "-H", f"unix://{tmp_path}/d.sock", "--data-root", str(tmp_path / "data"),
                "--exec-root", str(tmp_path / "run"), "--config-file", str(tmp_path / "daemon.json"),
                "--userns-remap", setting,
            ],
            capture_output=True, text=True, timeout=30, cwd=Path(__file__).resolve().parents[2], check=False,
        )  # fmt: skip
        assert res.returncode != 0 and message in res.stderr, res.stderr


def test_userns_host_is_a_no_op_without_remapping(docker_cli, busybox: str) -> None:  # type: ignore[no-untyped-def]
    out = docker_cli("run", "--rm", "--userns=host", busybox, "cat", "/proc/self/uid_map").stdout
    assert out.split() == ["0", "0", "4294967295"]
    info = json.loads(docker_cli("info", "--format", "{{json .SecurityOptions}}").stdout)
    assert "name=userns" not in info


def test_cp_shifts_owners_both_ways(remapped: Daemon, tmp_path: Path) -> None:
    name = f"uns-{secrets.token_hex(3)}"
    _cli(remapped, "create", "--name", name, "busybox", "true")
    try:
        src = tmp_path / "in.txt"
        src.write_text("x")
        os.chown(src, 5, 6)
        _cli(remapped, "cp", "-a", str(src), f"{name}:/in.txt")  # -a: the archive's owners
        upper = Path(_cli(remapped, "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", name).stdout.strip())
        st = os.lstat(upper / "in.txt")
        assert (st.st_uid, st.st_gid) == (BASE + 5, BASE + 6)
        out = subprocess.run(
            ["docker", "cp", f"{name}:/bin/busybox", "-"], capture_output=True, check=True,
            env={**os.environ, "DOCKER_HOST": remapped.host},
        ).stdout  # fmt: skip
        with tarfile.open(fileobj=io.BytesIO(out)) as tf:
            assert [(m.uid, m.gid) for m in tf] == [(0, 0)]
    finally:
        _cli(remapped, "rm", "-f", name)
