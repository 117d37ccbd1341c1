"""Startup, listening, reconcile and shutdown.

SIGTERM stops the daemon cleanly and leaves containers and exec processes running
(live-restore): conmon owns each one's stdio, log and exit code, so nothing is lost while
we are away. On start the container and exec services reconcile their records against
what conmon left behind, and the build service removes the RUN containers of builds that
ended with the previous daemon.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
from pathlib import Path

from aiohttp import web

from dockyard import idmap
from dockyard.api.streams import cancel_long_lived
from dockyard.daemon.config import DaemonConfig
from dockyard.daemon.wiring import build

log = logging.getLogger(__name__)


def _tls_context(cfg: DaemonConfig) -> ssl.SSLContext | None:
    if not (cfg.tlscert and cfg.tlskey):
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cfg.tlscert, cfg.tlskey)
    if cfg.tlsverify:
        ctx.verify_mode = ssl.CERT_REQUIRED
        if cfg.tlscacert:
            ctx.load_verify_locations(cfg.tlscacert)
    return ctx


def _setup_remap(cfg: DaemonConfig) -> None:
    """`--userns-remap`: resolve the ranges and move the state to the remapped subtree."""
    if not cfg.userns_remap:
        return
    try:
        user, group = idmap.resolve_remap(cfg.userns_remap)
        if user == "root":
            log.warning("User namespaces: root cannot be remapped with itself; user namespaces are OFF")
            return
        log.info("User namespaces: ID ranges will be mapped to subuid/subgid ranges of: %s", user)
        cfg.id_mapping = idmap.load_mapping(user, group)
        cfg.data_root = idmap.setup_remapped_root(cfg.data_root, cfg.id_mapping)
    except idmap.RemapError as err:  # dockerd exits at startup with the same words
        raise SystemExit(f"dockyardd: {err}") from None


async def serve(cfg: DaemonConfig) -> None:
    _setup_remap(cfg)
    cfg.data_root.mkdir(parents=True, exist_ok=True, mode=0o711)
    cfg.exec_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    if cfg.pidfile:
        cfg.pidfile.write_text(f"{os.getpid()}\n")
    graph = build(cfg)
    await graph.start()

    our_sockets: dict[Path, int] = {}
    # Streams (attach, exec, logs -f, wait, events) would hold aiohttp's graceful wait for
    # the whole shutdown_timeout; cut them first so SIGTERM stops the daemon at once.
    graph.app.on_shutdown.append(lambda _app: cancel_long_lived())
    runner = web.AppRunner(graph.app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    for host in cfg.hosts:
        if host.startswith("unix://"):
            path = Path(host[len("unix://") :])
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_socket():
                path.unlink()
            site: web.BaseSite = web.UnixSite(runner, str(path))
            await site.start()
            os.chmod(path, 0o660)
            our_sockets[path] = path.stat().st_ino
        elif host.startswith("tcp://"):
            hostport = host[len("tcp://") :]
            h, _, p = hostport.rpartition(":")
            site = web.TCPSite(runner, h or "0.0.0.0", int(p or 2375), ssl_context=_tls_context(cfg))
            await site.start()
        else:
            raise SystemExit(f"dockyardd: unsupported host {host!r} (use unix:// or tcp://)")
        log.info("listening on %s", host)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down; containers keep running")
    await runner.cleanup()
    await graph.stop()
    for path, ino in our_sockets.items():
        # a daemon started after us on the same path owns it now; leave its socket alone
        if path.exists() and path.stat().st_ino == ino:
            path.unlink()
    if cfg.pidfile:
        cfg.pidfile.unlink(missing_ok=True)
