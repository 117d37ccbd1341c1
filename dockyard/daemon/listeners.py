"""The listen addresses (`-H`) and the security of the TCP ones: checked before anything serves.

Owns the decision whether a listener may open and the server's SSL context. Access to the
API is root on the host, so TCP fails closed (stricter than dockerd 28, which still
serves plain TCP after a warning and a delay):

- TLS is on with `--tls` or `--tlsverify` (giving `--tlsverify` at all turns TLS on, and
  `--tls` alone implies verification unless `--tlsverify=false`: dockerd's rules). Then
  `--tlscert` and `--tlskey` must name files that load, and with verification
  `--tlscacert` too: clients must present a certificate signed by that CA, and only that
  CA (no system roots: mutual TLS).
- A `tcp://` host without TLS needs an explicit `--tls=false`, and is loudly logged with
  dockerd's own warnings. TLS without client verification (`--tlsverify=false`) is
  logged the same way: anyone who reaches the port is root.
- Every other combination is a `ListenerConfigError`: the daemon exits 1 with its message
  before it creates its roots or opens any socket.

It must not open sockets itself (lifecycle does, with what this returns).
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass

__all__ = ["Listener", "ListenerConfigError", "plan_listeners"]

log = logging.getLogger(__name__)


class ListenerConfigError(Exception):
    """A host or TLS setting that must not serve; the message says what to change."""


@dataclass(frozen=True)
class Listener:
    host: str  # as given: unix:///path or tcp://addr:port
    kind: str  # "unix" or "tcp"
    address: str  # the socket path, or the host part of a TCP address
    port: int = 0


def _parse_host(host: str) -> Listener:
    if host.startswith("unix://"):
        path = host[len("unix://") :]
        if not path.startswith("/"):
            raise ListenerConfigError(f"invalid host {host!r}: a unix socket needs an absolute path")
        return Listener(host, "unix", path)
    if host.startswith("tcp://"):
        addr, _, port = host[len("tcp://") :].rpartition(":")
        if not addr:  # tcp://HOST without a port: dockerd's default TLS port 2376 or plain 2375
            addr, port = port, ""
        try:
            number = int(port) if port else 0
        except ValueError:
            raise ListenerConfigError(f"invalid host {host!r}: bad port {port!r}") from None
        if not 0 <= number <= 65535:
            raise ListenerConfigError(f"invalid host {host!r}: bad port {port!r}")
        return Listener(host, "tcp", addr.strip("[]") or "0.0.0.0", number)
    raise ListenerConfigError(f"unsupported host {host!r} (use unix:// or tcp://)")


def _need_file(flag: str, path: str | None, why: str) -> str:
    if not path:
        raise ListenerConfigError(f"{flag} is required {why}")
    if not os.path.isfile(path):
        raise ListenerConfigError(f"could not read {flag} {path}: no such file")
    return path


def _warn_unauthenticated(host: str, tls: bool) -> None:
    # dockerd's words, so operators searching for them find the same advice
    what = "without TLS client verification (--tlsverify=false)" if tls else "without TLS (--tls=false)"
    log.warning("Binding to IP address without --tlsverify is insecure and gives root access on this "
                "machine to everyone who has access to your network. host=%s", host)  # fmt: skip
    log.warning("Binding to an IP address, even on localhost, can also give access to scripts run in a "
                "browser. Be safe out there! host=%s", host)  # fmt: skip
    log.warning("API is accessible on %s %s: access to the remote API is equivalent to root access on "
                "the host. Use --tlsverify with --tlscacert, --tlscert and --tlskey", host, what)  # fmt: skip


def plan_listeners(
    hosts: list[str],
    *,
    tls: bool | None,
    tlsverify: bool | None,
    tlscacert: str | None,
    tlscert: str | None,
    tlskey: str | None,
) -> tuple[list[Listener], ssl.SSLContext | None]:
    """The listeners to open and the SSL context of the TCP ones (None: plain).

    Raises `ListenerConfigError` for any combination that must not serve."""
    if not hosts:
        raise ListenerConfigError("no hosts configured")
    listeners = [_parse_host(h) for h in hosts]
    tcp = [x for x in listeners if x.kind == "tcp"]
    use_tls = bool(tls) or tlsverify is not None
    verify = use_tls and tlsverify is not False
    if tls is False and tlsverify is not None:
        raise ListenerConfigError("conflicting options: --tls=false with --tlsverify")

    ctx: ssl.SSLContext | None = None
    if use_tls:
        why = "with --tlsverify (mutual TLS)" if verify else "with --tls"
        cert = _need_file("--tlscert", tlscert, why)
        key = _need_file("--tlskey", tlskey, why)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as err:
            raise ListenerConfigError(f"invalid TLS configuration: cannot load --tlscert {cert} and --tlskey {key}: {err}") from None
        if verify:
            ca = _need_file("--tlscacert", tlscacert, why)
            try:
                # only this CA: a server context starts with no trusted roots at all
                ctx.load_verify_locations(cafile=ca)
            except (ssl.SSLError, OSError) as err:
                raise ListenerConfigError(f"invalid TLS configuration: cannot load --tlscacert {ca}: {err}") from None
            ctx.verify_mode = ssl.CERT_REQUIRED

    for x in tcp:
        if verify:
            continue
        if use_tls:
            _warn_unauthenticated(x.host, tls=True)
        elif tls is False:
            _warn_unauthenticated(x.host, tls=False)
        else:
            raise ListenerConfigError(
                f"refusing to listen on {x.host} without TLS: access to the API is root access on this host; "
                "use --tlsverify with --tlscacert, --tlscert and --tlskey (mutual TLS), "
                "or --tls=false to listen without authentication (insecure)"
            )
    return listeners, ctx
