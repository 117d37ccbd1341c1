"""The daemon itself: API negotiation, events, daemon.json, pidfile, TCP with mutual TLS."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import docker
import pytest

from tests.conftest import BIN, destroy_daemon, make_daemon, write_daemon_json


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


def request(daemon, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = UnixHTTPConnection(str(daemon.socket))
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def test_ping_get_and_head_carry_negotiation_headers(daemon):
    for method in ("GET", "HEAD"):
        resp, body = request(daemon, method, "/_ping")
        assert resp.status == 200
        assert resp.getheader("Api-Version") == "1.50"
        assert resp.getheader("Ostype") == "linux"
        assert "no-cache" in resp.getheader("Cache-Control")
        assert body == (b"OK" if method == "GET" else b"")


def test_version_prefixes_old_new_and_bare(daemon):
    for prefix in ("", "/v1.24", "/v1.41", "/v1.47", "/v1.50"):
        resp, body = request(daemon, "GET", f"{prefix}/version")
        assert resp.status == 200, prefix
        assert json.loads(body)["ApiVersion"] == "1.50"
    resp, body = request(daemon, "GET", "/v1.99/version")
    assert resp.status == 400 and b"too new" in body
    resp, body = request(daemon, "GET", "/v1.12/version")
    assert resp.status == 400 and b"too old" in body


def test_errors_are_docker_json_with_exact_content_type(daemon):
    resp, body = request(daemon, "GET", "/v1.47/containers/nosuchthing/json")
    assert resp.status == 404
    assert resp.getheader("Content-Type") == "application/json"
    assert json.loads(body) == {"message": "No such container: nosuchthing"}
    resp, body = request(
        daemon, "POST", "/v1.47/containers/create", body=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400 and "message" in json.loads(body)


def test_info_and_version_through_clients(docker_cli, docker_py, dockyard_cli):
    assert docker_py.version()["ApiVersion"] == "1.50"
    info = docker_py.info()
    assert info["OSType"] == "linux" and info["Driver"] == "overlay2"
    out = docker_cli("info", "--format", "{{.OSType}} {{.Driver}}").stdout.strip()
    assert out == "linux overlay2"
    assert "API version" in dockyard_cli("version").stdout


def test_events_since_until_and_filters(docker_cli, docker_py, busybox, unique):
    start = time.time()
    name = unique("ev")
    docker_cli("run", "--name", name, "--label", "evtest=1", busybox, "true")
    docker_cli("rm", name)
    until = time.time() + 0.5
    out = docker_cli(
        "events", "--since", f"{start:.3f}", "--until", f"{until:.3f}",
        "--filter", "type=container", "--filter", f"container={name}", "--format", "{{.Action}}",
    ).stdout.split()  # fmt: skip
    assert out == ["create", "attach", "start", "die", "destroy"] or out == ["create", "start", "die", "destroy"]
    labelled = list(
        docker_py.events(since=int(start), until=int(until) + 1, decode=True, filters={"label": "evtest=1"})
    )
    assert {e["Action"] for e in labelled} >= {"create", "start", "die", "destroy"}
    images = docker_cli(
        "events", "--since", f"{start:.3f}", "--until", f"{until:.3f}", "--filter", "type=image", "--format", "{{.Action}}"
    ).stdout.split()
    assert images == []


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tls_material(tmp_path: Path) -> Path:
    d = tmp_path
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem",
             "-days", "1", "-subj", "/CN=dockyard-test-ca", cwd=d)  # fmt: skip
    for who, cn in (("server", "localhost"), ("client", "client")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}-key.pem", "-out", f"{who}.csr",
                 "-subj", f"/CN={cn}", cwd=d)  # fmt: skip
        ext = d / f"{who}.ext"
        ext.write_text(
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
            if who == "server"
            else "extendedKeyUsage=clientAuth\n"
        )
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
                 "-out", f"{who}.pem", "-days", "1", "-extfile", str(ext), cwd=d)  # fmt: skip
    return d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_tcp_with_mutual_tls(tls_material, monkeypatch):
    # requests lets these override a client's own CA bundle
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    port = _free_port()
    d = tls_material
    extra = (
        "-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(d / "ca.pem"),
        "--tlscert", str(d / "server.pem"), "--tlskey", str(d / "server-key.pem"),
    )  # fmt: skip
    daemon = make_daemon(extra)
    try:
        env = {
            **os.environ,
            "DOCKER_HOST": f"tcp://127.0.0.1:{port}",
            "DOCKER_TLS_VERIFY": "1",
            "DOCKER_CERT_PATH": str(d),
        }
        (d / "cert.pem").write_bytes((d / "client.pem").read_bytes())
        (d / "key.pem").write_bytes((d / "client-key.pem").read_bytes())
        out = subprocess.run(["docker", "version", "--format", "{{.Server.APIVersion}}"], env=env,
                             capture_output=True, text=True, timeout=30)  # fmt: skip
        assert out.stdout.strip() == "1.50", out.stderr
        # without a client certificate the handshake is refused
        env_nocert = {**env, "DOCKER_CERT_PATH": str(d / "nowhere")}
        (d / "nowhere").mkdir()
        (d / "nowhere" / "ca.pem").write_bytes((d / "ca.pem").read_bytes())
        bad = subprocess.run(["docker", "version"], env=env_nocert, capture_output=True, text=True, timeout=30)
        assert bad.returncode != 0
        # docker-py with mutual TLS
        tls = docker.tls.TLSConfig(client_cert=(str(d / "client.pem"), str(d / "client-key.pem")),
                                   ca_cert=str(d / "ca.pem"), verify=True)  # fmt: skip
        client = docker.DockerClient(base_url=f"https://127.0.0.1:{port}", tls=tls, version="auto")
        assert client.ping()
        client.close()
    finally:
        destroy_daemon(daemon)


def test_daemon_json_and_pidfile(tmp_path):
    daemon = make_daemon()
    try:
        pidfile = tmp_path / "d.pid"
        daemon.stop()
        write_daemon_json(daemon.root, {"pidfile": str(pidfile), "log-level": "warn"})
        daemon.start()
        assert int(pidfile.read_text()) == daemon.proc.pid
        daemon.stop()
        assert not pidfile.exists(), "a clean stop removes the pidfile"
        assert not daemon.socket.exists(), "a clean stop removes the socket"
        daemon.start()
    finally:
        destroy_daemon(daemon)


@pytest.mark.parametrize(("doc", "message"), [
    ('{"hosts": "unix:///tmp/x.sock"}', '"hosts" must be a list of strings'),
    ('{"runtimes": ["runc"]}', '"runtimes" must be an object'),
    ('[1, 2]', "must hold a JSON object"),
    ('{"mtu": "big"}', "invalid literal"),
    ("{not json", "Expecting property name"),
])  # fmt: skip
def test_a_bad_daemon_json_is_refused_with_a_message(tmp_path, doc: str, message: str) -> None:
    """dockerd's behaviour: "unable to configure the Docker daemon with file ...", exit 1,
    before anything is set up (no socket, no data root)."""
    conf = tmp_path / "daemon.json"
    conf.write_text(doc)
    res = subprocess.run([str(BIN / "dockyardd"), "--config-file", str(conf), "--data-root", str(tmp_path / "data"),
                          "-H", f"unix://{tmp_path}/d.sock"], capture_output=True, text=True, timeout=30)  # fmt: skip
    assert res.returncode == 1
    assert f"unable to configure the daemon with file {conf}:" in res.stderr and message in res.stderr, res.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "d.sock").exists()


def test_runtimes_from_flag_and_daemon_json():
    from tests.conftest import import_busybox

    daemon = make_daemon(("--add-runtime", "alt=/usr/sbin/runc"))
    try:
        daemon.stop()
        write_daemon_json(daemon.root, {"runtimes": {"fromjson": {"path": "/usr/sbin/runc"}}})
        daemon.start()
        import_busybox(daemon.host)
        env = {**os.environ, "DOCKER_HOST": daemon.host}

        def docker_(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=60)

        for name in ("alt", "fromjson"):
            res = docker_("run", "--rm", "--runtime", name, "busybox", "echo", name)
            assert res.returncode == 0 and res.stdout == f"{name}\n", res.stderr
        res = docker_("create", "--runtime", "nope", "busybox")
        assert res.returncode != 0 and "unknown or invalid runtime name: nope" in res.stderr
        assert docker_("ps", "-aq").stdout == ""
        info = json.loads(docker_("info", "--format", "{{json .Runtimes}}").stdout)
        assert {"alt", "fromjson", "runc"} <= set(info)
    finally:
        destroy_daemon(daemon)


def test_events_image_filter_without_tag_and_hijack_headers(daemon, docker_cli, busybox, unique):
    start = time.time()
    name = unique("evimg")
    docker_cli("run", "--name", name, "busybox:latest", "true")
    docker_cli("rm", name)
    out = docker_cli(
        "events", "--since", f"{start:.3f}", "--until", f"{time.time() + 0.5:.3f}",
        "--filter", "image=busybox", "--filter", f"container={name}", "--format", "{{.Action}}",
    ).stdout.split()  # fmt: skip
    assert "create" in out and "destroy" in out
    cid = docker_cli("create", "-i", busybox, "cat").stdout.strip()
    try:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(daemon.socket))
        sock.sendall(
            f"POST /v1.47/containers/{cid}/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: x\r\n"
            "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode()
        )
        head = sock.recv(4096).decode()
        sock.close()
        assert head.startswith("HTTP/1.1 101")
        assert "Server: Docker/" in head and "Api-Version: 1.50" in head
    finally:
        docker_cli("rm", "-f", cid)
