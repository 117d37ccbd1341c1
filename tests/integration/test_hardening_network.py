"""Hardening of networks: a network's bridge option cannot take over a device it did not make.

The attack: `docker network create -o com.docker.network.bridge.name=<an existing veth>`
took the veth over (addressed it, set it up, tagged it) and `docker network rm` deleted
it. Now an existing device is used only if it is a bridge (as dockerd does), and the daemon
deletes only links it made. Each test makes its own devices, with names unique to it, and
removes them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.conftest import Daemon, destroy_daemon, make_daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (veth, dummy, bridges)")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _link(name: str) -> dict[str, Any] | None:
    """`ip -d -j addr show` of one device: kind, alias, addresses, flags, mtu; None if gone."""
    res = _ip("-d", "-j", "addr", "show", "dev", name, check=False)
    if res.returncode != 0:
        return None
    info = json.loads(res.stdout)[0]
    return {
        "ifindex": info["ifindex"],
        "kind": (info.get("linkinfo") or {}).get("info_kind", ""),
        "alias": info.get("ifalias", ""),
        "addrs": sorted(a["local"] for a in info.get("addr_info", [])),
        "up": "UP" in info.get("flags", []),
        "mtu": info["mtu"],
        "master": info.get("master", ""),
    }


@pytest.fixture
def devices(unique: Callable[[str], str]) -> Iterator[Callable[[str, str], str]]:
    """make(kind, prefix) -> a new device of ours ("veth" makes a pair; its peer is vp…)."""
    made: list[str] = []

    def make(kind: str, prefix: str) -> str:
        name = (prefix + unique("x")[-8:])[:15]
        if kind == "veth":
            _ip("link", "add", name, "type", "veth", "peer", "name", ("vp" + name)[:15])
        else:
            _ip("link", "add", name, "type", kind)
        made.append(name)
        return name

    yield make
    for name in reversed(made):
        _ip("link", "del", name, check=False)


# `dummy` is not built for this kernel; `ifb` is the same kind of standalone, non-bridge device
@pytest.mark.parametrize("kind", ["veth", "ifb"])
def test_existing_non_bridge_device_is_refused_and_survives(
    daemon: Daemon, docker_cli: Any, docker_py: docker.DockerClient, devices: Any, unique: Any, kind: str
) -> None:
    dev = devices(kind, "hv" if kind == "veth" else "hi")
    before = _link(dev)
    assert before is not None
    net = unique("hnet")
    res = docker_cli("network", "create", "-o", f"com.docker.network.bridge.name={dev}", net, check=False)
    if res.returncode == 0:  # the old behaviour: the device was taken; rm then deleted it
        docker_cli("network", "rm", net, check=False)
    assert res.returncode != 0, "a network took over an existing " + kind
    assert f"existing interface {dev} is not a bridge" in res.stderr
    # Docker's status for bad input, through the API as docker-py sees it
    with pytest.raises(docker.errors.APIError) as e:
        docker_py.networks.create(net, options={"com.docker.network.bridge.name": dev})
    assert e.value.status_code == 400
    assert net not in [n.name for n in docker_py.networks.list()]
    assert _link(dev) == before  # same device, no address, no alias, same state


def test_existing_bridge_is_used_but_never_deleted(
    daemon: Daemon, docker_cli: Any, devices: Any, unique: Any
) -> None:
    br = devices("bridge", "hb")
    net = unique("hnet")
    docker_cli("network", "create", "-o", f"com.docker.network.bridge.name={br}", net)
    try:
        used = _link(br)
        assert used is not None and used["up"] and used["addrs"], used  # dockerd addresses it too
        assert used["alias"] == ""  # not tagged: the daemon does not own it
    finally:
        docker_cli("network", "rm", net)
    after = _link(br)
    assert after is not None and after["ifindex"] == used["ifindex"], "network rm deleted a bridge it was given"


def test_restart_keeps_what_is_plugged_into_a_given_bridge(unique: Any, devices: Any) -> None:
    """A restarted daemon reconciles links, but only its own: the user's veth on the bridge
    the network was given stays, and so does the bridge after `network rm`."""
    br = devices("bridge", "hb")
    veth = devices("veth", "hu")
    _ip("link", "set", veth, "master", br)
    d = make_daemon()
    try:
        env = {**os.environ, "DOCKER_HOST": d.host}

        def dk(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["docker", *args], capture_output=True, text=True, env=env, check=True, timeout=60)

        net = unique("hnet")
        dk("network", "create", "-o", f"com.docker.network.bridge.name={br}", net)
        d.stop(signal.SIGKILL)
        d.start()
        user = _link(veth)
        assert user is not None and user["master"] == br, "the restart removed the user's veth"
        dk("network", "rm", net)
        assert _link(br) is not None and _link(veth) is not None
    finally:
        destroy_daemon(d)


def test_bridge_the_daemon_made_is_still_removed(daemon: Daemon, docker_cli: Any, unique: Any) -> None:
    name = ("hm" + unique("x")[-8:])[:15]
    net = unique("hnet")
    docker_cli("network", "create", "-o", f"com.docker.network.bridge.name={name}", net)
    made = _link(name)
    assert made is not None and made["kind"] == "bridge" and made["alias"].startswith("dockyard-")
    docker_cli("network", "rm", net)
    assert not Path(f"/sys/class/net/{name}").exists()
