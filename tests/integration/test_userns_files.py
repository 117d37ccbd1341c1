"""Files the daemon itself writes into a remapped container's world (`--userns-remap`).

The builder's COPY/ADD/WORKDIR and the working directory made at start write into a rootfs
whose ids are shifted on the host. Each must write host id = mapping(container id), so that
the container sees the ids the Dockerfile or the image meant (never 65534, the overflow id
of an unmapped host id) and a committed layer carries the container's ids. Checked the way a
user sees it, from inside a container, and from the host for the layer's files. Also: the
test session's teardown finds a remapped daemon's nftables table (named after its subtree).
"""

# ruff: noqa: F811 (the fixtures imported from _remap are parameters of the tests)
from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import signal
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import Daemon, _remove_network_leftovers, destroy_daemon, make_daemon
from tests.integration._remap import BASE, SIZE, cli, remap_user, remapped, restart_remapped  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (useradd, overlayfs, runc)")


def _owners(d: Daemon, image: str, *paths: str) -> dict[str, str]:
    out = cli(d, "run", "--rm", image, "stat", "-c", "%n %u:%g", *paths).stdout
    return dict(line.rsplit(" ", 1) for line in out.splitlines())


def _archive(members: dict[str, tuple[int, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, (uid, gid) in members.items():
            ti = tarfile.TarInfo(name)
            ti.uid, ti.gid, ti.size = uid, gid, 2
            tf.addfile(ti, io.BytesIO(b"a\n"))
    return buf.getvalue()


def test_copy_add_workdir_write_the_container_ids(remapped: Daemon, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("context file\n")
    (tmp_path / "g").write_text("chowned file\n")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "inner").write_text("in a directory\n")
    (tmp_path / "t.tar").write_bytes(_archive({"m": (7, 8), "sub/n": (0, 0)}))
    os.chown(tmp_path / "f", 4321, 4321)  # the context's owner never reaches the image
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\n"
        "COPY f /a/b/f\n"
        "COPY --chown=1000:1001 g /g\n"
        "COPY d /dd/\n"
        "ADD t.tar /x/\n"
        "WORKDIR /w1/w2\n"
        "COPY <<EOF /h\nheredoc\nEOF\n"
    )
    tag = f"unsbuild{secrets.token_hex(3)}"
    try:
        cli(remapped, "build", "-q", "-t", tag, str(tmp_path))
        got = _owners(remapped, tag, "/a", "/a/b", "/a/b/f", "/g", "/dd", "/dd/inner", "/x", "/x/m",
                      "/x/sub", "/x/sub/n", "/w1", "/w1/w2", "/h")  # fmt: skip
        assert got == {
            "/a": "0:0", "/a/b": "0:0", "/a/b/f": "0:0",  # directories made for a COPY: root's
            "/g": "1000:1001",
            "/dd": "0:0", "/dd/inner": "0:0",
            "/x": "0:0", "/x/m": "7:8", "/x/sub": "0:0", "/x/sub/n": "0:0",  # ADD keeps the tar's owners
            "/w1": "0:0", "/w1/w2": "0:0",
            "/h": "0:0",
        }, got
        # the image is the same on any daemon: its layers hold the container's ids
        raw = subprocess.run(["docker", "save", tag], capture_output=True, check=True, timeout=120,
                             env={**os.environ, "DOCKER_HOST": remapped.host}).stdout  # fmt: skip
        owners: dict[str, tuple[int, int]] = {}
        with tarfile.open(fileobj=io.BytesIO(raw)) as outer:
            manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
            for name in manifest[0]["Layers"]:
                with tarfile.open(fileobj=outer.extractfile(name)) as layer:  # type: ignore[arg-type]
                    for ti in layer.getmembers():
                        owners[ti.name.strip("/").removeprefix("./")] = (ti.uid, ti.gid)
        assert owners["a/b/f"] == (0, 0) and owners["g"] == (1000, 1001) and owners["x/m"] == (7, 8)
        assert owners["w1/w2"] == (0, 0)
    finally:
        cli(remapped, "rmi", "-f", tag, check=False)


def test_copy_chown_outside_the_range_fails_the_build(remapped: Daemon, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x\n")
    (tmp_path / "Dockerfile").write_text(f"FROM busybox\nCOPY --chown={SIZE + 5} f /f\n")
    res = cli(remapped, "build", "-q", str(tmp_path), check=False)
    assert res.returncode != 0
    assert f"container ID {SIZE + 5} cannot be mapped to a host ID" in res.stderr, res.stderr


def test_workdir_made_at_start_is_root_owned_all_the_way(remapped: Daemon) -> None:
    owners = cli(remapped, "run", "--rm", "-w", "/p/q/r", "busybox", "stat", "-c", "%n %u:%g", "/p", "/p/q", "/p/q/r").stdout
    assert owners.split("\n")[:3] == ["/p 0:0", "/p/q 0:0", "/p/q/r 0:0"], owners


def _tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout


def test_teardown_removes_a_remapped_daemons_table(remap_user: str) -> None:
    d = make_daemon()
    table = ""
    try:
        restart_remapped(d, remap_user)
        table = "dockyard-" + hashlib.sha256(str(d.data_root / f"{BASE}.{BASE}").encode()).hexdigest()[:8]
        assert f"table ip {table}" in _tables()
        d.stop(signal.SIGKILL)  # a killed daemon leaves its table for the containers it left
        _remove_network_leftovers(d)
        assert table not in _tables()
    finally:
        destroy_daemon(d)
        for family in ("ip", "bridge"):  # on a teardown that missed it, still leave nothing
            subprocess.run(["nft", "delete", "table", family, table], capture_output=True, check=False)
