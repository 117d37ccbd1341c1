"""Volumes, bind and tmpfs mounts through real clients: the docker CLI, docker-py and dockyard.

Each test removes the containers and volumes it made, and the data-root checks assert that
nothing of a removed volume is left on disk or mounted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from tests.conftest import Daemon, Runner, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlayfs, runc)")

Unique = Callable[[str], str]


@pytest.fixture
def cleanup(docker_cli: Runner) -> Iterator[Callable[[str, str], str]]:
    """cleanup("container"|"volume", name) -> name; removed after the test."""
    made: list[tuple[str, str]] = []

    def add(kind: str, name: str) -> str:
        made.append((kind, name))
        return name

    yield add
    for kind, name in reversed(made):
        if kind == "container":
            docker_cli("rm", "-f", "-v", name, check=False)
    for kind, name in reversed(made):
        if kind == "volume":
            docker_cli("volume", "rm", "-f", name, check=False)


def _volume_dir(daemon: Daemon, name: str) -> Path:
    return daemon.data_root / "volumes" / name


def _mounted_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


def test_data_persists_across_container_removal(
    docker_cli: Runner, busybox: str, unique: Unique, cleanup
) -> None:
    vol = cleanup("volume", unique("db"))
    assert docker_cli("volume", "create", vol).stdout.strip() == vol
    docker_cli("run", "--rm", "-v", f"{vol}:/data", busybox, "sh", "-c", "echo persisted > /data/f")
    out = docker_cli("run", "--rm", "-v", f"{vol}:/data", busybox, "cat", "/data/f").stdout
    assert out == "persisted\n"
    info = json.loads(docker_cli("volume", "inspect", vol).stdout)[0]
    assert info["Name"] == vol and info["Driver"] == "local" and info["Scope"] == "local"
    assert info["Mountpoint"].endswith(f"/volumes/{vol}/_data")
    assert Path(info["Mountpoint"], "f").read_text() == "persisted\n"


def test_two_containers_share_a_volume(
    docker_py: docker.DockerClient, busybox: str, unique: Unique, cleanup
) -> None:
    vol = docker_py.volumes.create(cleanup("volume", unique("shared")), labels={"team": "a"})
    assert vol.attrs["Labels"] == {"team": "a"}
    writer = docker_py.containers.run(
        busybox, ["sh", "-c", "echo from-writer > /shared/msg; sleep 100"], detach=True,
        name=cleanup("container", unique("writer")), volumes={vol.name: {"bind": "/shared", "mode": "rw"}},
    )  # fmt: skip
    writer.reload()
    mounts = writer.attrs["Mounts"]
    assert [(m["Type"], m["Name"], m["Destination"], m["RW"]) for m in mounts] == [
        ("volume", vol.name, "/shared", True)
    ]
    out = b""
    for _ in range(50):
        out = docker_py.containers.run(
            busybox, ["sh", "-c", "cat /shared/msg 2>/dev/null || true"], remove=True,
            volumes={vol.name: {"bind": "/shared", "mode": "ro"}},
        )  # fmt: skip
        if out:
            break
    assert out == b"from-writer\n"
    # in use: 409 with the user's id, through docker-py and the docker CLI
    with pytest.raises(docker.errors.APIError) as err:
        vol.remove()
    assert err.value.status_code == 409
    assert f"volume is in use - [{writer.id}]" in str(err.value)
    assert [v.name for v in docker_py.volumes.list(filters={"dangling": False}) if v.name == vol.name] == [
        vol.name
    ]
    assert vol.name not in [v.name for v in docker_py.volumes.list(filters={"dangling": True})]
    assert [v.name for v in docker_py.volumes.list(filters={"label": "team=a"})] == [vol.name]
    writer.remove(force=True)
    vol.remove()
    with pytest.raises(docker.errors.NotFound):
        docker_py.volumes.get(vol.name)


def test_rm_in_use_volume_is_409_via_cli(docker_cli: Runner, busybox: str, unique: Unique, cleanup) -> None:
    vol = cleanup("volume", unique("busy"))
    c = cleanup("container", unique("user"))
    docker_cli("create", "--name", c, "-v", f"{vol}:/d", busybox, "true")  # created, never started
    res = docker_cli("volume", "rm", vol, check=False)
    assert res.returncode == 1
    assert f"Error response from daemon: remove {vol}: volume is in use - [" in res.stderr
    res = docker_cli("volume", "rm", "-f", vol, check=False)  # force does not override "in use"
    assert res.returncode == 1
    res = docker_cli("volume", "rm", "no-such-volume", check=False)
    assert "no such volume" in res.stderr and res.returncode == 1
    assert docker_cli("volume", "rm", "-f", "no-such-volume", check=False).returncode == 0


def test_copy_up_from_image_folder(
    docker_cli: Runner, daemon: Daemon, busybox: str, unique: Unique, cleanup
) -> None:
    vol = cleanup("volume", unique("etc"))
    out = docker_cli("run", "--rm", "-v", f"{vol}:/etc", busybox, "cat", "/etc/passwd").stdout
    assert out.startswith("root:x:0:0:")
    data = _volume_dir(daemon, vol) / "_data"
    assert (data / "passwd").read_text().startswith("root:x:0:0:") and (data / "group").exists()
    # a volume that already has content is not overwritten
    (data / "passwd").write_text("mine\n")
    out = docker_cli("run", "--rm", "-v", f"{vol}:/etc", busybox, "cat", "/etc/passwd").stdout
    assert out == "mine\n"
    # nocopy: the new volume stays empty
    empty = cleanup("volume", unique("nocopy"))
    out = docker_cli(
        "run", "--rm", "--mount", f"type=volume,source={empty},target=/etc,volume-nocopy", busybox, "ls", "-A", "/etc"
    ).stdout  # fmt: skip
    assert "passwd" not in out and "group" not in out
    # an image path that is a file-less directory leaves the volume empty too, and anonymous works
    c = cleanup("container", unique("anon"))
    docker_cli("run", "--name", c, "-v", "/bin", busybox, "/bin/true")
    (m,) = json.loads(docker_cli("inspect", c).stdout)[0]["Mounts"]
    assert m["Type"] == "volume" and len(m["Name"]) == 64 and (Path(m["Source"]) / "busybox").exists()


def test_volumes_from_ro_and_rw(
    daemon: Daemon, docker_cli: Runner, busybox: str, unique: Unique, cleanup
) -> None:
    src = cleanup("container", unique("src"))
    docker_cli("run", "--name", src, "-v", "/data", busybox, "sh", "-c", "echo one > /data/f")
    out = docker_cli(
        "run", "--rm", "--volumes-from", src, busybox, "sh", "-c", "cat /data/f; echo two >> /data/f"
    )
    assert out.stdout == "one\n"
    res = docker_cli("run", "--rm", "--volumes-from", f"{src}:ro", busybox, "sh", "-c", "cat /data/f; echo x > /data/g",
                     check=False)  # fmt: skip
    assert res.stdout == "one\ntwo\n"
    assert res.returncode != 0 and "Read-only file system" in res.stderr
    # 404 like dockerd (which makes the docker CLI try a pull), so ask through docker-py
    api = docker.APIClient(base_url=daemon.host, version="1.47")
    with pytest.raises(docker.errors.NotFound, match="No such container: no-such-ctr"):
        api.create_container(
            busybox, ["true"], host_config=api.create_host_config(volumes_from=["no-such-ctr"])
        )


def test_ro_mounts_refuse_writes_and_v_creates_missing_bind_source(
    docker_cli: Runner, busybox: str, unique: Unique, cleanup
) -> None:
    vol = cleanup("volume", unique("ro"))
    res = docker_cli("run", "--rm", "-v", f"{vol}:/d:ro", busybox, "touch", "/d/x", check=False)
    assert res.returncode != 0 and "Read-only file system" in res.stderr
    with tempfile.TemporaryDirectory(prefix="dy-vol-") as tmp:
        host = Path(tmp)
        (host / "in").write_text("host file\n")
        res = docker_cli("run", "--rm", "--mount", f"type=bind,source={host},target=/h,readonly", busybox,
                         "sh", "-c", "cat /h/in; echo x > /h/out", check=False)  # fmt: skip
        assert res.stdout == "host file\n" and "Read-only file system" in res.stderr
        assert not (host / "out").exists()
        docker_cli("run", "--rm", "-v", f"{host}:/h", busybox, "sh", "-c", "echo x > /h/out")
        assert (host / "out").read_text() == "x\n"
        # -v creates a missing host path; --mount refuses it
        missing = host / "made" / "by-v"
        docker_cli("run", "--rm", "-v", f"{missing}:/m", busybox, "true")
        assert missing.is_dir()
        res = docker_cli("run", "--rm", "--mount", f"type=bind,source={host}/nope,target=/m", busybox, "true",
                         check=False)  # fmt: skip
        assert res.returncode == 125
        assert (
            f'invalid mount config for type "bind": bind source path does not exist: {host}/nope'
            in res.stderr
        )


def test_tmpfs_in_memory_and_empty_after_restart(
    docker_cli: Runner, busybox: str, unique: Unique, cleanup
) -> None:
    c = cleanup("container", unique("tmpfs"))
    docker_cli("run", "-d", "--name", c, "--tmpfs", "/scratch:size=2m",
               "--mount", "type=tmpfs,target=/t2,tmpfs-size=1m,tmpfs-mode=1770", busybox, "sleep", "1000")  # fmt: skip
    mounts = docker_cli("exec", c, "cat", "/proc/mounts").stdout.splitlines()
    scratch = [line for line in mounts if line.split()[1] == "/scratch"]
    t2 = [line for line in mounts if line.split()[1] == "/t2"]
    assert scratch and scratch[0].split()[2] == "tmpfs" and "size=2048k" in scratch[0]
    assert t2 and t2[0].split()[2] == "tmpfs" and "size=1024k" in t2[0] and "mode=1770" in t2[0]
    docker_cli("exec", c, "sh", "-c", "echo gone > /scratch/f; echo gone > /t2/f")
    docker_cli("restart", "-t", "0", c)
    out = docker_cli("exec", c, "sh", "-c", "ls -A /scratch /t2").stdout
    assert "f" not in out.split()
    (m,) = json.loads(docker_cli("inspect", c).stdout)[0]["Mounts"]
    assert m == {
        "Type": "tmpfs",
        "Source": "",
        "Destination": "/t2",
        "Mode": "",
        "RW": True,
        "Propagation": "",
    }


def test_tmpfs_driver_volume_is_mounted_at_first_use(
    docker_cli: Runner, daemon: Daemon, busybox: str, unique: Unique, cleanup
) -> None:
    vol = cleanup("volume", unique("mem"))
    docker_cli(
        "volume", "create", "-d", "local", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=1m", vol
    )
    data = _volume_dir(daemon, vol) / "_data"
    assert _mounted_under(data) == []
    c = cleanup("container", unique("memuser"))
    docker_cli("run", "-d", "--name", c, "-v", f"{vol}:/m", busybox, "sleep", "1000")
    assert _mounted_under(data) == [str(data)]
    line = [
        ln for ln in docker_cli("exec", c, "cat", "/proc/mounts").stdout.splitlines() if ln.split()[1] == "/m"
    ]
    assert line and line[0].split()[2] == "tmpfs"
    docker_cli("stop", "-t", "0", c)
    assert _mounted_under(data) == []
    assert json.loads(docker_cli("volume", "inspect", vol).stdout)[0]["Options"] == {
        "type": "tmpfs",
        "device": "tmpfs",
        "o": "size=1m",
    }


def test_rm_v_removes_anonymous_volumes_only(
    docker_cli: Runner, daemon: Daemon, busybox: str, unique: Unique, cleanup
) -> None:
    named = cleanup("volume", unique("keep"))
    c = unique("rmv")
    docker_cli(
        "run", "--name", c, "-v", "/anon", "-v", f"{named}:/named", busybox, "sh", "-c", "echo x > /anon/f"
    )
    mounts = {m["Destination"]: m for m in json.loads(docker_cli("inspect", c).stdout)[0]["Mounts"]}
    anon = mounts["/anon"]["Name"]
    assert json.loads(docker_cli("volume", "inspect", anon).stdout)[0]["Labels"] == {
        "com.docker.volume.anonymous": ""
    }
    docker_cli("rm", "-v", c)
    names = docker_cli("volume", "ls", "-q").stdout.split()
    assert named in names and anon not in names
    assert not _volume_dir(daemon, anon).exists()
    assert _volume_dir(daemon, named).exists()
    # without -v the anonymous volume stays (Docker's behaviour); prune takes it
    c2 = unique("rmnov")
    docker_cli("create", "--name", c2, "-v", "/anon", busybox, "true")
    anon2 = json.loads(docker_cli("inspect", c2).stdout)[0]["Mounts"][0]["Name"]
    docker_cli("rm", c2)
    assert anon2 in docker_cli("volume", "ls", "-q").stdout.split()
    out = docker_cli("volume", "prune", "-f").stdout
    assert anon2 in out and named not in out
    assert not _volume_dir(daemon, anon2).exists()


def test_bad_mount_specs_make_nothing(docker_cli: Runner, busybox: str, unique: Unique) -> None:
    before_c = docker_cli("ps", "-aq").stdout.split()
    before_v = docker_cli("volume", "ls", "-q").stdout.split()
    fresh = unique("never")
    for args, msg in [
        (["-v", f"{fresh}:/x", "-v", "/tmp:/x"], "Duplicate mount point: /x"),
        (["-v", f"{fresh}:rel"], "mount path must be absolute"),
        (["--mount", "type=volume,target=rel"], "mount path must be absolute"),
        (["--mount", f"type=volume,source={fresh},target=/x", "--tmpfs", "/x"], "Duplicate mount point: /x"),
        (["-v", "/x:/y:bogus"], "invalid mode: bogus"),
        (["-v", "_x:/x"], '"_x" includes invalid characters for a local volume name'),
    ]:
        res = docker_cli("create", *args, busybox, "true", check=False)
        assert res.returncode != 0, res
        assert msg in res.stderr, (args, res.stderr)
    assert docker_cli("ps", "-aq").stdout.split() == before_c
    assert docker_cli("volume", "ls", "-q").stdout.split() == before_v


def test_volume_survives_daemon_kill9(
    daemon: Daemon, docker_cli: Runner, busybox: str, unique: Unique, cleanup
) -> None:
    vol = cleanup("volume", unique("durable"))
    c = cleanup("container", unique("killed"))
    docker_cli("run", "-d", "--name", c, "-v", f"{vol}:/d", busybox, "sh", "-c",
               "dd if=/dev/urandom of=/d/blob bs=64k count=16 2>/dev/null; sync; md5sum /d/blob > /d/sum; sleep 1000")  # fmt: skip
    wait_for(lambda: docker_cli("exec", c, "test", "-s", "/d/sum", check=False).returncode == 0, what="the sum")
    daemon.stop(signal.SIGKILL)
    daemon.start()
    assert vol in docker_cli("volume", "ls", "-q").stdout.split()
    docker_cli("rm", "-f", c)
    out = docker_cli("run", "--rm", "-v", f"{vol}:/d", busybox, "md5sum", "-c", "/d/sum").stdout
    assert "/d/blob: OK" in out


def test_system_df_sizes_against_du(
    daemon: Daemon,
    docker_cli: Runner,
    dockyard_cli: Runner,
    docker_py: docker.DockerClient,
    busybox: str,
    unique: Unique,
    cleanup,
) -> None:
    vol = cleanup("volume", unique("sized"))
    docker_cli("run", "--rm", "-v", f"{vol}:/d", busybox, "sh", "-c",
               "dd if=/dev/zero of=/d/a bs=1000 count=300 2>/dev/null; mkdir /d/sub; echo hello > /d/sub/b; "
               "ln /d/a /d/hard")  # fmt: skip
    data = _volume_dir(daemon, vol) / "_data"
    files = subprocess.run(
        ["find", str(data), "-type", "f"], capture_output=True, text=True, check=True
    ).stdout.split()
    du = subprocess.run(["du", "-b", "-c", *files], capture_output=True, text=True, check=True).stdout
    expected = int(du.splitlines()[-1].split()[0])  # du counts the hard-linked file once, as Docker does
    assert expected == 300_000 + 6
    df = docker_py.df()
    (entry,) = [v for v in df["Volumes"] if v["Name"] == vol]
    assert entry["UsageData"] == {"Size": expected, "RefCount": 0}
    verbose = docker_cli("system", "df", "-v").stdout
    (row,) = [line.split() for line in verbose.splitlines() if line.startswith(vol + " ")]
    assert row == [vol, "0", "300kB"]
    assert "Local Volumes" in docker_cli("system", "df").stdout
    ours = dockyard_cli("system", "df", "-v").stdout
    assert "Local Volumes space usage:" in ours
    (row,) = [line.split() for line in ours.splitlines() if line.startswith(vol + " ")]
    assert row == [vol, "0", "300kB"]


def test_prune_and_rm_leave_nothing_on_disk(
    daemon: Daemon, docker_py: docker.DockerClient, busybox: str, unique: Unique
) -> None:
    named = docker_py.volumes.create(unique("pn"))
    anon = docker_py.volumes.create()  # a generated name: moby labels it anonymous, so prune takes it
    assert len(anon.name) == 64
    kept = docker_py.volumes.prune(filters={"label": "nothing=matches"})
    assert kept["VolumesDeleted"] in (None, [])
    res = docker_py.volumes.prune()
    assert named.name not in (res["VolumesDeleted"] or []) and anon.name in (res["VolumesDeleted"] or [])
    res = docker_py.volumes.prune(filters={"all": True})
    assert named.name in set(res["VolumesDeleted"])
    for name in (named.name, anon.name):
        assert not _volume_dir(daemon, name).exists()
    assert _mounted_under(daemon.data_root / "volumes") == []


def test_dockyard_cli(dockyard_cli: Runner, daemon: Daemon, busybox: str, unique: Unique) -> None:
    vol = unique("dy")
    assert dockyard_cli("volume", "create", "--label", "k=v", vol).stdout.strip() == vol
    assert vol in dockyard_cli("volume", "ls", "-q", "--filter", "label=k=v").stdout.split()
    assert (
        dockyard_cli("volume", "inspect", "-f", "{{.Name}} {{.Driver}} {{.Scope}}", vol).stdout
        == f"{vol} local local\n"
    )
    assert (
        dockyard_cli("volume", "ls", "--format", "{{.Name}}\t{{.Labels}}", "-f", f"name={vol}").stdout
        == f"{vol}\tk=v\n"
    )
    c = unique("dyrun")
    dockyard_cli("run", "--name", c, "-v", f"{vol}:/v", "--tmpfs", "/t", "--mount", "type=volume,target=/anon",
                 busybox, "sh", "-c", "echo dy > /v/f; grep -q ' /t tmpfs ' /proc/mounts")  # fmt: skip
    c2 = unique("dyfrom")
    out = dockyard_cli(
        "run", "--rm", "--name", c2, "--volumes-from", f"{c}:ro", busybox, "cat", "/v/f"
    ).stdout
    assert out == "dy\n"
    res = dockyard_cli("volume", "rm", vol, check=False)
    assert res.returncode == 1 and "volume is in use" in res.stderr
    dockyard_cli("rm", "-v", c)
    assert dockyard_cli("volume", "rm", vol).stdout.strip() == vol
    assert not _volume_dir(daemon, vol).exists()
    out = dockyard_cli("volume", "prune", "-f").stdout
    assert "Total reclaimed space:" in out
