"""Container file-system and process views through real clients: docker cp / export / diff /
top / stats, and docker-py's get_archive / put_archive / stats / top.

Each test removes the containers and host files it made, and checks that a stopped
container's root is not left mounted.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from tests.conftest import Daemon, Runner, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlayfs, runc)")

# This sandbox caps RLIMIT_NOFILE below the engine's default for containers; these tests
# are about file-system and process views, not rlimits.
ULIMIT = ("--ulimit", "nofile=1024:1024")

Make = Callable[..., str]


@pytest.fixture
def make(docker_cli: Runner, busybox: str, unique: Callable[[str], str]) -> Iterator[Make]:
    """make("run", "-d", ..., cmd...) or make("create", ...): a named busybox container."""
    made: list[str] = []

    def create(verb: str, *args: str, cmd: tuple[str, ...] = ("sleep", "1000")) -> str:
        name = unique("fs")
        made.append(name)
        docker_cli(verb, *(["-d"] if verb == "run" else []), *ULIMIT, "--name", name, *args, busybox, *cmd)
        return name

    yield create
    for name in made:
        docker_cli("rm", "-f", name, check=False)


@pytest.fixture
def host_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dy-fs-") as d:
        yield Path(d)


def _mounted(daemon: Daemon, cid: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(cid in line.split()[4] and str(daemon.root) in line.split()[4] for line in f)


def _full_id(docker_py: docker.DockerClient, name: str) -> str:
    return str(docker_py.api.inspect_container(name)["Id"])


# ---- docker cp ----------------------------------------------------------------------------


def test_cp_file_and_directory_both_ways(docker_cli: Runner, make: Make, host_dir: Path) -> None:
    name = make("run")
    (host_dir / "one.txt").write_text("first\n")
    tree = host_dir / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a").write_text("A")
    (tree / "sub" / "b").write_text("B")
    docker_cli("cp", str(host_dir / "one.txt"), f"{name}:/tmp/")
    docker_cli("cp", str(tree), f"{name}:/tmp/tree")  # /tmp/tree does not exist yet: becomes the copy
    docker_cli("cp", str(tree), f"{name}:/tmp/tree")  # now it does: copied inside it
    out = host_dir / "out"
    out.mkdir()
    docker_cli("cp", f"{name}:/tmp/one.txt", str(out / "back.txt"))
    assert (out / "back.txt").read_text() == "first\n"
    docker_cli("cp", f"{name}:/tmp/tree", str(out))
    assert (out / "tree" / "a").read_text() == "A"
    assert (out / "tree" / "sub" / "b").read_text() == "B"
    assert (out / "tree" / "tree" / "sub" / "b").read_text() == "B"
    docker_cli("cp", f"{name}:/tmp/tree/.", str(out / "flat"))
    assert sorted(p.name for p in (out / "flat").iterdir()) == ["a", "sub", "tree"]


def test_cp_to_stdout_is_a_tar(docker_cli: Runner, daemon: Daemon, make: Make) -> None:
    name = make("create")
    res = subprocess.run(["docker", "cp", f"{name}:/etc/passwd", "-"], capture_output=True, check=True,
                         env={**os.environ, "DOCKER_HOST": daemon.host})  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(res.stdout)) as tf:
        member = tf.getmember("passwd")
        assert tf.extractfile(member).read().startswith(b"root:x:0:0")  # type: ignore[union-attr]


def test_cp_through_absolute_symlink_stays_in_container(
    docker_cli: Runner, docker_py: docker.DockerClient, daemon: Daemon, make: Make, host_dir: Path,
    unique: Callable[[str], str],
) -> None:  # fmt: skip
    marker = unique("marker")
    assert not Path("/etc", marker).exists()
    name = make("run", cmd=("sh", "-c", "ln -s /etc /data && ln -s /etc/passwd /pw && sleep 1000"))
    wait_for(lambda: docker_cli("cp", f"{name}:/data", "-", check=False).returncode == 0, what="the symlink")
    (host_dir / marker).write_text("inside\n")
    docker_cli("cp", str(host_dir / marker), f"{name}:/data/")
    try:
        assert not Path("/etc", marker).exists(), "wrote into the host's /etc"
        out = host_dir / "out"
        out.mkdir()
        docker_cli("cp", f"{name}:/etc/{marker}", str(out))
        assert (out / marker).read_text() == "inside\n"
        # without -L the link itself comes back; with -L its target in the container
        docker_cli("cp", f"{name}:/pw", str(out / "link"))
        assert os.readlink(out / "link") == "/etc/passwd"
        docker_cli("cp", "-L", f"{name}:/pw", str(out / "followed"))
        assert (out / "followed").read_text().startswith("root:x:0:0")
        stat = docker_py.api.get_archive(name, "/data")[1]
        assert stat["linkTarget"] == "/etc" and stat["mode"] & (1 << 27)
    finally:
        Path("/etc", marker).unlink(missing_ok=True)


def test_cp_read_only_container(docker_cli: Runner, make: Make, host_dir: Path) -> None:
    bind = host_dir / "bind"
    bind.mkdir()
    name = make("create", "--read-only", "-v", f"{bind}:/data")
    (host_dir / "f.txt").write_text("x")
    res = docker_cli("cp", str(host_dir / "f.txt"), f"{name}:/tmp/", check=False)
    assert res.returncode != 0
    assert "read-only" in res.stderr
    docker_cli("cp", str(host_dir / "f.txt"), f"{name}:/data/")  # a writable bind mount is fine
    assert (bind / "f.txt").read_text() == "x"


def test_cp_read_only_bind(docker_cli: Runner, make: Make, host_dir: Path) -> None:
    bind = host_dir / "bind"
    bind.mkdir()
    (bind / "seen.txt").write_text("from host")
    name = make("create", "-v", f"{bind}:/data:ro")
    (host_dir / "f.txt").write_text("x")
    res = docker_cli("cp", str(host_dir / "f.txt"), f"{name}:/data/", check=False)
    assert res.returncode != 0 and "read-only" in res.stderr
    assert not (bind / "f.txt").exists()
    docker_cli("cp", f"{name}:/data/seen.txt", str(host_dir / "seen.txt"))  # reads come from the bind source
    assert (host_dir / "seen.txt").read_text() == "from host"


def test_cp_missing_path(docker_cli: Runner, make: Make, host_dir: Path) -> None:
    name = make("create")
    res = docker_cli("cp", f"{name}:/no/such/file", str(host_dir), check=False)
    assert res.returncode != 0
    assert "No such container:path" in res.stderr or "Could not find the file" in res.stderr
    (host_dir / "f").write_text("x")
    res = docker_cli("cp", str(host_dir / "f"), f"{name}:/no/such/dir/", check=False)
    assert res.returncode != 0


def test_cp_on_stopped_container_unmounts_after(
    docker_cli: Runner, docker_py: docker.DockerClient, daemon: Daemon, make: Make, host_dir: Path
) -> None:
    name = make("create")
    cid = _full_id(docker_py, name)
    (host_dir / "f.txt").write_text("stopped")
    docker_cli("cp", str(host_dir / "f.txt"), f"{name}:/root/")
    docker_cli("cp", f"{name}:/root/f.txt", str(host_dir / "g.txt"))
    assert (host_dir / "g.txt").read_text() == "stopped"
    # the CLI may be done with the tar before the daemon has closed the response and unmounted
    wait_for(lambda: not _mounted(daemon, cid), timeout=5, what="the temporary mount to go")


# ---- docker-py archive -----------------------------------------------------------------------


def _tar(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for lname, target in (links or {}).items():
            ti = tarfile.TarInfo(lname)
            ti.type, ti.linkname = tarfile.SYMTYPE, target
            tf.addfile(ti)
        for mname, data in members.items():
            ti = tarfile.TarInfo(mname)
            ti.size = len(data)
            ti.mode = 0o640
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_docker_py_put_and_get_archive(docker_py: docker.DockerClient, make: Make) -> None:
    c = docker_py.containers.get(make("run"))
    assert c.put_archive("/tmp", _tar({"d/x.txt": b"hello", "y.txt": b"why"}))
    stream, stat = c.get_archive("/tmp/d")
    assert stat["name"] == "d" and stat["mode"] & (1 << 31)
    assert set(stat) == {"name", "size", "mode", "mtime", "linkTarget"}
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tf:
        assert tf.extractfile("d/x.txt").read() == b"hello"  # type: ignore[union-attr]
    _, fstat = c.get_archive("/tmp/y.txt")
    assert (fstat["size"], fstat["mode"] & 0o777) == (3, 0o640)
    with pytest.raises(docker.errors.NotFound, match="Could not find the file /nope"):
        c.get_archive("/nope")
    with pytest.raises(docker.errors.APIError) as err:
        c.put_archive("/tmp/y.txt", _tar({"z": b"z"}))
    assert err.value.status_code == 400


def test_put_archive_cannot_escape_the_root(
    docker_py: docker.DockerClient, make: Make, host_dir: Path
) -> None:
    c = docker_py.containers.get(make("create"))
    with pytest.raises(docker.errors.APIError) as err:
        c.put_archive("/root", _tar({"../../../../" + str(host_dir).lstrip("/") + "/escaped": b"x"}))
    assert err.value.status_code == 400
    assert list(host_dir.iterdir()) == []
    # a symlink to a host path, then a member under it: lands in the container's copy of that path
    c.put_archive("/tmp", _tar({"evil/pwned": b"x"}, links={"evil": str(host_dir)}))
    assert list(host_dir.iterdir()) == []
    _, stat = c.get_archive(f"{host_dir}/pwned")
    assert stat["size"] == 1


# ---- export / diff -------------------------------------------------------------------------------


def test_export_streams_the_root(daemon: Daemon, make: Make) -> None:
    name = make("create")
    env = {**os.environ, "DOCKER_HOST": daemon.host}
    export = subprocess.Popen(["docker", "export", name], stdout=subprocess.PIPE, env=env)
    listing = subprocess.run(["tar", "t"], stdin=export.stdout, capture_output=True, text=True, check=True)
    assert export.wait(timeout=60) == 0
    names = listing.stdout.split()
    assert "bin/busybox" in names and "etc/passwd" in names


def test_diff(docker_cli: Runner, docker_py: docker.DockerClient, make: Make, host_dir: Path) -> None:
    name = make("create")
    assert docker_cli("diff", name).stdout == ""  # nothing changed yet
    (host_dir / "new.txt").write_text("n")
    docker_cli("cp", str(host_dir / "new.txt"), f"{name}:/root/")
    out = docker_cli("diff", name).stdout.splitlines()
    assert "C /root" in out and "A /root/new.txt" in out


# ---- top -----------------------------------------------------------------------------------------


def test_top(docker_cli: Runner, docker_py: docker.DockerClient, make: Make) -> None:
    name = make("run", cmd=("sleep", "1234"))
    out = docker_cli("top", name).stdout
    assert out.split("\n")[0].split()[:2] == ["UID", "PID"]
    assert "sleep 1234" in out
    custom = docker_cli("top", name, "-o", "pid,args").stdout
    assert custom.split("\n")[0].split() == ["PID", "COMMAND"]
    body = docker_py.containers.get(name).top()
    assert "CMD" in body["Titles"]
    assert [p[-1] for p in body["Processes"]] == ["sleep 1234"]
    docker_cli("kill", name)
    res = docker_cli("top", name, check=False)
    assert res.returncode != 0 and "is not running" in res.stderr


# ---- stats ----------------------------------------------------------------------------------------


def test_stats_cli_no_stream(docker_cli: Runner, make: Make) -> None:
    name = make("run", "--memory", "64m")
    out = docker_cli("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", name).stdout.strip()
    shown, usage = out.split(" ", 1)
    assert shown == name
    assert usage.endswith("/ 64MiB"), usage


def test_stats_docker_py(docker_py: docker.DockerClient, make: Make) -> None:
    c = docker_py.containers.get(make("run"))
    s = c.stats(stream=False)
    for key in ("read", "preread", "pids_stats", "blkio_stats", "num_procs", "storage_stats", "cpu_stats",
                "precpu_stats", "memory_stats", "name", "id"):  # fmt: skip
        assert key in s, key
    assert s["name"] == c.name if c.name.startswith("/") else s["name"] == "/" + c.name
    assert s["id"] == c.id
    assert s["preread"] != "0001-01-01T00:00:00Z"  # stream=0 waits for a second sample
    assert s["cpu_stats"]["system_cpu_usage"] > s["precpu_stats"]["system_cpu_usage"] > 0
    assert s["cpu_stats"]["online_cpus"] >= 1
    assert s["memory_stats"]["usage"] > 0 and s["memory_stats"]["limit"] > 0
    assert s["pids_stats"]["current"] >= 1
    assert "lo" not in (s.get("networks") or {})
    one = c.stats(stream=False, one_shot=True)
    assert one["preread"] == "0001-01-01T00:00:00Z" and one["memory_stats"]["usage"] > 0

    gen = c.stats(stream=True, decode=True)
    first, second = next(gen), next(gen)
    assert second["preread"] == first["read"]
    assert second["precpu_stats"] == first["cpu_stats"]
    gen.close()


def test_stats_stopped_container(docker_py: docker.DockerClient, docker_cli: Runner, make: Make) -> None:
    name = make("create")
    s = docker_py.containers.get(name).stats(stream=False)
    assert s["read"] == "0001-01-01T00:00:00Z" and s["memory_stats"] == {}
    assert s["cpu_stats"]["cpu_usage"]["total_usage"] == 0
    running = make("run")
    full_id = docker_py.api.inspect_container(running)["Id"]
    started = time.monotonic()
    gen = docker_py.api.stats(running, stream=True, decode=True)
    next(gen)
    docker_cli("kill", running)
    rest = list(gen)  # the stream ends once the container stops
    assert time.monotonic() - started < 30
    assert len(rest) <= 2
    # each one a whole stats object of that container (the last may be its zeroed end)
    assert all(s["id"] == full_id and "cpu_stats" in s and "memory_stats" in s for s in rest), rest


def test_concurrent_cp_from_a_stopped_container(
    docker_cli: Runner, docker_py: docker.DockerClient, daemon: Daemon, make: Make, host_dir: Path
) -> None:
    """Each cp of a stopped container mounts its root filesystem for the request; the last
    one to finish unmounts it, not the first (which would cut the others' walks short)."""
    from concurrent.futures import ThreadPoolExecutor

    name = make("create")
    cid = _full_id(docker_py, name)
    many = host_dir / "many"
    many.mkdir()
    for i in range(1500):
        (many / f"f{i:04d}").write_bytes(os.urandom(2048))
    docker_cli("cp", str(many), f"{name}:/root/")

    def copy_out(i: int) -> int:
        dest = host_dir / f"out{i}"
        dest.mkdir()
        docker_cli("cp", f"{name}:/root/many", str(dest))
        return len(list((dest / "many").iterdir()))

    with ThreadPoolExecutor(6) as pool:
        counts = list(pool.map(copy_out, range(12)))
    assert counts == [1500] * 12
    wait_for(lambda: not _mounted(daemon, cid), timeout=5, what="the temporary mount to go")
