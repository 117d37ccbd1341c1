"""nftables rules for NAT, published ports and isolation, in one table of the daemon's own,
plus host-port reservations.

The whole table is planned from the networks' state (`plan_table`, pure) and replaced in one
atomic `nft -f -` transaction (`apply_table`), so the kernel never sees half a change and a
daemon restart simply plans it again. The table is `ip dockyard-<hash of the data root>`,
so daemons side by side (tests, a real dockerd's own tables) never touch each other's rules.

    table ip dockyard-1a2b3c4d
      chain forward      filter/forward: isolation between our bridges, internal networks,
                         then accept our bridges' traffic (a real dockerd's FORWARD policy
                         is DROP; our accept keeps our own table's verdict explicit)
      chain prerouting   nat/dstnat:  local destinations → chain publish
      chain output       nat/output:  local destinations → chain publish (the host's own
                         clients, 127.0.0.1 included: route_localnet on our bridges)
      chain publish      one DNAT per published port
      chain postrouting  nat/srcnat: masquerade outbound traffic of each masquerading bridge,
                         and loopback or hairpin sources DNATed into a bridge

A published port is also *reserved*: the daemon binds (without listening) a socket on the
host address and port, so another program cannot take it and a taken port is a clear error
before any rule exists. `-P` binds port 0 and keeps what the kernel chose.
"""

from __future__ import annotations

import errno
import hashlib
import json
import socket
from dataclasses import dataclass

from dockyard._sys import proc
from dockyard.errdefs import Internal, InvalidArgument


class PortAllocated(Internal):
    """A host port is taken. Docker answers 500 here, and `run --rm` relies on it: a failed
    start of an auto-remove container removes the container (a 409 would leave it)."""


def table_name(data_root: str) -> str:
    return "dockyard-" + hashlib.sha256(data_root.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class BridgeRules:
    name: str
    subnet: str
    internal: bool = False
    masquerade: bool = True
    icc: bool = True
    ports: tuple[str, ...] = ()  # host ends of its endpoints' veths (for icc=false)


@dataclass(frozen=True)
class PortMap:
    proto: str  # tcp | udp | sctp
    host_ip: str  # "" or 0.0.0.0 = every local address
    host_port: int
    ctr_ip: str
    ctr_port: int
    bridge: str


def _q(name: str) -> str:
    return json.dumps(name)


def plan_table(table: str, bridges: list[BridgeRules], ports: list[PortMap]) -> str:
    """The nft script that replaces the table with exactly these rules."""
    fwd: list[str] = []
    names = [b.name for b in bridges]
    for b in bridges:
        others = [n for n in names if n != b.name]
        if b.internal:
            fwd.append(f"iifname {_q(b.name)} oifname != {_q(b.name)} drop")
            fwd.append(f"oifname {_q(b.name)} iifname != {_q(b.name)} drop")
        elif others:
            fwd.append(f"iifname {_q(b.name)} oifname {{ {', '.join(_q(o) for o in others)} }} drop")
    for b in bridges:
        fwd.append(f"iifname {_q(b.name)} accept")
        fwd.append(f"oifname {_q(b.name)} ct state established,related accept")
        fwd.append(f"oifname {_q(b.name)} ct status dnat accept")
    pub: list[str] = []
    for p in ports:
        daddr = f"ip daddr {p.host_ip} " if p.host_ip and p.host_ip != "0.0.0.0" else ""
        pub.append(f"{daddr}{p.proto} dport {p.host_port} dnat to {p.ctr_ip}:{p.ctr_port}")
    post: list[str] = []
    for b in bridges:
        if b.masquerade and not b.internal:
            post.append(f"ip saddr {b.subnet} oifname != {_q(b.name)} masquerade")
        # 127.0.0.1 → container (route_localnet) and container → own published port (hairpin)
        post.append(f"oifname {_q(b.name)} ip saddr 127.0.0.0/8 masquerade")
        post.append(f"oifname {_q(b.name)} ip saddr {b.subnet} ct status dnat masquerade")

    def chain(name: str, hook: str, rules: list[str]) -> str:
        body = "".join(f"    {r}\n" for r in rules)
        return f"  chain {name} {{\n{hook}{body}  }}\n"

    return (
        f"table ip {table}\n"
        f"delete table ip {table}\n"
        f"table ip {table} {{\n"
        + chain("forward", "    type filter hook forward priority filter; policy accept;\n", fwd)
        + chain("publish", "", pub)
        + chain("prerouting", "    type nat hook prerouting priority dstnat; policy accept;\n",
                ["fib daddr type local jump publish"])
        + chain("output", "    type nat hook output priority -100; policy accept;\n",
                ["fib daddr type local jump publish"])
        + chain("postrouting", "    type nat hook postrouting priority srcnat; policy accept;\n", post)
        + "}\n"
        + _plan_bridge_table(table, bridges)
    )  # fmt: skip


def _plan_bridge_table(table: str, bridges: list[BridgeRules]) -> str:
    """enable_icc=false: traffic between two ports of one bridge never reaches the ip
    family's forward hook (that would need br_netfilter), so it is dropped in the bridge
    family, port to port. Traffic to the gateway (the bridge itself) is not forwarded and
    stays allowed, as in Docker."""
    rules = []
    for b in bridges:
        if not b.icc and len(b.ports) > 1:
            ports = "{ " + ", ".join(_q(p) for p in b.ports) + " }"
            rules.append(f"    iifname {ports} oifname {ports} drop\n")
    return (
        f"table bridge {table}\n"
        f"delete table bridge {table}\n"
        f"table bridge {table} {{\n"
        "  chain forward {\n    type filter hook forward priority filter; policy accept;\n"
        + "".join(rules)
        + "  }\n}\n"
    )


async def apply_table(script: str) -> None:
    await proc.run(["nft", "-f", "-"], stdin=script.encode(), timeout=30)


async def delete_table(table: str) -> None:
    # declaring the table first makes the delete succeed whether or not it exists
    script = "".join(f"table {family} {table}\ndelete table {family} {table}\n" for family in ("ip", "bridge"))
    await proc.run(["nft", "-f", "-"], stdin=script.encode(), timeout=30)


async def table_exists(table: str) -> bool:
    res = await proc.run(["nft", "-j", "list", "tables", "ip"], timeout=30)
    data = json.loads(res.stdout or b"{}")
    return any(e.get("table", {}).get("name") == table for e in data.get("nftables", []))


# ---- host port reservations --------------------------------------------------------------------


class PortReservations:
    """Sockets bound (never listening) on published host ports, keyed by (proto, ip, port)."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str, int], socket.socket] = {}

    def reserve(self, proto: str, host_ip: str, port: int) -> int:
        ip = host_ip or "0.0.0.0"
        if (port and (proto, ip, port) in self._held) or (port and (proto, "0.0.0.0", port) in self._held):
            raise PortAllocated(f"Bind for {ip}:{port} failed: port is already allocated")
        if port and ip == "0.0.0.0" and any(k[0] == proto and k[2] == port for k in self._held):
            raise PortAllocated(f"Bind for {ip}:{port} failed: port is already allocated")
        if proto not in ("tcp", "udp", "sctp"):
            raise InvalidArgument(f"invalid protocol {proto}")
        kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
        if ":" in ip:
            raise InvalidArgument(f"publishing on IPv6 address {ip} is not supported")
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind((ip, port))
        except OSError as err:
            s.close()
            if err.errno == errno.EADDRINUSE:
                raise PortAllocated(f"Bind for {ip}:{port} failed: port is already allocated") from None
            if err.errno == errno.EADDRNOTAVAIL:
                raise InvalidArgument(f"Bind for {ip}:{port} failed: cannot assign requested address") from None
            raise
        got = int(s.getsockname()[1])
        self._held[(proto, ip, got)] = s
        return got

    def release(self, proto: str, host_ip: str, port: int) -> None:
        s = self._held.pop((proto, host_ip or "0.0.0.0", port), None)
        if s is not None:
            s.close()

    def close(self) -> None:
        for s in self._held.values():
            s.close()
        self._held.clear()

    def statistics(self) -> dict[str, int]:
        return {"reserved": len(self._held)}


# ---- beside a real dockerd: accept our bridges in iptables' FORWARD chain ----------------------
#
# A real dockerd sets the `ip filter` FORWARD policy to DROP (and adds DOCKER-USER and
# DOCKER-ISOLATION chains). A drop in any base chain is final, so our own table's accept is not
# enough: like netavark, we insert accept rules for our bridges at the top of that FORWARD
# chain, through iptables itself (iptables-nft must be able to read back every rule in its
# tables, or dockerd's own iptables calls break). Each rule carries our table name as its
# comment; the plan deletes our rules that are no longer wanted and inserts the missing ones.
# Nothing happens when the chain does not exist: we never create iptables' tables.


@dataclass(frozen=True)
class ForwardBridge:
    name: str
    internal: bool = False


def forward_accept_specs(tag: str, bridges: list[ForwardBridge]) -> list[str]:
    """The rule specs (as `iptables -S` prints them, without `-A FORWARD`) we want."""
    c = f"-m comment --comment {tag} -j ACCEPT"
    out = []
    for b in bridges:
        if b.internal:
            out.append(f"-i {b.name} -o {b.name} {c}")
            continue
        out.append(f"-i {b.name} {c}")
        out.append(f"-o {b.name} -m conntrack --ctstate RELATED,ESTABLISHED {c}")
        out.append(f"-o {b.name} -m conntrack --ctstate DNAT {c}")
    return out


def plan_forward_accept(listing: str, tag: str, bridges: list[ForwardBridge]) -> list[list[str]]:
    """`iptables -S FORWARD` output -> iptables argv lists that make our rules exactly
    `forward_accept_specs` (pure). Stale rules are deleted; missing ones inserted at the top."""
    want = forward_accept_specs(tag, bridges)
    have = []
    for line in listing.splitlines():
        if line.startswith("-A FORWARD ") and f"--comment {tag} " in line + " ":
            have.append(line[len("-A FORWARD ") :].replace(f'--comment "{tag}"', f"--comment {tag}"))
    cmds = [["-D", "FORWARD", *spec.split()] for spec in have if spec not in want]
    cmds += [["-I", "FORWARD", "1", *spec.split()] for spec in reversed(want) if spec not in have]
    return [["iptables", "-w", *c] for c in cmds]


async def sync_forward_accept(tag: str, bridges: list[ForwardBridge]) -> None:
    """Apply `plan_forward_accept` when iptables' `ip filter` FORWARD chain exists."""
    import shutil

    if not shutil.which("iptables"):
        return
    res = await proc.run(["nft", "list", "chain", "ip", "filter", "FORWARD"], timeout=30, check=False)
    if res.returncode != 0:
        return
    listing = await proc.run(["iptables", "-w", "-S", "FORWARD"], timeout=30)
    for argv in plan_forward_accept(listing.stdout.decode(), tag, bridges):
        await proc.run(argv, timeout=30, check=False)
