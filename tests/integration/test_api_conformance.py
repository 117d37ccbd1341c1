"""Engine API conformance: the corners that real clients reach, driven by the docker CLI,
docker-py and dockyard, and compared with Debian's real dockerd where Docker's behaviour is
the question (issue 12)."""

from __future__ import annotations

import http.client
import json
import os
import socket
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.conftest import Daemon, RealDocker, Runner

NOT_A_MANAGER = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node '
    "to swarm and try again."
)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


def raw(sock: str | Path, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    conn = _UnixConnection(str(sock))
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        try:
            return resp.status, json.loads(data)
        except ValueError:
            return resp.status, data
    finally:
        conn.close()


# -- 1. every route: swarm-mode and plugin paths answered as dockerd answers ----------------


def test_swarm_leave_is_503_not_part_of_a_swarm(docker_cli: Runner, docker_py: docker.DockerClient) -> None:
    res = docker_cli("swarm", "leave", "--force", check=False)
    assert res.returncode != 0
    assert "This node is not part of a swarm" in res.stderr
    # docker-py's clean-up path: a forced leave is done when the daemon answers 503 (a 404 raised)
    assert docker_py.swarm.leave(force=True) is True
    with pytest.raises(docker.errors.APIError) as err:
        docker_py.api.leave_swarm()
    assert err.value.status_code == 503
    assert err.value.explanation == "This node is not part of a swarm"


def test_swarm_objects_are_503_not_a_manager(docker_cli: Runner, docker_py: docker.DockerClient) -> None:
    for args in (("node", "ls"), ("service", "ls"), ("secret", "ls"), ("config", "ls")):
        res = docker_cli(*args, check=False)
        assert res.returncode != 0, args
        assert "This node is not a swarm manager" in res.stderr, (args, res.stderr)
    for call in (docker_py.nodes.list, docker_py.services.list, docker_py.secrets.list, docker_py.configs.list,
                 docker_py.swarm.reload):  # fmt: skip
        with pytest.raises(docker.errors.APIError) as err:
            call()
        assert err.value.status_code == 503
        assert err.value.explanation == NOT_A_MANAGER


def test_plugins_are_an_empty_set(docker_cli: Runner, docker_py: docker.DockerClient) -> None:
    assert docker_cli("plugin", "ls", "-q").stdout.strip() == ""
    assert docker_py.plugins.list() == []
    with pytest.raises(docker.errors.NotFound) as err:
        docker_py.plugins.get("nosuch")
    assert err.value.explanation == 'plugin "nosuch" not found'
    res = docker_cli("plugin", "rm", "nosuch", check=False)
    assert res.returncode != 0 and 'plugin "nosuch" not found' in res.stderr


# The requests compared with dockerd: (method, path, body). Its API is 1.41, so no 1.42+ path.
_COMPARED = [
    ("GET", "/swarm", None),
    ("POST", "/swarm/leave?force=1", None),
    ("POST", "/swarm/update?version=1", b"{}"),
    ("GET", "/swarm/unlockkey", None),
    ("POST", "/swarm/unlock", b'{"UnlockKey":"x"}'),
    ("GET", "/nodes", None),
    ("GET", "/nodes/x", None),
    ("DELETE", "/nodes/x", None),
    ("GET", "/services", None),
    ("POST", "/services/create", b"{}"),
    ("GET", "/services/x/logs?stdout=1", None),
    ("GET", "/tasks", None),
    ("GET", "/tasks/x", None),
    ("GET", "/secrets", None),
    ("DELETE", "/secrets/x", None),
    ("GET", "/configs", None),
    ("POST", "/configs/x/update?version=1", b"{}"),
    ("GET", "/plugins", None),
    ("GET", "/plugins/foo/json", None),
    ("DELETE", "/plugins/foo", None),
    ("POST", "/plugins/foo/disable", None),
    ("POST", "/plugins/foo/set", b"[]"),
    ("POST", "/plugins/foo/upgrade?remote=localhost:1/foo", b"[]"),
    ("POST", "/session", None),
    ("GET", "/v1.41/swarm", None),
]


def test_unavailable_features_answer_as_dockerd(daemon: Daemon, real_docker: RealDocker) -> None:
    for method, path, body in _COMPARED:
        ours = raw(daemon.socket, method, path, body)
        theirs = raw(real_docker.socket, method, path, body)
        assert ours == theirs, (method, path)


# -- 2. small behaviour differences -------------------------------------------------------


def test_commit_with_pause_of_a_stopped_container(docker_py: docker.DockerClient, busybox: str) -> None:
    c = docker_py.containers.create(busybox, ["sh", "-c", "echo hi > /made"])
    try:
        img = c.commit(pause=True)  # created, never started
        docker_py.images.remove(img.id)
        c.start()
        c.wait(timeout=30)
        img = c.commit(pause=True)  # exited
        assert docker_py.containers.run(img.id, ["cat", "/made"], remove=True) == b"hi\n"
        docker_py.images.remove(img.id)
    finally:
        c.remove(force=True)
    # docker-py's own test: start a short command and commit at once, its exit not yet recorded
    for _ in range(5):
        cid = docker_py.api.create_container(busybox, ["touch", "/made"])["Id"]
        try:
            docker_py.api.start(cid)
            img_id = docker_py.api.commit(cid, changes=["EXPOSE 8000"])["Id"]
            docker_py.api.remove_image(img_id, force=True)
        finally:
            docker_py.api.remove_container(cid, force=True)


def test_broken_tarball_to_load_is_an_error_inside_the_stream(daemon: Daemon, docker_py: docker.DockerClient,
                                                              docker_cli: Runner) -> None:  # fmt: skip
    with pytest.raises(docker.errors.ImageLoadError):
        docker_py.images.load(b"this is not a tarball")
    status, _ = raw(daemon.socket, "POST", "/images/load", b"garbage")
    assert status == 200
    res = docker_cli("load", input="garbage", check=False)
    assert res.returncode != 0 and res.stderr.strip()


def test_streamed_logs_come_one_frame_per_line(docker_py: docker.DockerClient, busybox: str) -> None:
    from tests.conftest import wait_for

    c = docker_py.containers.run(
        busybox, ["sh", "-c", "printf 'a\\nb\\nc\\n'; echo d >&2; sleep 30"], detach=True
    )
    try:
        wait_for(lambda: c.logs().count(b"\n") >= 4, what="four lines logged")
        stream = c.logs(stream=True, follow=True)
        frames = [next(stream) for _ in range(4)]
        assert frames == [b"a\n", b"b\n", b"c\n", b"d\n"]
        stream.close()
    finally:
        c.remove(force=True)


def test_unnamed_api_volume_is_anonymous_for_prune(docker_py: docker.DockerClient, unique: Any) -> None:
    anon = docker_py.volumes.create()  # POST /volumes/create without a Name
    named = docker_py.volumes.create(unique("named"))
    try:
        pruned = docker_py.volumes.prune()["VolumesDeleted"] or []
        assert anon.name in pruned
        assert named.name not in pruned
    finally:
        named.remove()
        if anon.name in [v.name for v in docker_py.volumes.list()]:
            anon.remove()


def test_console_size_at_create_applies_at_start(
    daemon: Daemon, docker_py: docker.DockerClient, busybox: str
) -> None:
    body = {"Image": busybox, "Cmd": ["stty", "size"], "Tty": True, "HostConfig": {"ConsoleSize": [31, 97]}}
    status, created = raw(daemon.socket, "POST", "/containers/create", json.dumps(body).encode())
    assert status == 201, created
    c = docker_py.containers.get(created["Id"])
    try:
        c.start()
        c.wait(timeout=30)
        assert c.logs().strip() == b"31 97"
    finally:
        c.remove(force=True)


def test_info_logging_driver_is_among_its_log_plugins(docker_py: docker.DockerClient) -> None:
    info = docker_py.info()
    assert info["LoggingDriver"] in info["Plugins"]["Log"]


def test_bridge_none_disables_the_default_bridge(busybox: str, docker_cli: Runner) -> None:
    from tests.conftest import destroy_daemon, import_busybox, make_daemon

    had_none = Path("/sys/class/net/none").exists()  # another engine's; not ours to judge
    d = make_daemon(("--bridge", "none"))
    try:
        client = docker.DockerClient(base_url=d.host, version="auto", timeout=60)
        assert (not had_none and not Path("/sys/class/net/none").exists()) or had_none
        names = {n.name for n in client.networks.list()}
        assert "bridge" not in names and {"host", "none"} <= names
        import_busybox(d.host)
        out = client.containers.run(busybox, ["ls", "/sys/class/net"], remove=True)
        assert out.split() == [b"lo"]  # loopback only, as dockerd's containers with no bridge
        client.close()
    finally:
        destroy_daemon(d)


def _image_rows(sock: Path, query: str, only: set[str] | None = None) -> list[tuple[Any, ...]]:
    """The listing's rows, reduced to what the comparison looks at; `only`: these image ids
    (other tests' images share the session daemons)."""
    status, out = raw(sock, "GET", f"/v1.41/images/json{query}")
    assert status == 200, (query, out)
    rows = []
    for s in out:
        if only is not None and s["Id"] not in only:
            continue
        rows.append((
            tuple(sorted(s["RepoTags"] or [])), len(s["RepoDigests"] or []), s["Containers"], s["SharedSize"],
            tuple(sorted((s["Labels"] or {}).items())), bool(s["ParentId"]), tuple(sorted(s)),
        ))  # fmt: skip
    return sorted(rows)


def test_image_list_counts_and_filters_as_dockerd(daemon: Daemon, real_docker: RealDocker, docker_cli: Runner,
                                                  busybox: str, tmp_path: Path, unique: Any) -> None:  # fmt: skip
    from urllib.parse import quote

    repo = unique("imgcmp")
    tar = tmp_path / "busybox.tar"
    docker_cli("save", "-o", str(tar), busybox)
    engines = [(daemon.socket, docker_cli), (real_docker.socket, real_docker.cli)]
    made: dict[Path, set[str]] = {}  # the images this test committed (busybox is shared)
    shown: dict[Path, set[str]] = {}
    for sock, cli in engines:
        cli("load", "-i", str(tar))
        cli("tag", busybox, f"{repo}-a:1")
        cli("tag", busybox, f"{repo}-a:2")
        cli("tag", busybox, f"{repo}-b:1")
        cli("create", "--name", f"{repo}-c", busybox, "true")
        labelled = cli("commit", "--change", "LABEL x=y", f"{repo}-c", f"{repo}-lab:1").stdout.strip()
        dangling = cli("commit", f"{repo}-c").stdout.strip()  # a dangling image: no tag
        base = cli("image", "inspect", "-f", "{{.Id}}", busybox).stdout.strip()
        made[sock] = {labelled, dangling}
        shown[sock] = {base, labelled, dangling}
    ours_only, theirs_only = shown[daemon.socket], shown[real_docker.socket]
    try:
        for query in ("", "?all=1", "?all=1&digests=1"):
            assert _image_rows(daemon.socket, query, ours_only) == _image_rows(real_docker.socket, query, theirs_only), (
                query)
        for filters in ({"dangling": ["true"]}, {"dangling": ["false"]}, {"reference": [f"{repo}-a"]},
                        {"reference": [f"{repo}-a:1"]}, {"reference": [f"{repo}-*"]}, {"label": ["x"]},
                        {"label": ["x=y"]}, {"label": ["x=z"]}, {"reference": [f"{repo}-a:*", f"{repo}-b"]},
                        {"before": [f"{repo}-lab:1"]}, {"since": [busybox]}):  # fmt: skip
            q = "?filters=" + quote(json.dumps(filters))
            assert _image_rows(daemon.socket, q, ours_only) == _image_rows(real_docker.socket, q, theirs_only), filters
        ours, theirs = (
            raw(daemon.socket, "GET", "/v1.41/info")[1],
            raw(real_docker.socket, "GET", "/v1.41/info")[1],
        )
        assert ours["Images"] - len(_image_rows(daemon.socket, "?all=1")) == \
            theirs["Images"] - len(_image_rows(real_docker.socket, "?all=1"))  # fmt: skip
    finally:
        for sock, cli in engines:  # only what this test made: the session daemons are shared
            cli("rm", "-f", f"{repo}-c", check=False)
            cli("rmi", "-f", f"{repo}-a:1", f"{repo}-a:2", f"{repo}-b:1", f"{repo}-lab:1", check=False)
            if made.get(sock):
                cli("rmi", *made[sock], check=False)


# -- 3. legacy links ----------------------------------------------------------------------


def test_link_sets_env_and_hosts_and_rm_link_removes_it(docker_cli: Runner, docker_py: docker.DockerClient,
                                                        busybox: str, unique: Any) -> None:  # fmt: skip
    db, web = unique("db"), unique("web")
    docker_cli("run", "-d", "--name", db, "--expose", "5432", "-e", "SECRET=s1", busybox, "sleep", "60")
    try:
        db_ip = docker_py.containers.get(db).attrs["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        docker_cli(
            "create", "--name", web, "--link", f"{db}:my-db", busybox, "sh", "-c", "env; cat /etc/hosts"
        )
        assert docker_py.containers.get(web).attrs["HostConfig"]["Links"] == [f"/{db}:/{web}/my-db"]
        docker_cli("start", "-a", web)
        out = docker_cli("logs", web).stdout
        assert f"MY_DB_NAME=/{web}/my-db" in out
        assert f"MY_DB_PORT=tcp://{db_ip}:5432" in out
        assert f"MY_DB_PORT_5432_TCP=tcp://{db_ip}:5432" in out
        assert f"MY_DB_PORT_5432_TCP_ADDR={db_ip}" in out
        assert "MY_DB_PORT_5432_TCP_PORT=5432" in out and "MY_DB_PORT_5432_TCP_PROTO=tcp" in out
        assert "MY_DB_ENV_SECRET=s1" in out
        hosts = [line.split() for line in out.splitlines() if line.startswith(db_ip)]
        assert hosts and "my-db" in hosts[0] and db in hosts[0]
        # docker rm --link: DELETE /containers//web/my-db?link=1
        docker_cli("rm", "--link", f"/{web}/my-db")
        assert not docker_py.containers.get(web).attrs["HostConfig"]["Links"]
        docker_py.api.remove_container(web, link=False, force=True)
        with pytest.raises(docker.errors.APIError) as err:  # a name without a slash is no link
            docker_py.api.remove_container(db, link=True)
        assert err.value.status_code == 409
    finally:
        docker_cli("rm", "-f", web, db, check=False)


def test_link_to_a_missing_container_is_400(docker_cli: Runner, busybox: str, unique: Any) -> None:
    res = docker_cli("create", "--link", "nosuch-ctr:x", busybox, "true", check=False)
    assert res.returncode != 0 and "could not get container for nosuch-ctr" in res.stderr


# -- 4. fields ----------------------------------------------------------------------------


def test_mac_address_on_create_and_per_endpoint(daemon: Daemon, docker_cli: Runner, docker_py: docker.DockerClient,
                                                busybox: str, unique: Any) -> None:  # fmt: skip
    out = docker_cli(
        "run", "--rm", "--mac-address", "02:42:ac:11:ff:01", busybox, "cat", "/sys/class/net/eth0/address"
    )
    assert out.stdout.strip() == "02:42:ac:11:ff:01"
    # API 1.43's container-wide Config.MacAddress lands on the main network's endpoint
    body = {
        "Image": busybox,
        "Cmd": ["cat", "/sys/class/net/eth0/address"],
        "MacAddress": "02:42:ac:11:ff:02",
    }
    status, created = raw(daemon.socket, "POST", "/v1.43/containers/create", json.dumps(body).encode())
    assert status == 201, created
    c = docker_py.containers.get(created["Id"])
    try:
        c.start()
        c.wait(timeout=30)
        assert c.logs().strip() == b"02:42:ac:11:ff:02"
        assert c.attrs["NetworkSettings"]["Networks"]["bridge"]["MacAddress"] == "02:42:ac:11:ff:02"
    finally:
        c.remove(force=True)
    body = {"Image": busybox, "MacAddress": "not-a-mac"}  # the CLI checks it first; the API must too
    status, err = raw(daemon.socket, "POST", "/v1.43/containers/create", json.dumps(body).encode())
    assert status == 400 and err["message"] == "invalid MAC address not-a-mac"
    body = {"Image": busybox, "MacAddress": "02:42:ac:11:ff:03", "HostConfig": {"NetworkMode": "host"}}
    status, err = raw(daemon.socket, "POST", "/v1.43/containers/create", json.dumps(body).encode())
    assert status == 400 and err["message"] == "conflicting options: mac-address and the network mode"


def test_group_add_ids_and_names(docker_cli: Runner, busybox: str) -> None:
    out = docker_cli("run", "--rm", "--user", "1000:1000", "--group-add", "4321", "--group-add", "nogroup", busybox,
                     "id", "-G").stdout.split()  # fmt: skip
    assert out == ["1000", "4321", "65534"]  # nogroup is 65534 in the test image's /etc/group
    res = docker_cli("run", "--rm", "--group-add", "nosuchgroup", busybox, "true", check=False)
    assert res.returncode != 0 and "unable to find group nosuchgroup" in res.stderr


def test_endpoint_driver_opts_and_link_local_ips(docker_cli: Runner, docker_py: docker.DockerClient, busybox: str,
                                                 unique: Any) -> None:  # fmt: skip
    net, name = unique("llnet"), unique("ll")
    docker_cli("network", "create", net)
    try:
        docker_cli("create", "--name", name, "--network", net, "--link-local-ip", "169.254.7.7", busybox,
                   "sleep", "60")  # fmt: skip
        docker_cli("network", "connect", "--driver-opt", "com.example.opt=1", "bridge", name)
        docker_cli("start", name)
        addrs = docker_cli("exec", name, "ip", "-o", "addr").stdout
        assert "169.254.7.7/16" in addrs
        nets = docker_py.containers.get(name).attrs["NetworkSettings"]["Networks"]
        assert nets[net]["IPAMConfig"]["LinkLocalIPs"] == ["169.254.7.7"]
        assert nets["bridge"]["DriverOpts"] == {"com.example.opt": "1"}
        res = docker_cli(
            "create", "--network", net, "--link-local-ip", "10.1.2.3", busybox, "true", check=False
        )
        assert res.returncode != 0 and "invalid link-local IP address" in res.stderr
    finally:
        docker_cli("rm", "-f", name, check=False)
        docker_cli("network", "rm", net, check=False)


def test_exec_detach_keys(docker_py: docker.DockerClient, busybox: str) -> None:
    import time

    c = docker_py.containers.run(busybox, ["sleep", "60"], detach=True)
    try:
        with pytest.raises(docker.errors.APIError) as err:
            docker_py.api.exec_create(c.id, ["cat"], stdin=True, detach_keys="ctrl-xy")
        assert (
            err.value.status_code == 400 and "Invalid escape keys (ctrl-xy) provided" in err.value.explanation
        )
        # `cat; sleep`: the process outlives the detach whether or not its stdin closes with it
        eid = docker_py.api.exec_create(
            c.id, ["sh", "-c", "cat; sleep 30"], stdin=True, detach_keys="ctrl-x,z"
        )["Id"]
        sock = docker_py.api.exec_start(eid, socket=True)
        raw_sock = sock._sock
        raw_sock.sendall(b"hello\n")
        time.sleep(0.3)
        raw_sock.sendall(b"\x18z")  # ctrl-x then z: the client detaches, the process runs on
        raw_sock.settimeout(10)
        got = b""
        while chunk := raw_sock.recv(4096):
            got += chunk
        assert b"hello" in got
        assert docker_py.api.exec_inspect(eid)["Running"] is True
        sock.close()
    finally:
        c.remove(force=True)


def test_volume_subpath(daemon: Daemon, docker_cli: Runner, docker_py: docker.DockerClient, busybox: str,
                        unique: Any) -> None:  # fmt: skip
    vol = unique("subvol")
    docker_cli("volume", "create", vol)
    try:
        docker_cli("run", "--rm", "-v", f"{vol}:/v", busybox, "sh", "-c",
                   "mkdir -p /v/a/b && echo inside > /v/a/b/f && ln -s /etc /v/esc")  # fmt: skip
        out = docker_cli("run", "--rm", "--mount", f"type=volume,src={vol},dst=/m,volume-subpath=a/b", busybox,
                         "cat", "/m/f")  # fmt: skip
        assert out.stdout == "inside\n"
        # a symlink in the volume resolves inside the volume, never to the host's /etc
        res = docker_cli("run", "--rm", "--mount", f"type=volume,src={vol},dst=/m,volume-subpath=esc", busybox,
                         "ls", "/m", check=False)  # fmt: skip
        assert res.returncode != 0 and "cannot access path esc" in res.stderr
        res = docker_cli("run", "--rm", "--mount", f"type=volume,src={vol},dst=/m,volume-subpath=../x", busybox,
                         "true", check=False)  # fmt: skip
        assert res.returncode != 0 and "subpath must be a relative path within the volume" in res.stderr
        # API 1.44 had no Subpath: an old client's field is not applied
        body = {
            "Image": busybox,
            "Cmd": ["ls", "/m"],
            "HostConfig": {
                "Mounts": [
                    {"Type": "volume", "Source": vol, "Target": "/m", "VolumeOptions": {"Subpath": "a/b"}}
                ]
            },
        }
        status, created = raw(daemon.socket, "POST", "/v1.44/containers/create", json.dumps(body).encode())
        assert status == 201, created
        c = docker_py.containers.get(created["Id"])
        c.start()
        c.wait(timeout=30)
        assert b"a" in c.logs().split()
        c.remove()
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if "/subpaths/" in line.split()[4]]
        assert not [m for m in mounts if str(daemon.root) in m]
    finally:
        docker_cli("volume", "rm", "-f", vol, check=False)


# -- 5. API 1.50 and version-gated behaviour ------------------------------------------------


def test_api_150_is_what_docker_cli_28_speaks(docker_cli: Runner, docker_py: docker.DockerClient) -> None:
    out = docker_cli("version", "--format", "{{.Server.APIVersion}} {{.Client.APIVersion}}").stdout.split()
    assert out == ["1.50", "1.50"]
    assert docker_py.version()["ApiVersion"] == "1.50"


def test_legacy_image_filter_follows_the_request_version(daemon: Daemon, busybox: str) -> None:
    _, old = raw(daemon.socket, "GET", "/v1.40/images/json?filter=nosuch-repo-x")
    _, new = raw(daemon.socket, "GET", "/v1.41/images/json?filter=nosuch-repo-x")
    assert old == []  # 1.40: `filter` is a reference filter
    assert any("busybox:latest" in (s["RepoTags"] or []) for s in new)  # 1.41: removed, ignored


def test_healthcheck_start_interval_follows_the_request_version(daemon: Daemon, docker_py: docker.DockerClient,
                                                                busybox: str) -> None:  # fmt: skip
    hc = {"Test": ["CMD", "true"], "StartInterval": 2_000_000_000}
    for version, want in (("1.43", None), ("1.44", 2_000_000_000)):
        body = {"Image": busybox, "Cmd": ["true"], "Healthcheck": dict(hc)}
        status, created = raw(
            daemon.socket, "POST", f"/v{version}/containers/create", json.dumps(body).encode()
        )
        assert status == 201, created
        got = docker_py.api.inspect_container(created["Id"])["Config"]["Healthcheck"].get("StartInterval")
        docker_py.api.remove_container(created["Id"])
        assert (got or None) == want, version


def test_gw_priority_picks_the_default_route(daemon: Daemon, docker_cli: Runner, docker_py: docker.DockerClient,
                                             busybox: str, unique: Any) -> None:  # fmt: skip
    a, b = unique("gwa"), unique("gwb")
    docker_cli("network", "create", "--subnet", "10.231.1.0/24", a)
    docker_cli("network", "create", "--subnet", "10.231.2.0/24", b)
    try:
        body = {"Image": busybox, "Cmd": ["ip", "route"], "HostConfig": {"NetworkMode": a},
                "NetworkingConfig": {"EndpointsConfig": {a: {}, b: {"GwPriority": 10}}}}  # fmt: skip
        status, created = raw(daemon.socket, "POST", "/v1.48/containers/create", json.dumps(body).encode())
        assert status == 201, created
        c = docker_py.containers.get(created["Id"])
        c.start()
        c.wait(timeout=30)
        assert "default via 10.231.2.1" in c.logs().decode()
        c.remove()
    finally:
        docker_cli("network", "rm", a, b, check=False)


def _ws_session(daemon: Daemon, path: str, send: bytes | None, until: bytes, binary: bool) -> bytes:
    """Attach over the WebSocket with aiohttp's client (docker-py's needs websocket-client,
    which is not installed here), optionally send stdin, and collect output up to `until`."""
    import aiohttp

    async def go() -> bytes:
        got = b""
        connector = aiohttp.UnixConnector(path=str(daemon.socket))
        async with (
            aiohttp.ClientSession(connector=connector) as s,
            s.ws_connect(f"http://localhost{path}") as ws,
        ):
            if send is not None:
                await ws.send_bytes(send)
            while until not in got:
                msg = await ws.receive(timeout=10)
                if msg.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                    break
                assert (msg.type == aiohttp.WSMsgType.BINARY) == binary
                got += msg.data if isinstance(msg.data, bytes) else msg.data.encode()
        return got

    import asyncio

    return asyncio.run(go())


def test_attach_websocket(daemon: Daemon, docker_py: docker.DockerClient, busybox: str) -> None:
    c = docker_py.containers.run(busybox, ["sh", "-c", "echo ready; while read l; do echo got:$l; done"],
                                 detach=True, stdin_open=True)  # fmt: skip
    try:
        q = "stream=1&stdin=1&stdout=1&stderr=1&logs=1"
        out = _ws_session(daemon, f"/v1.50/containers/{c.id}/attach/ws?{q}", b"hello\n", b"got:hello", True)
        assert out.startswith(b"ready\n") and b"got:hello\n" in out  # raw, not multiplexed
        # before 1.42: every stream whatever the query, and text frames
        out = _ws_session(
            daemon, f"/v1.41/containers/{c.id}/attach/ws?stream=1", b"again\n", b"got:again", False
        )
        assert b"got:again" in out
        c.reload()
        assert c.status == "running"
    finally:
        c.remove(force=True)
    status, _ = raw(daemon.socket, "GET", "/containers/nosuch/attach/ws")
    assert status == 404


def test_ipv6_networks(docker_cli: Runner, docker_py: docker.DockerClient, busybox: str, unique: Any) -> None:
    net, auto, name = unique("v6net"), unique("v6auto"), unique("v6")
    docker_cli("network", "create", "--ipv6", "--subnet", "fd42:1:2:3::/64", net)
    docker_cli("network", "create", "--ipv6", auto)
    try:
        n = docker_py.networks.get(net).attrs
        assert n["EnableIPv6"] is True
        assert {"Subnet": "fd42:1:2:3::/64", "Gateway": "fd42:1:2:3::1"} in n["IPAM"]["Config"]
        a = docker_py.networks.get(auto).attrs
        assert [
            c for c in a["IPAM"]["Config"] if c["Subnet"].startswith("fd") and c["Subnet"].endswith("::/64")
        ]
        docker_cli(
            "run", "-d", "--name", name, "--network", net, "--ip6", "fd42:1:2:3::42", busybox, "sleep", "60"
        )
        ep = docker_py.containers.get(name).attrs["NetworkSettings"]["Networks"][net]
        assert ep["GlobalIPv6Address"] == "fd42:1:2:3::42" and ep["GlobalIPv6PrefixLen"] == 64
        assert ep["IPv6Gateway"] == "fd42:1:2:3::1"
        assert "fd42:1:2:3::42/64" in docker_cli("exec", name, "ip", "-6", "addr").stdout
        assert "default via fd42:1:2:3::1" in docker_cli("exec", name, "ip", "-6", "route").stdout
        # addresses on connect: the next free one
        docker_cli("network", "connect", auto, name)
        ep2 = docker_py.containers.get(name).attrs["NetworkSettings"]["Networks"][auto]
        assert ep2["GlobalIPv6Address"].startswith(a["IPAM"]["Config"][-1]["Subnet"].split("::")[0])
        assert docker_py.networks.get(net).attrs["Containers"][docker_py.containers.get(name).id]["IPv6Address"] == \
            "fd42:1:2:3::42/64"  # fmt: skip
        # the gateway (the bridge) answers over IPv6 from inside
        assert (
            docker_cli(
                "exec", name, "ping", "-6", "-c", "1", "-W", "5", "fd42:1:2:3::1", check=False
            ).returncode
            == 0
        )
        res = docker_cli("network", "create", "--subnet", "fd42:9::/64", unique("nov6"), check=False)
        assert res.returncode != 0 and "EnableIPv6" in res.stderr
    finally:
        docker_cli("rm", "-f", name, check=False)
        docker_cli("network", "rm", net, auto, check=False)


def _cgroup_file(controller: str, parent: str, cid: str, name: str) -> str:
    return Path(f"/sys/fs/cgroup/{controller}/{parent}/{cid}/{name}").read_text()


def test_devices_and_device_cgroup_rules(docker_cli: Runner, busybox: str) -> None:
    out = docker_cli("run", "--rm", "--device", "/dev/null:/dev/mynull:rw", busybox, "sh", "-c",
                     "ls -l /dev/mynull && echo x > /dev/mynull && echo wrote").stdout  # fmt: skip
    assert out.startswith("crw") and "1,   3" in out and "wrote" in out
    res = docker_cli("run", "--rm", "--device", "/dev/nosuch-dev", busybox, "true", check=False)
    assert (
        res.returncode != 0
        and 'error gathering device information while adding custom device "/dev/nosuch-dev"' in res.stderr
    )
    # the rule reaches the container's device cgroup (what the kernel enforces)
    cid = docker_cli("run", "-d", "--device-cgroup-rule", "b 7:99 r", busybox, "sleep", "30").stdout.strip()
    try:
        listed = _cgroup_file("devices", "dockyard", cid, "devices.list")
        assert "b 7:99 r" in listed.splitlines()
    finally:
        docker_cli("rm", "-f", cid)
    res = docker_cli("create", "--device-cgroup-rule", "x 1:5 rwm", busybox, "true", check=False)
    assert res.returncode != 0 and "invalid device cgroup format 'x 1:5 rwm'" in res.stderr


def test_blkio_memory_and_annotations(daemon: Daemon, docker_cli: Runner, busybox: str, unique: Any) -> None:
    dev = "/dev/vda" if Path("/dev/vda").exists() else None
    if dev is None:
        pytest.skip("no /dev/vda block device here")
    name = unique("res")
    res = docker_cli("run", "-d", "--name", name, "--device-read-bps", f"{dev}:1mb", "--blkio-weight", "300",
                     "-m", "64m", "--oom-kill-disable", "--memory-swappiness", "10",
                     "--annotation", "org.example.k=v", busybox, "sleep", "60")  # fmt: skip
    try:
        cid = res.stdout.strip()
        st = os.stat(dev)
        assert f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)} 1048576" in _cgroup_file(
            "blkio", "dockyard", cid, "blkio.throttle.read_bps_device")  # fmt: skip
        assert "oom_kill_disable 1" in _cgroup_file("memory", "dockyard", cid, "memory.oom_control")
        assert _cgroup_file("memory", "dockyard", cid, "memory.swappiness").strip() == "10"
        spec = json.loads((daemon.data_root / "containers" / cid / "config.json").read_text())
        # the user's annotation, beside the daemon's own (CRIU's config file for a live move)
        assert {k: v for k, v in spec["annotations"].items() if k != "org.criu.config"} == {"org.example.k": "v"}
        if not Path("/sys/fs/cgroup/blkio/blkio.weight").exists():  # dockerd drops it with a warning
            assert "Block I/O weight" in res.stderr
    finally:
        docker_cli("rm", "-f", name, check=False)
    body = {
        "Image": busybox,
        "HostConfig": {"MemorySwappiness": 101},
    }  # the CLI checks it first; the API must too
    status, err = raw(daemon.socket, "POST", "/containers/create", json.dumps(body).encode())
    assert status == 400 and err["message"] == "Invalid value: 101, valid memory swappiness range is 0-100"
    for args, msg in ((("--cpu-rt-runtime", "1000", "--cpu-rt-period", "500"), "cpu-rt-runtime cannot be higher"),
                      (("--storage-opt", "size=1G"), "--storage-opt is supported only for overlay over xfs"),
                      (("--gpus", "all"), 'could not select device driver "" with capabilities: [[gpu]]')):  # fmt: skip
        res = docker_cli("create", *args, busybox, "true", check=False)
        assert res.returncode != 0 and msg in res.stderr, (args, res.stderr)


def test_cgroup_parent_and_cgroupns(docker_cli: Runner, busybox: str, unique: Any) -> None:
    parent = unique("dyparent")
    try:
        out = docker_cli("run", "--rm", "--cgroup-parent", parent, busybox, "cat", "/proc/self/cgroup").stdout
        assert f"/{parent}/" in out
        out = docker_cli("run", "--rm", "--cgroupns", "private", busybox, "cat", "/proc/self/cgroup").stdout
        assert "dockyard" not in out  # its own cgroup is its root
    finally:
        for ctl in Path("/sys/fs/cgroup").iterdir():
            p = ctl / parent
            if p.is_dir():
                p.rmdir()


def test_pid_and_ipc_of_another_container(docker_cli: Runner, busybox: str, unique: Any) -> None:
    donor, plain = unique("donor"), unique("plain")
    docker_cli("run", "-d", "--name", donor, "--ipc", "shareable", busybox, "sh", "-c",
               "echo shared > /dev/shm/mark; exec sleep 60")  # fmt: skip
    docker_cli("run", "-d", "--name", plain, busybox, "sleep", "60")
    try:
        out = docker_cli("run", "--rm", "--pid", f"container:{donor}", busybox, "ps", "-o", "args").stdout
        assert "sleep 60" in out
        out = docker_cli("run", "--rm", "--ipc", f"container:{donor}", busybox, "cat", "/dev/shm/mark").stdout
        assert out == "shared\n"
        res = docker_cli("run", "--rm", "--ipc", f"container:{plain}", busybox, "true", check=False)
        assert res.returncode != 0 and "non-shareable IPC" in res.stderr
        res = docker_cli("create", "--ipc", "bogus", busybox, "true", check=False)
        assert res.returncode != 0 and "invalid IPC mode: bogus" in res.stderr
    finally:
        docker_cli("rm", "-f", donor, plain, check=False)


def test_quick_exits_are_all_recorded(docker_cli: Runner, busybox: str) -> None:
    """docker-py's `run -d sh -c 'exit 0'` then `wait`: a veth gone with its namespace
    between two netlink calls once left the exit unrecorded and the wait hanging."""
    ids = [docker_cli("run", "-d", busybox, "sh", "-c", f"exit {i % 3}").stdout.strip() for i in range(12)]
    try:
        codes = [docker_cli("wait", cid, timeout=30).stdout.strip() for cid in ids]
        assert codes == [str(i % 3) for i in range(12)]
    finally:
        docker_cli("rm", "-f", *ids, check=False)


def test_build_cache_from_missing_image_uses_no_cache(docker_py: docker.DockerClient, busybox: str,
                                                      unique: Any) -> None:  # fmt: skip
    import io

    script = f"FROM {busybox}\nENV FOO=bar\nRUN touch baz\nRUN touch bax\n".encode()
    t1, t2 = unique("cf1"), unique("cf2")

    def hits(**kw: Any) -> int:
        stream = docker_py.api.build(fileobj=io.BytesIO(script), decode=True, **kw)
        return sum("Using cache" in chunk.get("stream", "") for chunk in stream)

    try:
        hits(tag=t1)
        assert hits(tag=t2, cache_from=[t1]) == 3
        docker_py.api.remove_image(t2)
        assert hits(tag=t2, cache_from=["nosuchtag-x"]) == 0  # dockerd: no source, no cache
    finally:
        for t in (t1, t2):
            try:
                docker_py.api.remove_image(t, force=True)
            except docker.errors.NotFound:
                pass


def test_info_counts_every_image(docker_py: docker.DockerClient, busybox: str, unique: Any) -> None:
    import io

    tag = unique("layers")  # two RUN steps: an intermediate image that `images` hides without all=1
    list(
        docker_py.api.build(
            fileobj=io.BytesIO(f"FROM {busybox}\nRUN touch a\nRUN touch b\n".encode()), tag=tag
        )
    )
    try:
        distinct = {img["Id"] for img in docker_py.api.images(all=True)}
        assert len(distinct) > len(docker_py.api.images())
        assert docker_py.info()["Images"] == len(distinct)  # docker-py's ListImagesTest.test_images
    finally:
        docker_py.api.remove_image(tag, force=True)


def test_network_create_fields_that_need_a_swarm_or_are_refused(daemon: Daemon, docker_py: docker.DockerClient,
                                                                 docker_cli: Runner, unique: Any) -> None:  # fmt: skip
    for kw in ({"ingress": True}, {"scope": "swarm"}):
        with pytest.raises(docker.errors.APIError) as err:
            docker_py.networks.create(unique("sw"), **kw)
        assert err.value.status_code == 503 and err.value.explanation == NOT_A_MANAGER, kw
    for body in (
        {"ConfigOnly": True},
        {"ConfigFrom": {"Network": "x"}},
        {"EnableIPv4": False, "EnableIPv6": True},
    ):
        status, out = raw(
            daemon.socket, "POST", "/networks/create", json.dumps({"Name": unique("n"), **body}).encode()
        )
        assert status == 501 and "not supported" in out["message"], body
    names = [n.name for n in docker_py.networks.list()]
    assert not [n for n in names if n.startswith(("sw-", "n-"))]


def test_create_with_two_networks_follows_the_request_version(daemon: Daemon, docker_py: docker.DockerClient,
                                                              docker_cli: Runner, busybox: str, unique: Any) -> None:  # fmt: skip
    a, b = unique("twa"), unique("twb")
    docker_cli("network", "create", a)
    docker_cli("network", "create", b)
    try:
        body = {"Image": busybox, "HostConfig": {"NetworkMode": a},
                "NetworkingConfig": {"EndpointsConfig": {a: {}, b: {}}}}  # fmt: skip
        status, out = raw(daemon.socket, "POST", "/v1.43/containers/create", json.dumps(body).encode())
        assert status == 400 and out["message"].startswith(
            "Container cannot be connected to network endpoints"
        )
        status, out = raw(daemon.socket, "POST", "/v1.44/containers/create", json.dumps(body).encode())
        assert status == 201, out
        assert set(docker_py.containers.get(out["Id"]).attrs["NetworkSettings"]["Networks"]) == {a, b}
        docker_py.api.remove_container(out["Id"])
    finally:
        docker_cli("network", "rm", a, b, check=False)


def test_run_rm_linked_to_a_stopped_container_fails_and_is_removed(docker_cli: Runner, docker_py: docker.DockerClient,
                                                                   busybox: str, unique: Any) -> None:  # fmt: skip
    child, parent = unique("stopped"), unique("rmlink")
    docker_cli("create", "--name", child, busybox, "true")
    try:
        res = docker_cli("run", "--rm", "--name", parent, "--link", f"{child}:c", busybox, "true", check=False,
                         timeout=30)  # fmt: skip
        assert res.returncode != 0 and "Cannot link to a non running container" in res.stderr
        from tests.conftest import wait_for

        wait_for(lambda: parent not in [c.name for c in docker_py.containers.list(all=True)], what="removal")
    finally:
        docker_cli("rm", "-f", parent, child, check=False)


def test_volume_subpath_swapped_for_a_symlink_by_a_container_never_reaches_the_host(
    docker_cli: Runner, busybox: str, unique: Any
) -> None:
    """Attack: a container sharing the volume swaps the subpath between a directory and a
    symlink to / while other containers start with that subpath; none may see the host."""
    assert Path("/etc/debian_version").exists()  # the host marker the attacker hopes to reach
    vol, attacker = unique("racevol"), unique("attacker")
    docker_cli("volume", "create", vol)
    docker_cli("run", "-d", "--name", attacker, "-v", f"{vol}:/v", busybox, "sh", "-c",
               "while true; do mkdir -p /v/sw; rm -rf /v/sw; ln -s /etc /v/sw; rm -f /v/sw; done")  # fmt: skip
    try:
        seen = []
        for _ in range(15):
            res = docker_cli("run", "--rm", "--mount", f"type=volume,src={vol},dst=/m,volume-subpath=sw", busybox,
                             "ls", "/m", check=False)  # fmt: skip
            seen.append(res.stdout)
        assert not [s for s in seen if "debian_version" in s]
    finally:
        docker_cli("rm", "-f", attacker, check=False)
        docker_cli("volume", "rm", "-f", vol, check=False)


def test_create_platform_must_match_the_image(
    daemon: Daemon, docker_cli: Runner, busybox: str, unique: Any
) -> None:
    name = unique("plat")
    docker_cli("create", "--name", name, "--platform", "linux/amd64", busybox, "true")
    docker_cli("rm", name)
    # a 404, on which the docker CLI pulls the image for that platform (as with dockerd)
    body = json.dumps({"Image": busybox, "Cmd": ["true"]}).encode()
    status, out = raw(daemon.socket, "POST", "/containers/create?platform=linux/arm64", body)
    assert status == 404 and "does not match the specified platform" in out["message"]


def test_attach_is_an_event(
    docker_cli: Runner, docker_py: docker.DockerClient, busybox: str, unique: Any
) -> None:
    import time

    name = unique("attached")
    since = int(time.time())
    docker_cli("run", "--name", name, busybox, "true")  # the CLI attaches before it starts
    try:
        events = docker_py.events(since=since, until=int(time.time()) + 1, decode=True,
                                  filters={"container": name})  # fmt: skip
        actions = [e["Action"] for e in events]
        assert actions[:3] == ["create", "attach", "start"], actions
    finally:
        docker_cli("rm", "-f", name, check=False)
