"""The embedded DNS resolver at 127.0.0.11 inside containers on user-defined networks.

Message handling is sans-IO (`parse_query`, `answer`, `servfail`): bytes in, bytes out. The
`Resolver` serves one container: its UDP and TCP sockets are opened inside the container's
network namespace (so they listen on the container's own 127.0.0.11:53) and are served by
the daemon's event loop. Names of containers, their aliases and short IDs on the networks
the container shares resolve locally; anything else is relayed to the host's resolvers
(from /etc/resolv.conf) from the daemon's own namespace.

A container controls how fast queries arrive, so everything a query holds is bounded:
at most `MAX_PENDING` queries of one container wait for an upstream answer (more get an
immediate SERVFAIL, which a stub resolver treats as "try again later"); at most
`MAX_FORWARDS` upstream sockets exist daemon-wide (each relay opens one, and closes it when
the answer, the timeout or a cancel comes); at most `MAX_TCP` TCP connections per container,
each closed after `TCP_IDLE` seconds without a query.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard._sys.netns import run_in_netns

log = logging.getLogger(__name__)

ADDRESS = "127.0.0.11"
TYPE_A = 1
TYPE_AAAA = 28
CLASS_IN = 1
Lookup = Callable[[str], list[str] | None]  # name -> IPv4 addresses; None = not ours

MAX_PENDING = 64  # one container's queries waiting for an upstream answer
MAX_FORWARDS = 256  # upstream sockets open at once, all containers together
MAX_TCP = 16  # one container's TCP connections to its resolver
TCP_IDLE = 10.0  # seconds a TCP connection may wait for its next query
FORWARD_TIMEOUT = 3.0  # seconds per upstream server
_forward_slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}


def _slots() -> asyncio.Semaphore:
    """The daemon-wide bound on upstream sockets (one per event loop: tests run several)."""
    loop = asyncio.get_running_loop()
    sem = _forward_slots.get(loop)
    if sem is None:
        _forward_slots.clear()  # a finished loop's semaphore is of no more use
        sem = _forward_slots[loop] = asyncio.Semaphore(MAX_FORWARDS)
    return sem


@dataclass(frozen=True)
class Query:
    id: int
    flags: int
    name: str  # lowercase, no trailing dot
    qtype: int
    qclass: int
    question: bytes  # the question section as sent (echoed in the answer)


def parse_query(msg: bytes) -> Query | None:
    if len(msg) < 12:
        return None
    qid, flags, qd = struct.unpack("!HHH", msg[:6])
    if flags & 0x8000 or qd != 1:
        return None
    labels, i = [], 12
    while True:
        if i >= len(msg):
            return None
        n = msg[i]
        i += 1
        if n == 0:
            break
        if n & 0xC0 or i + n > len(msg):
            return None
        labels.append(msg[i : i + n].decode("ascii", "replace"))
        i += n
    if i + 4 > len(msg):
        return None
    qtype, qclass = struct.unpack("!HH", msg[i : i + 4])
    return Query(qid, flags, ".".join(labels).lower(), qtype, qclass, msg[12 : i + 4])


def _header(q: Query, rcode: int, ancount: int) -> bytes:
    flags = 0x8000 | 0x0400 | (q.flags & 0x0100) | 0x0080 | rcode  # QR, AA, RD copied, RA
    return struct.pack("!HHHHHH", q.id, flags, 1, ancount, 0, 0)


def answer(q: Query, addrs: list[str], ttl: int = 600) -> bytes:
    """A records for an A question; an empty NOERROR answer for other types of our names."""
    records = b""
    count = 0
    if q.qtype == TYPE_A and q.qclass == CLASS_IN:
        for a in addrs:
            records += struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, ttl, 4) + socket.inet_aton(a)
            count += 1
    return _header(q, 0, count) + q.question + records


def servfail(q: Query) -> bytes:
    return _header(q, 2, 0) + q.question


def host_nameservers(path: Path = Path("/etc/resolv.conf")) -> list[str]:
    try:
        text = path.read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver" and ":" not in parts[1]:
            out.append(parts[1])
    return out


def embedded_resolv_conf(host_resolv: Path = Path("/etc/resolv.conf"), search: list[str] | None = None,
                         options: list[str] | None = None) -> str:
    """Docker's resolv.conf for user-defined networks: the embedded server, the host's search list."""
    lines = [f"nameserver {ADDRESS}"]
    host_search: list[str] = []
    host_opts: list[str] = []
    try:
        for line in host_resolv.read_text().splitlines():
            parts = line.split()
            if parts and parts[0] in ("search", "domain"):
                host_search = parts[1:]
            elif parts and parts[0] == "options":
                host_opts += parts[1:]
    except OSError:
        pass
    srch = search if search else host_search
    if srch:
        lines.append("search " + " ".join(srch))
    opts = list(options) if options else [o for o in host_opts if not o.startswith("ndots")]
    lines.append("options " + " ".join(["ndots:0", *opts]))
    return "\n".join(lines) + "\n"


async def forward(msg: bytes, servers: list[str], timeout: float = FORWARD_TIMEOUT) -> bytes | None:
    """Relay a query to the host's resolvers over UDP, first answer wins. Each try holds one
    of the daemon-wide socket slots, and its socket is closed as soon as the try ends."""
    async with _slots():
        return await _forward_locked(msg, servers, timeout)


async def _forward_locked(msg: bytes, servers: list[str], timeout: float) -> bytes | None:
    loop = asyncio.get_running_loop()
    for server in servers:
        fut: asyncio.Future[bytes] = loop.create_future()

        class _P(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object, fut: asyncio.Future[bytes] = fut) -> None:
                if not fut.done():
                    fut.set_result(data)

        try:
            transport, _ = await loop.create_datagram_endpoint(_P, remote_addr=(server, 53))
        except OSError:
            continue
        try:
            transport.sendto(msg)
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            continue
        finally:
            transport.close()
    return None


def _open_sockets() -> tuple[socket.socket, socket.socket]:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # 127.0.0.11 is on the container's lo (127/8), which must be up first
        from dockyard._sys.netns import _lo_up_here

        _lo_up_here()
        u.bind((ADDRESS, 53))
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind((ADDRESS, 53))
        t.listen(64)
        u.setblocking(False)
        t.setblocking(False)
    except BaseException:
        u.close()
        t.close()
        raise
    return u, t


class Resolver:
    """One container's resolver. `open` binds inside the namespace; `close` ends it."""

    def __init__(self, netns: str, lookup: Lookup, upstream: Callable[[], list[str]] = host_nameservers) -> None:
        self.netns = netns
        self.lookup = lookup
        self.upstream = upstream
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending = 0  # queries waiting for an upstream answer
        self._tcp_conns = 0
        self.refused = 0  # queries answered SERVFAIL because MAX_PENDING were waiting

    def statistics(self) -> dict[str, int]:
        return {"pending": self._pending, "tasks": len(self._tasks), "tcp": self._tcp_conns,
                "refused": self.refused}  # fmt: skip

    def __repr__(self) -> str:
        return f"<Resolver {self.netns} {'open' if self._udp else 'closed'}>"

    async def open(self) -> None:
        u, t = await asyncio.to_thread(run_in_netns, self.netns, _open_sockets)
        loop = asyncio.get_running_loop()
        resolver = self

        class _UDP(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                # a task per query only while under the bound: a flood costs no memory
                if len(resolver._tasks) < MAX_PENDING + MAX_TCP:
                    resolver._spawn(resolver._reply_udp(data, addr))
                else:
                    resolver.refused += 1

        try:
            self._udp, _ = await loop.create_datagram_endpoint(_UDP, sock=u)
            self._tcp = await asyncio.start_server(self._serve_tcp, sock=t)
        except BaseException:
            u.close()
            t.close()
            raise

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resolve(self, msg: bytes) -> bytes | None:
        q = parse_query(msg)
        if q is None:
            return None
        try:
            addrs = self.lookup(q.name)
        except Exception:  # a task root: never let one query kill the server
            log.exception("dns lookup of %s", q.name)
            return servfail(q)
        if addrs is not None:
            return answer(q, addrs)
        if self._pending >= MAX_PENDING:
            self.refused += 1
            return servfail(q)
        self._pending += 1
        try:
            reply = await forward(msg, self.upstream())
        finally:
            self._pending -= 1
        return reply if reply is not None else servfail(q)

    async def _reply_udp(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = await self.resolve(data)
        if reply is not None and self._udp is not None:
            self._udp.sendto(reply, addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._tcp_conns >= MAX_TCP:  # each connection is a daemon fd: a container gets a few
            writer.close()
            return
        self._tcp_conns += 1
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE):
                    n = struct.unpack("!H", await reader.readexactly(2))[0]
                    msg = await reader.readexactly(n)
                reply = await self.resolve(msg)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            self._tcp_conns -= 1
            writer.close()

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None
        for t in list(self._tasks):
            t.cancel()
