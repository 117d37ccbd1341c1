"""Golden output of the nftables planners: network records -> the table's nft script and
the iptables FORWARD accepts (network/service.py `plan_rules`, network/portmap.py)."""

from __future__ import annotations

from typing import Any

from dockyard.network.portmap import (
    BridgeRules,
    ForwardBridge,
    PortMap,
    forward_accept_specs,
    plan_forward_accept,
    plan_table,
    table_name,
)
from dockyard.network.service import plan_rules
from tests.unit._golden import check, check_json

TABLE = table_name("/var/lib/dockyard")


def _net(name: str, bridge: str, subnet: str, *, driver: str = "bridge", internal: bool = False,
         options: dict[str, str] | None = None, endpoints: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    return {
        "Name": name, "Driver": driver, "Internal": internal, "Options": options or {},
        "IPAM": {"Config": [{"Subnet": subnet}] if subnet else []},
        "Dockyard": {"Bridge": bridge, "Endpoints": endpoints or {}},
    }  # fmt: skip


def _pm(proto: str, host_ip: str, host_port: int, ctr_ip: str, ctr_port: int, bridge: str) -> dict[str, Any]:
    return {"proto": proto, "host_ip": host_ip, "host_port": host_port,
            "ctr_ip": ctr_ip, "ctr_port": ctr_port, "bridge": bridge}  # fmt: skip


NETWORKS = [
    _net("bridge", "docker0", "172.17.0.0/16", endpoints={
        "e1": {"HostIf": "veth1111111", "Ports": [
            _pm("tcp", "", 8080, "172.17.0.2", 80, "docker0"),
            _pm("udp", "127.0.0.1", 5353, "172.17.0.2", 53, "docker0"),
        ]},
        "e2": {"HostIf": "veth2222222", "Ports": [_pm("sctp", "0.0.0.0", 9000, "172.17.0.3", 9000, "docker0")]},
    }),
    _net("host", "", "", driver="host"),
    _net("none", "", "", driver="null"),
    _net("backend", "br-0123456789ab", "172.18.0.0/16", internal=True,
         endpoints={"e3": {"HostIf": "veth3333333", "Ports": []}}),
    _net("quiet", "br-quiet", "10.9.0.0/24", options={
        "com.docker.network.bridge.enable_icc": "false",
        "com.docker.network.bridge.enable_ip_masquerade": "false",
    }, endpoints={
        "e5": {"HostIf": "veth5555555"}, "e4": {"HostIf": "veth4444444"}, "e6": {"HostIf": "veth6666666"},
        "e7": {},  # not joined yet: no host interface
    }),
]  # fmt: skip


def test_table_name_is_per_data_root() -> None:
    check_json(
        "nft_table_names.json", {root: table_name(root) for root in ("/var/lib/dockyard", "/tmp/dy-x/data")}
    )


def test_empty_table() -> None:
    check("nft_empty.nft", plan_table(TABLE, [], []))


def test_rules_from_network_records() -> None:
    script, fwd = plan_rules(TABLE, NETWORKS)
    check("nft_networks.nft", script)
    check_json("nft_networks_forward.json", [[b.name, b.internal] for b in fwd])


def test_one_bridge_icc_off_single_port_needs_no_bridge_rule() -> None:
    bridges = [BridgeRules("br-one", "10.1.0.0/24", icc=False, ports=("vethaaaaaaa",))]
    ports = [PortMap("tcp", "10.0.0.5", 443, "10.1.0.2", 8443, "br-one")]
    check("nft_single_icc_off.nft", plan_table(TABLE, bridges, ports))


def test_iptables_forward_accepts() -> None:
    bridges = [ForwardBridge("docker0"), ForwardBridge("br-internal", internal=True), ForwardBridge("br-new")]
    listing = "\n".join([
        "-P FORWARD DROP",
        "-A FORWARD -j DOCKER-USER",
        f'-A FORWARD -i docker0 -m comment --comment "{TABLE}" -j ACCEPT',  # wanted, kept
        f"-A FORWARD -i br-gone -m comment --comment {TABLE} -j ACCEPT",  # stale, deleted
        "-A FORWARD -i br-gone -m comment --comment someone-else -j ACCEPT",  # not ours
    ])  # fmt: skip
    check_json("iptables_forward.json", {
        "specs": forward_accept_specs(TABLE, bridges),
        "plan": [" ".join(argv) for argv in plan_forward_accept(listing, TABLE, bridges)],
        "plan_when_current": plan_forward_accept(
            "\n".join(f"-A FORWARD {s}" for s in forward_accept_specs(TABLE, bridges)), TABLE, bridges
        ),
    })  # fmt: skip
