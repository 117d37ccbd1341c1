"""The pure parts of the network driver interface: what a restart removes."""

from __future__ import annotations

from dockyard.network.bridge import BridgeDriver
from dockyard.network.driver import Link, NetworkDriver, plan_restore

TAG = "dockyard-1a2b3c4d"


def test_bridge_driver_is_a_network_driver() -> None:
    drv: NetworkDriver = BridgeDriver(TAG)
    assert drv.name == "bridge"


def test_plan_restore_removes_only_our_unwanted_links() -> None:
    links = [
        Link("dy0", "bridge", TAG),  # default bridge, wanted
        Link("br-aaaaaaaaaaaa", "bridge", TAG),  # wanted network
        Link("br-bbbbbbbbbbbb", "bridge", TAG),  # network gone from the store
        Link("br-cccccccccccc", "bridge", "dockyard-ffffffff"),  # another daemon's
        Link("br-dddddddddddd", "bridge", ""),  # a real dockerd's
        Link("docker0", "bridge", ""),
        Link("veth1111111", "veth", TAG, "br-aaaaaaaaaaaa"),  # live endpoint
        Link("veth2222222", "veth", TAG, "br-aaaaaaaaaaaa"),  # endpoint gone
        Link("veth3333333", "veth", "", "dy0"),  # untagged (older daemon) on our bridge, gone
        Link("veth4444444", "veth", "", "br-bbbbbbbbbbbb"),  # on a stale bridge
        Link("veth5555555", "veth", "", "docker0"),  # a real dockerd's
        Link("veth6666666", "veth", "dockyard-ffffffff", "br-cccccccccccc"),
        Link("vxlan0", "vxlan", TAG),  # another driver's device: not the bridge driver's business
        Link("usrbr0", "bridge", ""),  # an existing bridge a network was given: used, not ours
        Link("vethuser", "veth", "", "usrbr0"),  # the user's own veth on it
    ]
    stale = plan_restore(links, TAG, ["dy0", "br-aaaaaaaaaaaa", "usrbr0"], ["veth1111111"])
    assert stale == ["veth2222222", "veth3333333", "veth4444444", "br-bbbbbbbbbbbb"]


def test_daemon_dns_setting_reaches_resolv_conf(tmp_path) -> None:
    import json

    from dockyard.containers.files import write_container_files
    from dockyard.daemon.config import parse_args

    (tmp_path / "daemon.json").write_text(json.dumps({"dns": ["10.0.0.53"]}))
    cfg = parse_args(["--config-file", str(tmp_path / "daemon.json")])
    assert cfg.dns == ["10.0.0.53"]
    assert parse_args(["--config-file", str(tmp_path / "daemon.json"), "--dns", "10.0.0.54"]).dns == [
        "10.0.0.54"
    ]
    rec = {"Config": {}, "HostConfig": {"NetworkMode": "bridge", "Dns": []}}
    write_container_files(tmp_path, rec, cfg.dns)
    assert (tmp_path / "resolv.conf").read_text().startswith("nameserver 10.0.0.53\n")
    rec["HostConfig"]["Dns"] = ["10.0.0.99"]
    write_container_files(tmp_path, rec, cfg.dns)
    assert "10.0.0.53" not in (tmp_path / "resolv.conf").read_text()


def test_plan_forward_accept_inserts_missing_and_deletes_stale() -> None:
    from dockyard.network.portmap import ForwardBridge, plan_forward_accept

    listing = (
        "-P FORWARD DROP\n"
        "-A FORWARD -j DOCKER-USER\n"
        "-A FORWARD -j DOCKER-ISOLATION-STAGE-1\n"
        f"-A FORWARD -i br-gone -m comment --comment {TAG} -j ACCEPT\n"
        f"-A FORWARD -i dy0 -m comment --comment {TAG} -j ACCEPT\n"
        "-A FORWARD -i dy0 -m comment --comment dockyard-ffffffff -j ACCEPT\n"  # another daemon's
        "-A FORWARD -o docker0 -j DOCKER\n"
    )
    cmds = plan_forward_accept(listing, TAG, [ForwardBridge("dy0"), ForwardBridge("br-int", internal=True)])
    c = f"-m comment --comment {TAG} -j ACCEPT".split()
    assert cmds == [
        ["iptables", "-w", "-D", "FORWARD", "-i", "br-gone", *c],
        ["iptables", "-w", "-I", "FORWARD", "1", "-i", "br-int", "-o", "br-int", *c],
        ["iptables", "-w", "-I", "FORWARD", "1", "-o", "dy0", "-m", "conntrack", "--ctstate", "DNAT", *c],
        ["iptables", "-w", "-I", "FORWARD", "1", "-o", "dy0", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", *c],
    ]
    # nothing wanted: every rule of ours goes, nobody else's
    assert [x[3] for x in plan_forward_accept(listing, TAG, [])] == ["FORWARD", "FORWARD"]
    assert all(x[2] == "-D" for x in plan_forward_accept(listing, TAG, []))


def test_a_link_that_vanishes_between_lookup_and_read_is_absent() -> None:
    """A container's veth dies with its network namespace at any moment: the kernel answers
    ENODEV between the name lookup and the read. That is "no such link", not an error (it
    once left a container's exit unrecorded and `run --rm` waiting forever)."""
    import errno

    from pyroute2.netlink.exceptions import NetlinkError

    from dockyard.network import bridge

    class Vanishing:
        def link_lookup(self, ifname: str) -> list[int]:
            return [42]

        def get_links(self, index: int) -> list[object]:
            raise NetlinkError(errno.ENODEV, "No such device")

    assert bridge._lookup(Vanishing(), "veth0") is None  # type: ignore[arg-type]
