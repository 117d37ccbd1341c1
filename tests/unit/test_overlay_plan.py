"""Golden tests of the overlay's pure planners: forwarding entries from the peer table."""

from __future__ import annotations

from dockyard.network.overlay import Peer, plan_peers, vxlan_mtu

NET = "n" * 64
LOCAL = "10.99.0.2"


def peer(n: int, vtep: str, ip: str | None = None, mac: str | None = None) -> Peer:
    ip = ip or f"10.0.9.{n}"
    return Peer(NET, f"e{n}", ip, mac or f"02:42:0a:00:09:{n:02x}", vtep, (f"c{n}",))


def lines(steps: object) -> list[str]:
    return [str(s) for s in steps]  # type: ignore[attr-defined]


def test_remote_peers_get_fdb_and_neighbour_entries_local_ones_none() -> None:
    peers = [peer(2, LOCAL), peer(3, "10.99.0.3"), peer(4, "10.99.0.4")]
    assert lines(plan_peers(LOCAL, peers)) == [
        "fdb add 02:42:0a:00:09:03 dst 10.99.0.3",
        "fdb add 02:42:0a:00:09:04 dst 10.99.0.4",
        "neigh add 10.0.9.3 lladdr 02:42:0a:00:09:03",
        "neigh add 10.0.9.4 lladdr 02:42:0a:00:09:04",
    ]


def test_nothing_to_do_when_current_matches() -> None:
    peers = [peer(3, "10.99.0.3"), peer(2, LOCAL)]
    assert plan_peers(LOCAL, peers, [peer(3, "10.99.0.3")]) == []


def test_gone_peer_is_deleted_before_new_ones_are_added() -> None:
    current = [peer(3, "10.99.0.3"), peer(4, "10.99.0.4")]
    wanted = [peer(4, "10.99.0.4"), peer(5, "10.99.0.3")]
    assert lines(plan_peers(LOCAL, wanted, current)) == [
        "fdb del 02:42:0a:00:09:03 dst 10.99.0.3",
        "neigh del 10.0.9.3 lladdr 02:42:0a:00:09:03",
        "fdb add 02:42:0a:00:09:05 dst 10.99.0.3",
        "neigh add 10.0.9.5 lladdr 02:42:0a:00:09:05",
    ]


def test_endpoint_moved_to_another_node_replaces_only_its_fdb_entry() -> None:
    before = [peer(3, "10.99.0.3")]
    after = [peer(3, "10.99.0.4")]
    assert lines(plan_peers(LOCAL, after, before)) == [
        "fdb del 02:42:0a:00:09:03 dst 10.99.0.3",
        "fdb add 02:42:0a:00:09:03 dst 10.99.0.4",
    ]


def test_endpoint_moved_here_loses_its_entries() -> None:
    assert lines(plan_peers(LOCAL, [peer(3, LOCAL)], [peer(3, "10.99.0.3")])) == [
        "fdb del 02:42:0a:00:09:03 dst 10.99.0.3",
        "neigh del 10.0.9.3 lladdr 02:42:0a:00:09:03",
    ]


def test_half_entries_read_back_from_the_kernel_are_removed_alone() -> None:
    # a daemon killed between the fdb and the neighbour step leaves one half
    current = [Peer("", "", "", "02:42:0a:00:09:07", "10.99.0.3"), Peer("", "", "10.0.9.8", "02:42:0a:00:09:08", "")]
    assert lines(plan_peers(LOCAL, [], current)) == [
        "fdb del 02:42:0a:00:09:07 dst 10.99.0.3",
        "neigh del 10.0.9.8 lladdr 02:42:0a:00:09:08",
    ]


def test_mac_case_does_not_make_a_difference() -> None:
    upper = Peer(NET, "e3", "10.0.9.3", "02:42:0A:00:09:03", "10.99.0.3")
    assert plan_peers(LOCAL, [upper], [peer(3, "10.99.0.3")]) == []


def test_vxlan_mtu_leaves_room_for_the_encapsulation() -> None:
    assert vxlan_mtu(1500) == 1450
