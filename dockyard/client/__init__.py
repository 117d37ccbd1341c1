"""Dockyard's client: docker-py underneath, errdefs errors on top. The CLI's only way to the daemon."""

from dockyard.client._errors import is_from_daemon
from dockyard.client.connection import DEFAULT_HOST, Client, resolve_host
from dockyard.client.framing import FrameDecoder, JSONLineDecoder
from dockyard.client.hijack import HijackedConn

__all__ = [
    "DEFAULT_HOST",
    "Client",
    "FrameDecoder",
    "HijackedConn",
    "JSONLineDecoder",
    "is_from_daemon",
    "resolve_host",
]
