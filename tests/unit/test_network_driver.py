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
    ]
    stale = plan_restore(links, TAG, ["dy0", "br-aaaaaaaaaaaa"], ["veth1111111"])
    assert stale == ["veth2222222", "veth3333333", "veth4444444", "br-bbbbbbbbbbbb"]
