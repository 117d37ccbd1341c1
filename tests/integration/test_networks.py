"""Networking through the real clients: bridges, isolation, DNS, published ports, connect/disconnect.

Traffic goes only to loopback and to containers this daemon made. Each test removes what it
made; the module checks that no veth, netns or nft table of ours is left behind.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.request
from pathlib import Path

import docker
import pytest

from tests.conftest import Daemon, destroy_daemon, import_busybox, make_daemon, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (veth, bridges, nftables)")


def _veths() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show", "type", "veth"], check=False, capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def _tables() -> set[str]:
    # both families: ip (nat, forward rules) and bridge (enable_icc=false)
    out = subprocess.run(["nft", "-j", "list", "tables"], check=False, capture_output=True, text=True).stdout
    return {e["table"]["name"] for e in json.loads(out or "{}").get("nftables", []) if "table" in e}


def _table_of(d: Daemon) -> str:
    import hashlib

    return "dockyard-" + hashlib.sha256(str(d.data_root).encode()).hexdigest()[:8]


@pytest.fixture(scope="module")
def net_daemon():
    """A daemon of this module's own, so its teardown can check bridges, veths and the table go.

    Other daemons may run beside this one, so veths are counted on our own bridges only."""
    d = make_daemon()
    import_busybox(d.host)
    yield d
    table = _table_of(d)
    client = docker.APIClient(base_url=d.host, version="1.47", timeout=60)
    for c in client.containers(all=True):
        client.remove_container(c["Id"], force=True)
    bridges = [n["Options"].get("com.docker.network.bridge.name") or "br-" + n["Id"][:12]
               for n in client.networks() if n["Driver"] == "bridge"]  # fmt: skip
    for br in bridges:
        assert not list(Path(f"/sys/class/net/{br}/brif").glob("*")), f"veths left on {br}"
    destroy_daemon(d)
    assert table not in _tables(), "nft table left behind"
    for br in bridges:
        assert not Path(f"/sys/class/net/{br}").exists(), f"bridge {br} left behind"


@pytest.fixture(scope="module")
def dk(net_daemon):
    def run(*args: str, check: bool = True, timeout: float = 60):
        env = {**os.environ, "DOCKER_HOST": net_daemon.host}
        res = subprocess.run(["docker", *args], check=False, capture_output=True, text=True, timeout=timeout, env=env)
        if check and res.returncode != 0:
            raise AssertionError(f"docker {args} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res

    return run


@pytest.fixture(scope="module")
def dy(net_daemon):
    import sys

    exe = str(Path(sys.executable).parent / "dockyard")

    def run(*args: str, check: bool = True, timeout: float = 60):
        res = subprocess.run([exe, "-H", net_daemon.host, *args], check=False, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"dockyard {args} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res

    return run


@pytest.fixture(scope="module")
def py(net_daemon):
    c = docker.DockerClient(base_url=net_daemon.host, version="auto", timeout=60)
    yield c
    c.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_default_bridge_same_network_talks(dk, unique):
    a = unique("a")
    dk("run", "-d", "--name", a, "busybox", "sleep", "60")
    try:
        info = json.loads(dk("inspect", a).stdout)[0]["NetworkSettings"]
        ip = info["IPAddress"]
        assert ip and info["Gateway"] and info["MacAddress"].startswith("02:42:")
        assert info["Networks"]["bridge"]["IPAddress"] == ip
        out = dk("run", "--rm", "busybox", "ping", "-c1", "-W2", ip).stdout
        assert "1 packets received" in out
        hosts = dk("exec", a, "cat", "/etc/hosts").stdout
        assert f"{ip}\t" in hosts
    finally:
        dk("rm", "-f", a)


def test_user_networks_dns_and_isolation(dk, py, unique):
    n1, n2, srv = unique("n1"), unique("n2"), unique("srv")
    dk("network", "create", n1)
    py.networks.create(n2, driver="bridge")
    try:
        dk("run", "-d", "--name", srv, "--network", n1, "--network-alias", "db", "busybox", "sleep", "60")
        sid = json.loads(dk("inspect", srv).stdout)[0]["Id"]
        ip1 = json.loads(dk("inspect", srv).stdout)[0]["NetworkSettings"]["Networks"][n1]["IPAddress"]
        script = f"nslookup {srv} && nslookup db && nslookup {sid[:12]} && ping -c1 -W2 {srv}"
        out = dk("run", "--rm", "--network", n1, "busybox", "sh", "-c", script).stdout
        assert out.count(ip1) >= 4
        # another bridge: no names, no traffic
        res = dk("run", "--rm", "--network", n2, "busybox", "sh", "-c",
                 f"nslookup {srv}; ping -c1 -W1 {ip1}", check=False)  # fmt: skip
        assert ip1 not in res.stdout.split("Name:")[-1] if "Name:" in res.stdout else True
        assert "0 packets received" in res.stdout
        net = py.networks.get(n1)
        assert sid in net.attrs["Containers"]
        # a network in use cannot be removed
        res = dk("network", "rm", n1, check=False)
        assert res.returncode != 0 and "active endpoints" in res.stderr
    finally:
        dk("rm", "-f", srv)
        dk("network", "rm", n1, n2)


def test_icc_false_blocks_container_to_container_but_not_the_gateway(dk, unique):
    n, a = unique("noicc"), unique("a")
    dk("network", "create", "-o", "com.docker.network.bridge.enable_icc=false", n)
    try:
        dk("run", "-d", "--name", a, "--network", n, "busybox", "sleep", "60")
        info = json.loads(dk("inspect", a).stdout)[0]["NetworkSettings"]["Networks"][n]
        out = dk("run", "--rm", "--network", n, "busybox", "sh", "-c",
                 f"ping -c1 -W1 {info['IPAddress']}; ping -c1 -W2 {info['Gateway']}", check=False).stdout  # fmt: skip
        first, second = out.split("--- ")[1], out.split("--- ")[2]
        assert "0 packets received" in first, out  # container to container: dropped
        assert "1 packets received" in second, out  # container to its gateway: allowed
    finally:
        dk("rm", "-f", a, check=False)
        dk("network", "rm", n)


def test_internal_network_has_no_route_out(dk, unique):
    n = unique("int")
    dk("network", "create", "--internal", "--subnet", "10.213.7.0/24", n)
    try:
        out = dk("run", "--rm", "--network", n, "busybox", "ip", "route").stdout
        assert "default" not in out and "10.213.7.0/24" in out
    finally:
        dk("network", "rm", n)


def test_published_port_and_port_command(dk, dy, unique, tmp_path):
    (tmp_path / "index.html").write_text("hello from dockyard\n")
    web = unique("web")
    port = _free_port()
    dk("run", "-d", "--name", web, "-p", f"{port}:80", "-v", f"{tmp_path}:/www", "busybox",
       "httpd", "-f", "-p", "80", "-h", "/www")  # fmt: skip
    try:
        def fetch() -> str:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2).read().decode()
            except OSError:
                return ""  # httpd not listening yet

        assert wait_for(fetch, what="httpd behind the published port") == "hello from dockyard\n"
        assert dk("port", web).stdout.strip() == f"80/tcp -> 0.0.0.0:{port}"
        assert dy("port", web, "80").stdout.strip() == f"0.0.0.0:{port}"
        # the same host port again: a clear error, and nothing left of the container
        res = dk("run", "--rm", "-p", f"{port}:80", "busybox", "true", check=False)
        assert res.returncode != 0 and "port is already allocated" in res.stderr
        bridge = json.loads(dk("network", "inspect", "bridge").stdout)[0]["Options"]["com.docker.network.bridge.name"]
        assert len(list(Path(f"/sys/class/net/{bridge}/brif").glob("*"))) == 1  # the web container's only
    finally:
        dk("rm", "-f", web)


def test_publish_all_to_ephemeral_ports(py, unique):
    c = py.containers.run("busybox", ["sleep", "60"], detach=True, name=unique("pa"),
                          ports={"81/tcp": None, "82/udp": None}, publish_all_ports=True)  # fmt: skip
    try:
        c.reload()
        ports = c.attrs["NetworkSettings"]["Ports"]
        assert int(ports["81/tcp"][0]["HostPort"]) > 1024
        assert int(ports["82/udp"][0]["HostPort"]) > 1024
    finally:
        c.remove(force=True)


def test_host_port_taken_by_another_program(dk, unique):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        name = unique("taken")
        res = dk("run", "--name", name, "-p", f"{port}:80", "busybox", "true", check=False)
        assert res.returncode != 0 and "port is already allocated" in res.stderr
        st = json.loads(dk("inspect", name).stdout)[0]
        assert not st["State"]["Running"] and st["NetworkSettings"]["Ports"] in ({}, None)
        dk("rm", "-f", name)


def test_connect_disconnect_live_and_static_ip(dk, dy, unique):
    n = unique("cn")
    a, b = unique("a"), unique("b")
    dy("network", "create", "--subnet", "10.214.9.0/24", n)
    try:
        dk("run", "-d", "--name", a, "--network", n, "--ip", "10.214.9.77", "busybox", "sleep", "60")
        assert json.loads(dk("inspect", a).stdout)[0]["NetworkSettings"]["Networks"][n]["IPAddress"] == "10.214.9.77"
        res = dk("run", "--rm", "--network", n, "--ip", "10.214.9.77", "busybox", "true", check=False)
        assert res.returncode != 0
        dk("run", "-d", "--name", b, "busybox", "sleep", "60")
        assert "0 packets received" in dk("exec", b, "ping", "-c1", "-W1", "10.214.9.77", check=False).stdout
        dy("network", "connect", "--alias", "buddy", n, b)
        nets = json.loads(dk("inspect", b).stdout)[0]["NetworkSettings"]["Networks"]
        assert set(nets) == {"bridge", n}
        assert "1 packets received" in dk("exec", b, "ping", "-c1", "-W2", "10.214.9.77").stdout
        assert nets[n]["IPAddress"] in dk("exec", a, "nslookup", "buddy").stdout
        dk("network", "disconnect", n, b)
        assert "0 packets received" in dk("exec", b, "ping", "-c1", "-W1", "10.214.9.77", check=False).stdout
        assert set(json.loads(dk("inspect", b).stdout)[0]["NetworkSettings"]["Networks"]) == {"bridge"}
    finally:
        dk("rm", "-f", a, b)
        dy("network", "rm", n)


def test_modes_host_none_container(dk, dy, unique):
    out = dk("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link").stdout
    assert "lo" in out and "eth0" not in out
    a = unique("a")
    dk("run", "-d", "--name", a, "busybox", "sleep", "60")
    try:
        ip = json.loads(dk("inspect", a).stdout)[0]["NetworkSettings"]["IPAddress"]
        assert ip in dk("run", "--rm", "--network", f"container:{a}", "busybox", "ip", "-o", "addr").stdout
    finally:
        dk("rm", "-f", a)
    # 404 (the docker CLI would take any 404 of create for a missing image and try a pull)
    res = dy("run", "--rm", "--network", "nosuchnet", "busybox", "true", check=False)
    assert res.returncode != 0 and "network nosuchnet not found" in res.stderr


def test_network_ls_filters_inspect_prune(dk, py, unique):
    n = unique("lbl")
    py.networks.create(n, labels={"team": "x"}, options={"com.docker.network.bridge.name": "dyt" + n[-8:]})
    try:
        ids = dk("network", "ls", "-q", "-f", "label=team=x").stdout.split()
        assert len(ids) == 1
        assert n in dk("network", "ls", "-f", "type=custom", "--format", "{{.Name}}").stdout.split()
        assert "bridge" not in dk("network", "ls", "-f", "type=custom", "--format", "{{.Name}}").stdout.split()
        assert n in dk("network", "ls", "-f", "dangling=true", "--format", "{{.Name}}").stdout.split()
        assert Path(f"/sys/class/net/dyt{n[-8:]}").exists()
        res = dk("network", "create", "--subnet", py.networks.get(n).attrs["IPAM"]["Config"][0]["Subnet"], unique("o"),
                 check=False)  # fmt: skip
        assert res.returncode != 0 and "overlaps" in res.stderr
        assert n in py.networks.prune(filters={"label": "team=x"})["NetworksDeleted"]
        assert not Path(f"/sys/class/net/dyt{n[-8:]}").exists()
    finally:
        dk("network", "rm", n, check=False)


def test_restart_keeps_running_endpoints(net_daemon, dk, unique):
    n, a = unique("rs"), unique("a")
    dk("network", "create", n)
    try:
        dk("run", "-d", "--name", a, "--network", n, "busybox", "sleep", "120")
        ip = json.loads(dk("inspect", a).stdout)[0]["NetworkSettings"]["Networks"][n]["IPAddress"]
        net_daemon.stop()
        net_daemon.start()
        out = dk("run", "--rm", "--network", n, "busybox", "sh", "-c", f"nslookup {a} && ping -c1 -W2 {a}").stdout
        assert ip in out and "1 packets received" in out
    finally:
        dk("rm", "-f", a)
        dk("network", "rm", n)


def _links_of_kind(kind: str) -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show", "type", kind], check=False, capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def _tagged(table: str) -> set[str]:
    """Interfaces carrying the daemon's tag (its table name) as their alias."""
    out = set()
    for p in Path("/sys/class/net").glob("*/ifalias"):
        try:
            if p.read_text().strip() == table:
                out.add(p.parent.name)
        except OSError:
            pass
    return out


def test_kill_9_then_restart_leaves_nothing(unique):
    """kill -9 the daemon with a user network and a running container on it, restart, remove
    both: no veth, bridge or nft table of that daemon remains once it stops."""
    import signal

    veths_before, bridges_before = _veths(), _links_of_kind("bridge")
    d = make_daemon()
    table = _table_of(d)
    try:
        import_busybox(d.host)
        env = {**os.environ, "DOCKER_HOST": d.host}

        def dk(*args: str) -> str:
            return subprocess.run(["docker", *args], check=True, capture_output=True, text=True, env=env).stdout

        n, a = unique("k9"), unique("a")
        nid = dk("network", "create", n).strip()
        dk("run", "-d", "--name", a, "--network", n, "busybox", "sleep", "300")
        br = "br-" + nid[:12]
        ctr_veths = {p.name for p in Path(f"/sys/class/net/{br}/brif").glob("*")}
        assert len(ctr_veths) == 1 and ctr_veths <= _tagged(table) and br in _tagged(table)
        d.stop(signal.SIGKILL)
        assert Path(f"/sys/class/net/{br}").exists()  # kept for the running container
        d.start()
        out = dk("run", "--rm", "--network", n, "busybox", "sh", "-c", f"ping -c1 -W2 {a}")
        assert "1 packets received" in out
        dk("rm", "-f", a)
        dk("network", "rm", n)
        assert not Path(f"/sys/class/net/{br}").exists()
        d.stop()  # no endpoints left: the default bridge and the table go too
        assert table not in _tables()
        assert not _tagged(table), f"tagged links left: {_tagged(table)}"
        assert not (ctr_veths & _veths())
        # other engineers' daemons may add links meanwhile: only ours must not be among the new ones
        assert not {v for v in _veths() - veths_before if v in ctr_veths}
        assert br not in _links_of_kind("bridge") and not (_links_of_kind("bridge") - bridges_before) & {br}
    finally:
        destroy_daemon(d)


def test_restart_removes_bridges_of_networks_it_no_longer_has(unique):
    """A bridge tagged as ours but in no network of the store (a kill -9 between the store's
    delete and the link's) is removed when the daemon starts again; so are its veths."""
    import signal

    d = make_daemon()
    table = _table_of(d)
    stray, stray_veth = "dyst" + unique("x")[-8:], "veth" + unique("x")[-7:]
    try:
        d.stop(signal.SIGKILL)
        subprocess.run(["ip", "link", "add", stray, "type", "bridge"], check=True)
        subprocess.run(["ip", "link", "set", stray, "alias", table], check=True)
        subprocess.run(["ip", "link", "add", stray_veth, "type", "veth", "peer", "name", "vp" + stray_veth[4:]],
                       check=True)  # fmt: skip
        subprocess.run(["ip", "link", "set", stray_veth, "master", stray], check=True)
        d.start()
        assert not Path(f"/sys/class/net/{stray}").exists()
        assert not Path(f"/sys/class/net/{stray_veth}").exists()
    finally:
        for dev in (stray_veth, stray):
            subprocess.run(["ip", "link", "del", dev], capture_output=True, check=False)
        destroy_daemon(d)


UDP_ECHO = (
    "import socket\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind(('0.0.0.0', 9999))\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    data, peer = s.recvfrom(2048)\n"
    "    print('got', data.decode(), flush=True)\n"
    "    s.sendto(b'echo:' + data, peer)\n"
)


def test_published_udp_port_with_real_traffic(dk, unique):
    """A datagram from the host to 127.0.0.1:<published>/udp reaches the container, and its
    answer comes back through the NAT. Debian's static busybox has no `nc -u`, so the
    listener is the host's own python3, bind-mounted read-only into the busybox container."""
    name, port = unique("udp"), _free_port()
    dk("run", "-d", "--name", name, "-p", f"{port}:9999/udp", "-v", "/usr:/usr:ro", "-v", "/usr/lib:/lib:ro",
       "-v", "/usr/lib64:/lib64:ro", "busybox", "/usr/bin/python3", "-c", UDP_ECHO)  # fmt: skip
    try:
        assert dk("port", name).stdout.strip() == f"9999/udp -> 0.0.0.0:{port}"
        wait_for(lambda: "ready" in dk("logs", name).stdout, what="the udp echo server")
        reply = b""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(1)
            for i in range(5):
                s.sendto(f"datagram {i}".encode(), ("127.0.0.1", port))
                try:
                    reply = s.recv(2048)
                    break
                except TimeoutError:
                    continue
        assert reply.startswith(b"echo:datagram ")
        assert "got datagram" in dk("logs", name).stdout
    finally:
        dk("rm", "-f", name)


def test_container_network_mode_with_real_traffic(dk, unique, tmp_path):
    (tmp_path / "index.html").write_text("shared namespace\n")
    a, b = unique("a"), unique("b")
    dk("run", "-d", "--name", a, "-v", f"{tmp_path}:/www", "busybox", "httpd", "-f", "-p", "8080", "-h", "/www")
    dk("run", "-d", "--name", b, "busybox", "sleep", "60")
    try:
        ip_b = json.loads(dk("inspect", b).stdout)[0]["NetworkSettings"]["IPAddress"]
        script = (
            "for i in $(seq 50); do wget -qO- http://127.0.0.1:8080/index.html && break; sleep 0.1; done; "
            f"ping -c1 -W2 {ip_b}"
        )
        out = dk("run", "--rm", "--network", f"container:{a}", "busybox", "sh", "-c", script).stdout
        assert "shared namespace" in out  # a's server on a's loopback
        assert "1 packets received" in out  # through a's eth0 over the bridge
    finally:
        dk("rm", "-f", a, b)


def _fake_dns(addr: str, answer_ip: str):
    """A tiny DNS server on an address of ours: every A question gets `answer_ip`."""
    import threading

    from dockyard.network.dns import answer, parse_query

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((addr, 53))
    sock.settimeout(0.2)
    seen: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                msg, peer = sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            q = parse_query(msg)
            if q is not None:
                seen.append(q.name)
                sock.sendto(answer(q, [answer_ip]), peer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()

    def close() -> None:
        stop.set()
        t.join(2)
        sock.close()

    return seen, close


def test_dns_forwarding_to_configured_upstream(unique):
    """daemon.json "dns" sets the containers' resolvers and the embedded resolver's upstream;
    the upstream here is a fake server on the gateway address of a network this test made."""
    from tests.conftest import write_daemon_json

    subnet, gw = "10.213.53.0/24", "10.213.53.1"
    d = make_daemon()
    try:
        d.stop()
        write_daemon_json(d.root, {"dns": [gw]})
        d.start()
        import_busybox(d.host)
        env = {**os.environ, "DOCKER_HOST": d.host}

        def dk(*args: str) -> str:
            return subprocess.run(["docker", *args], check=True, capture_output=True, text=True, env=env).stdout

        n, srv, own = unique("dns"), unique("srv"), "none-yet"
        dk("network", "create", "--subnet", subnet, "--gateway", gw, n)
        seen, close = _fake_dns(gw, "10.99.0.7")
        try:
            # the default bridge: the daemon's dns in resolv.conf
            assert dk("run", "--rm", "busybox", "cat", "/etc/resolv.conf").startswith(f"nameserver {gw}\n")
            # a user network: the embedded resolver answers names of ours and forwards the rest
            dk("run", "-d", "--name", srv, "--network", n, "busybox", "sleep", "60")
            out = dk("run", "--rm", "--network", n, "busybox", "sh", "-c",
                     f"cat /etc/resolv.conf; nslookup fake.example.test; nslookup {srv}")  # fmt: skip
            assert "nameserver 127.0.0.11" in out
            assert "10.99.0.7" in out and "fake.example.test" in seen
            assert srv not in seen  # our own names never leave the daemon
            # --dns of the container wins over the daemon's (nothing listens there: no answer)
            res = subprocess.run(["docker", "run", "--rm", "--network", n, "--dns", "10.213.53.254", "busybox",
                                  "nslookup", "other.example.test"], check=False, capture_output=True, text=True, env=env)  # fmt: skip
            assert "10.99.0.7" not in res.stdout and "other.example.test" not in seen
            # ... and still after a daemon restart (the resolver is re-opened from the record)
            own = unique("own")
            dk("run", "-d", "--name", own, "--network", n, "--dns", "10.213.53.254", "busybox", "sleep", "60")
            d.stop()
            d.start()
            res = subprocess.run(["docker", "exec", own, "nslookup", "after.example.test"], check=False,
                                 capture_output=True, text=True, env=env)  # fmt: skip
            assert "after.example.test" not in seen and "10.99.0.7" not in res.stdout
            out = dk("exec", own, "nslookup", srv)
            assert srv not in seen and "Address" in out
        finally:
            close()
            subprocess.run(["docker", "rm", "-f", srv, own], check=False, capture_output=True, env=env)
            dk("network", "rm", n)
    finally:
        destroy_daemon(d)


def test_forward_accept_rules_in_iptables_filter_table(unique):
    """Beside a real dockerd (FORWARD policy DROP) our bridges need accept rules in iptables'
    FORWARD chain. No real dockerd here: the test makes that chain itself, policy accept (so
    nothing on the machine changes), and removes it again."""
    if subprocess.run(["nft", "list", "table", "ip", "filter"], capture_output=True, check=False).returncode == 0:
        pytest.skip("an ip filter table exists already (someone else's): not touching it")
    subprocess.run(["nft", "-f", "-"], check=True, text=True, input=(
        "table ip filter {\n chain FORWARD { type filter hook forward priority filter; policy accept; }\n}\n"))  # fmt: skip

    def ours(table: str) -> list[str]:
        out = subprocess.run(["iptables", "-w", "-S", "FORWARD"], capture_output=True, text=True, check=True).stdout
        return [ln for ln in out.splitlines() if f"--comment {table}" in ln]

    d = make_daemon()
    table = _table_of(d)
    try:
        env = {**os.environ, "DOCKER_HOST": d.host}
        bridge = json.loads((d.root / "daemon.json").read_text())["bridge"]
        assert f"-A FORWARD -i {bridge} -m comment --comment {table} -j ACCEPT" in ours(table)
        n = unique("fw")
        nid = subprocess.run(["docker", "network", "create", n], check=True, capture_output=True, text=True,
                             env=env).stdout.strip()  # fmt: skip
        assert any(f"-i br-{nid[:12]} " in r for r in ours(table)) and len(ours(table)) == 6
        subprocess.run(["docker", "network", "rm", n], check=True, capture_output=True, env=env)
        assert len(ours(table)) == 3 and not any(nid[:12] in r for r in ours(table))
        d.stop()
        assert ours(table) == []
    finally:
        destroy_daemon(d)
        subprocess.run(["nft", "delete", "table", "ip", "filter"], capture_output=True, check=False)
