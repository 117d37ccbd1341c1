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
from dockyard.daemon.listeners import Listener, ListenerConfigError, plan_listeners
from dockyard.daemon.reload import reload
from dockyard.daemon.roots import RootInUse, prepare_roots, tighten_content
from dockyard.daemon.wiring import build

log = logging.getLogger(__name__)


class StartupError(Exception):
    """A setting or a clash that stops the daemon before it serves (exit 1, the message)."""


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
        tighten_content(cfg.data_root, remapped_gid=cfg.id_mapping.root_pair[1])
    except idmap.RemapError as err:  # dockerd exits at startup with the same words
        raise SystemExit(f"dockyardd: {err}") from None


async def serve(cfg: DaemonConfig) -> None:
    # Everything that can refuse a start is checked before anything is created or served.
    try:
        listeners, tls = plan_listeners(
            cfg.hosts, tls=cfg.tls, tlsverify=cfg.tlsverify, tlscacert=cfg.tlscacert, tlscert=cfg.tlscert,
            tlskey=cfg.tlskey,
        )  # fmt: skip
        locks = prepare_roots(cfg.data_root, cfg.exec_root)
    except (ListenerConfigError, RootInUse) as err:
        raise StartupError(str(err)) from None
    try:
        _setup_remap(cfg)  # the lock stays on the data root itself; the state moves below it
        await _serve_locked(cfg, listeners, tls)
    finally:
        locks.close()


async def _serve_locked(cfg: DaemonConfig, listeners: list[Listener], tls: ssl.SSLContext | None) -> None:
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
    for x in listeners:
        if x.kind == "unix":
            path = Path(x.address)
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_socket():
                path.unlink()
            site: web.BaseSite = web.UnixSite(runner, str(path))
            await site.start()
            os.chmod(path, 0o660)
            our_sockets[path] = path.stat().st_ino
        else:
            port = x.port or (2376 if tls else 2375)  # dockerd's defaults
            site = web.TCPSite(runner, x.address, port, ssl_context=tls)
            await site.start()
        log.info("listening on %s%s", x.host, " (mutual TLS)" if x.kind == "tcp" and tls and
                 tls.verify_mode == ssl.CERT_REQUIRED else "")  # fmt: skip

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload, cfg, graph.app)  # daemon.json again, as dockerd
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
