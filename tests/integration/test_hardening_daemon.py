"""The daemon's host-facing surface, attacked as an attacker would (issue 10, "Hardening").

- a host user runs a setuid-root binary a container made, through the data root
  (dockerd's CVE-2021-41091): the roots are 0700 and the rootfs mount is nosuid,nodev;
- TCP without mutual TLS serves nothing unless plain TCP is asked for explicitly;
- a second daemon on the same data or exec root refuses to start;
- `HostConfig.Runtime` names only configured runtimes;
- a layer whose files were not yet durable when the daemon died is re-checked at start.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import pytest

from dockyard.api.versions import API_VERSION
from tests.conftest import REPO, destroy_daemon, import_busybox, make_daemon, wait_for
from tests.integration.test_daemon import tls_material  # noqa: F401  (a fixture)

ATTACKER = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _docker(d, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["docker", *args], env={**os.environ, "DOCKER_HOST": d.host}, capture_output=True,
                         text=True, timeout=timeout)  # fmt: skip
    if check:
        assert res.returncode == 0, res.stderr
    return res


def _as_attacker(*argv: str, pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess[str]:
    # through a shell: setpriv itself keeps root's capabilities up to its own execve (its
    # path walk would pass any 0700), the shell it starts has none
    return subprocess.run([*ATTACKER, "/bin/sh", "-c", 'exec "$@"', "sh", *argv], capture_output=True, text=True,
                          timeout=30, cwd="/", pass_fds=pass_fds)  # fmt: skip


def _mount_options(target: Path) -> set[str]:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == str(target):
                return set(fields[5].split(","))
    raise AssertionError(f"{target} is not mounted")


# busybox drops a setuid root at once for most applets; `crontab` keeps it, and says
# "must be suid to work properly" when the kernel did not grant it
NOT_SUID = "must be suid to work properly"


# ---- 1. setuid binaries a container made (CVE-2021-41091) ---------------------------------


def test_host_user_cannot_reach_or_run_a_containers_setuid_binary() -> None:
    d = make_daemon()
    try:
        os.chmod(d.root, 0o711)  # only the daemon's own modes stand between the attacker and the files
        import_busybox(d.host)
        _docker(d, "volume", "create", "hv")
        cid = _docker(d, "run", "-d", "-v", "hv:/vol", "busybox", "sh", "-c",
                      "mkdir /d && cp /bin/busybox /d/busybox && chmod 4755 /d/busybox && "
                      "cp /bin/busybox /vol/busybox && chmod 4755 /vol/busybox && touch /done && sleep 600",
                      ).stdout.strip()  # fmt: skip
        rootfs = d.data_root / "containers" / cid / "rootfs"
        wait_for(lambda: (rootfs / "done").exists(), what="the container's setuid copies")
        vol = Path(_docker(d, "volume", "inspect", "-f", "{{.Mountpoint}}", "hv").stdout.strip())
        upper = d.data_root / "snapshots" / cid / "upper"
        paths = [rootfs / "d/busybox", upper / "d/busybox", vol / "busybox"]
        for p in paths:
            assert p.stat().st_mode & stat.S_ISUID and p.stat().st_uid == 0, p

        # defence 1: no path into the roots for anyone but root
        for root in (d.data_root, d.exec_root, *(d.data_root / n for n in ("containers", "snapshots", "volumes",
                                                                             "layers", "blobs", "tmp"))):  # fmt: skip
            assert stat.S_IMODE(root.stat().st_mode) == 0o700, root
        for p in paths:
            res = _as_attacker(str(p), "crontab", "-l")
            assert res.returncode == 126 and "Permission denied" in res.stderr, (p, res.returncode, res.stderr)
            assert _as_attacker("test", "-e", str(p)).returncode == 1, p

        # defence 2: the host's rootfs mount is nosuid,nodev. An fd root handed out (the
        # attacker cannot walk the path) exercises only the mount flags.
        assert {"nosuid", "nodev"} <= _mount_options(rootfs)
        link_dir = Path(tempfile.mkdtemp(dir="/tmp"))
        os.chmod(link_dir, 0o755)
        try:
            for path, granted in ((rootfs / "d/busybox", False), (upper / "d/busybox", True)):
                fd = os.open(path, os.O_PATH)
                try:
                    link = link_dir / "busybox"  # busybox picks the applet by argv[0]'s name
                    link.unlink(missing_ok=True)
                    link.symlink_to(f"/proc/self/fd/{fd}")
                    res = _as_attacker(str(link), "crontab", "-l", pass_fds=(fd,))
                finally:
                    os.close(fd)
                # the upper dir is a plain folder (not a nosuid mount): the control shows the
                # probe does see a granted setuid, so the rootfs' refusal is the mount's doing
                assert (NOT_SUID not in res.stderr) == granted, (path, res.stderr)
        finally:
            subprocess.run(["rm", "-rf", str(link_dir)], check=False)

        # inside the container setuid programs keep working, as on Docker
        res = _docker(d, "exec", "--user", "65534", cid, "/d/busybox", "crontab", "-l", check=False)
        assert NOT_SUID not in res.stderr, res.stderr
        assert "nosuid" not in _docker(d, "exec", cid, "grep", " / / ", "/proc/self/mountinfo").stdout

        # a data root made with laxer modes (an older daemon) is tightened at start
        _docker(d, "rm", "-f", cid)
        d.stop()
        for p in (d.data_root, d.data_root / "containers", d.data_root / "volumes", d.exec_root):
            os.chmod(p, 0o755)
        d.start()
        for p in (d.data_root, d.data_root / "containers", d.data_root / "volumes", d.exec_root):
            assert stat.S_IMODE(p.stat().st_mode) == 0o700, p
    finally:
        destroy_daemon(d)


# ---- 2. TCP fails closed ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_refused(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # its own bridge: should a regression let it start, it must not touch anyone's network
    (tmp_path / "daemon.json").write_text(json.dumps({"bridge": f"dyh{secrets.token_hex(4)}"}))
    res = subprocess.run([sys.executable, "-m", "dockyard.daemon.main", "--config-file", str(tmp_path / "daemon.json"),
                          "--data-root", str(tmp_path / "data"), "--exec-root", str(tmp_path / "run"), *args],
                         capture_output=True, text=True, timeout=30, cwd=REPO)  # fmt: skip
    assert res.returncode == 1, res.stderr
    return res


@pytest.mark.parametrize(("flags", "message"), [
    ((), "refusing to listen on tcp://127.0.0.1:{port} without TLS"),
    (("--tlsverify", "--tlscacert", "{d}/missing.pem", "--tlscert", "{d}/server.pem", "--tlskey",
      "{d}/server-key.pem"), "could not read --tlscacert {d}/missing.pem: no such file"),
    (("--tlsverify", "--tlscert", "{d}/server.pem", "--tlskey", "{d}/server-key.pem"),
     "--tlscacert is required with --tlsverify (mutual TLS)"),
    (("--tlsverify", "--tlscacert", "{d}/ca.pem", "--tlscert", "{d}/missing.pem", "--tlskey",
      "{d}/server-key.pem"), "could not read --tlscert {d}/missing.pem: no such file"),
    (("--tls", "--tlscacert", "{d}/ca.pem", "--tlscert", "{d}/server.pem"), "--tlskey is required"),
    (("--tlsverify", "--tlscacert", "{d}/ca.pem", "--tlscert", "{d}/ca-key.pem", "--tlskey",
      "{d}/server-key.pem"), "invalid TLS configuration: cannot load --tlscert"),
    (("--tls=false", "--tlsverify"), "conflicting options: --tls=false with --tlsverify"),
])  # fmt: skip
def test_tcp_without_mutual_tls_refuses_to_start(tmp_path, tls_material, flags, message) -> None:  # noqa: F811
    port = _free_port()
    args = [f.format(d=tls_material) for f in flags]
    res = _start_refused(tmp_path, "-H", f"unix://{tmp_path}/d.sock", "-H", f"tcp://127.0.0.1:{port}", *args)
    assert message.format(port=port, d=tls_material) in res.stderr, res.stderr
    # nothing was created or served
    assert not (tmp_path / "data").exists() and not (tmp_path / "d.sock").exists()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_plain_tcp_only_when_asked_for_and_loudly(tmp_path) -> None:
    port = _free_port()
    d = make_daemon(("-H", f"tcp://127.0.0.1:{port}", "--tls=false"))
    try:
        res = subprocess.run(["docker", "-H", f"tcp://127.0.0.1:{port}", "version", "--format",
                              "{{.Server.APIVersion}}"], capture_output=True, text=True, timeout=30)  # fmt: skip
        assert res.stdout.strip() == API_VERSION, res.stderr
        log = d.log.read_text()
        assert "WARNING" in log and "without --tlsverify is insecure and gives root access" in log
        assert f"API is accessible on tcp://127.0.0.1:{port} without TLS (--tls=false)" in log
    finally:
        destroy_daemon(d)


def test_default_runtime_must_be_configured(tmp_path) -> None:
    res = _start_refused(tmp_path, "-H", f"unix://{tmp_path}/d.sock", "--default-runtime", "sh")
    assert "specified default runtime 'sh' does not exist" in res.stderr


# ---- 3. one daemon per root ------------------------------------------------------------------


def test_a_second_daemon_on_the_same_roots_refuses_to_start(tmp_path) -> None:
    d = make_daemon()
    try:
        base = [sys.executable, "-m", "dockyard.daemon.main", "--config-file", str(d.root / "daemon.json"),
                "-H", f"unix://{tmp_path}/second.sock"]  # fmt: skip
        for roots, which, root in (
            (["--data-root", str(d.data_root), "--exec-root", str(tmp_path / "run")], "data root", d.data_root),
            (["--data-root", str(tmp_path / "data"), "--exec-root", str(d.exec_root)], "exec root", d.exec_root),
        ):
            res = subprocess.run([*base, *roots], capture_output=True, text=True, timeout=30, cwd=REPO)
            assert res.returncode == 1, res.stderr
            assert f"{which} {root} is in use by another daemon (pid {d.proc.pid})" in res.stderr, res.stderr
            assert not (tmp_path / "second.sock").exists()
        assert docker.APIClient(base_url=d.host, version="1.47").ping()
        # the lock dies with its holder, even by SIGKILL: no stale lock blocks a restart
        d.stop(signal.SIGKILL)
        d.start()
        assert (d.data_root / "dockyard.lock").read_text().strip() == str(d.proc.pid)
    finally:
        destroy_daemon(d)


# ---- 4. runtimes only from the configured list ----------------------------------------------


def test_a_runtime_not_configured_is_refused(daemon, busybox) -> None:
    client = docker.APIClient(base_url=daemon.host, version="1.47")
    before = len(client.containers(all=True))
    for name in ("sh", "/usr/bin/sh", "crun"):
        with pytest.raises(docker.errors.APIError) as err:
            client.create_container(busybox, ["true"], host_config=client.create_host_config(runtime=name))
        assert err.value.status_code == 400
        assert f"unknown or invalid runtime name: {name}" in str(err.value.explanation)
    assert len(client.containers(all=True)) == before


# ---- 5. layers are durable before their rows say so -----------------------------------------


def _incomplete_layers(d) -> list[str]:
    import sqlite3

    db = sqlite3.connect(f"file:{d.data_root / 'db.sqlite'}?mode=ro", uri=True, timeout=5)
    try:
        return [r[0] for r in db.execute("SELECT id, doc FROM layers") if json.loads(r[1]).get("incomplete")]
    finally:
        db.close()


def _layer_rows(d) -> dict[str, dict]:
    import sqlite3

    db = sqlite3.connect(f"file:{d.data_root / 'db.sqlite'}?mode=ro", uri=True, timeout=5)
    try:
        return {r[0]: json.loads(r[1]) for r in db.execute("SELECT id, doc FROM layers")}
    finally:
        db.close()


def test_a_layer_left_incomplete_is_extracted_again_at_start() -> None:
    """The state a power loss leaves: the row is written (marked incomplete), the files are
    not all on disk. The next start redoes the layer from its blob."""
    import sqlite3

    d = make_daemon()
    try:
        import_busybox(d.host)
        (chain,) = _layer_rows(d)
        diff = d.data_root / "layers" / chain.removeprefix("sha256:") / "diff"
        d.stop()
        (diff / "bin" / "busybox").unlink()  # the file the disk lost
        db = sqlite3.connect(d.data_root / "db.sqlite")
        doc = json.loads(db.execute("SELECT doc FROM layers WHERE id=?", (chain,)).fetchone()[0])
        db.execute("UPDATE layers SET doc=? WHERE id=?", (json.dumps({**doc, "incomplete": True}), chain))
        db.commit()
        db.close()
        d.start()
        assert _incomplete_layers(d) == []
        assert (diff / "bin" / "busybox").is_file()
        assert _docker(d, "run", "--rm", "busybox", "echo", "ok").stdout == "ok\n"
        assert "was not complete when the last daemon stopped: extracting it again" in d.log.read_text()
    finally:
        destroy_daemon(d)


def test_a_daemon_killed_while_extracting_a_layer_leaves_no_half_layer(tmp_path) -> None:
    d = make_daemon()
    try:
        # an image whose one layer takes a while to extract: 1500 files of 24 KiB
        root = tmp_path / "rootfs"
        (root / "data").mkdir(parents=True)
        with open("/dev/urandom", "rb") as rnd:
            for i in range(1500):
                (root / "data" / f"f{i:04}").write_bytes(rnd.read(24 * 1024))
        tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True, check=True).stdout
        subprocess.run(["docker", "import", "-", "big:kill"], input=tar, capture_output=True, check=True,
                       env={**os.environ, "DOCKER_HOST": d.host})  # fmt: skip
        _docker(d, "save", "-o", str(tmp_path / "big.tar"), "big:kill")
        _docker(d, "rmi", "big:kill")
        assert _layer_rows(d) == {}

        load = subprocess.Popen(["docker", "load", "-q", "-i", str(tmp_path / "big.tar")],
                                env={**os.environ, "DOCKER_HOST": d.host}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while not (caught := _incomplete_layers(d)):  # polled tightly: the window is short
                assert time.monotonic() < deadline and load.poll() is None, "no layer was seen being extracted"
                time.sleep(0.002)
            d.stop(signal.SIGKILL)  # the crash: between the row's mark and the files' sync
        finally:
            load.wait(timeout=30)
        assert _incomplete_layers(d) == caught, "the killed daemon left the row marked"
        layers = d.data_root / "layers"
        d.start()
        # nothing refers to the layer (the load never committed its image): it is gone, and
        # no extraction is left half done
        assert _incomplete_layers(d) == [] and _layer_rows(d) == {}
        assert sorted(p.name for p in layers.iterdir()) == ["l"]
        _docker(d, "load", "-q", "-i", str(tmp_path / "big.tar"))
        (chain,) = _layer_rows(d)
        assert _incomplete_layers(d) == []
        assert len(list((layers / chain.removeprefix("sha256:") / "diff" / "data").iterdir())) == 1500
    finally:
        destroy_daemon(d)
