"""The daemon's registry settings and which endpoints serve a registry.

Owns daemon.json's `insecure-registries`, `registry-mirrors`, `allowed-registries` and the
certs dir, and the choice of endpoints: mirrors first for docker.io only (dockerd's rule);
for loopback and insecure registries unverified TLS, then plain HTTP; verified TLS
otherwise. It must not transfer anything: `pull.py` and `push.py` do, with these settings.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from dockyard import errdefs
from dockyard.images import reference
from dockyard.registry.client import AuthConfig, RegistryClient

__all__ = ["RegistrySettings"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistrySettings:
    insecure: tuple[str, ...] = ()
    mirrors: tuple[str, ...] = ()
    # host[:port] glob patterns this daemon may contact (daemon.json "allowed-registries");
    # empty means any. Test daemons allow only loopback, so no test can reach Docker Hub.
    allowed: tuple[str, ...] = ()
    # <certs_dir>/<host[:port]>/ca.crt: the CA of a registry's TLS certificate (dockerd's
    # /etc/docker/certs.d); such a registry is reached over verified TLS, loopback or not
    certs_dir: str = "/etc/dockyard/certs.d"

    def ca_file(self, host: str) -> str | None:
        path = os.path.join(self.certs_dir, host, "ca.crt")
        return path if os.path.isfile(path) else None

    def candidates(self, domain: str, auth: AuthConfig) -> list[RegistryClient]:
        """How to reach a registry, in dockerd's order: verified TLS with its CA from the
        certs dir; for an insecure registry (loopback, `insecure-registries`) TLS without
        verification, then plain HTTP; otherwise verified TLS."""
        ca = self.ca_file(domain)
        if ca is None and self.is_insecure(domain):
            return [
                RegistryClient(domain, auth=auth, verify=False),
                RegistryClient(domain, insecure=True, auth=auth),
            ]
        return [RegistryClient(domain, auth=auth, ca_file=ca)]

    @asynccontextmanager
    async def connect(self, domain: str, auth: AuthConfig) -> AsyncIterator[RegistryClient]:
        """An open client of the first candidate that answers `GET /v2/` (any HTTP status;
        only a failed connection or TLS handshake moves on to the next)."""
        self.check_allowed(domain)
        clients = self.candidates(domain, auth)
        for i, rc in enumerate(clients):
            async with rc:
                if i < len(clients) - 1:
                    try:
                        await rc.ping()
                    except errdefs.Unavailable as err:
                        log.debug("%s: %s; trying the next endpoint", rc.base, err)
                        continue
                yield rc
                return

    def check_allowed(self, host: str) -> None:
        if self.allowed and not any(fnmatch.fnmatch(host, pat) for pat in self.allowed):
            raise errdefs.PermissionDenied(f"registry {host} is not in this daemon's allowed-registries")

    def is_insecure(self, host: str) -> bool:
        name = host.rsplit(":", 1)[0].strip("[]") if host.count(":") <= 1 or host.startswith("[") else host
        if name == "localhost":
            return True
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            ip = None
        if ip is not None and ip.is_loopback:
            return True
        for entry in self.insecure:
            if entry in (host, name):
                return True
            if ip is not None and "/" in entry:
                try:
                    if ip in ipaddress.ip_network(entry, strict=False):
                        return True
                except ValueError:
                    continue
        return False

    def mirrors_for(self, domain: str) -> list[RegistryClient]:
        """Pull-through mirrors, tried before the registry itself: docker.io's only (dockerd)."""
        self.check_allowed(domain)
        out = []
        if domain == reference.DEFAULT_DOMAIN:
            for m in self.mirrors:
                self.check_allowed(m.split("://", 1)[-1].split("/", 1)[0])
                out.append(
                    RegistryClient(domain, insecure=m.startswith("http://"), auth=AuthConfig(), endpoint=m)
                )
        return out
