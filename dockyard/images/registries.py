"""Which registry endpoints serve a reference, and the daemon's distribution service.

Owns the daemon's registry settings (daemon.json `insecure-registries`, `registry-mirrors`)
and the choice of endpoints: mirrors first for docker.io only (dockerd's rule); for
loopback and insecure registries unverified TLS, then plain HTTP; verified TLS otherwise.
`DistributionService` is what the
API calls for pull, push, login and `/distribution/{name}/json`; the transfers themselves
are in `pull.py` and `push.py`.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from dockyard import errdefs
from dockyard.images import reference
from dockyard.registry import spec
from dockyard.registry.client import (
    AuthConfig,
    RegistryClient,
    auth_for_host,
    decode_registry_auth,
    registry_host,
    select_platform,
)

__all__ = ["DistributionService", "RegistrySettings"]

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
            return [RegistryClient(domain, auth=auth, verify=False), RegistryClient(domain, insecure=True, auth=auth)]
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
                out.append(RegistryClient(domain, insecure=m.startswith("http://"), auth=AuthConfig(), endpoint=m))
        return out


@dataclass
class DistributionService:
    """Flow::

    async for msg in dist.pull("busybox", tag="", auth_header=h): ...   # Docker progress messages
    async for msg in dist.push("127.0.0.1:5000/bb", tag="", auth_header=h): ...
    await dist.login({"username": ..., "password": ..., "serveraddress": ...})
    """

    images: Any  # dockyard.images.service.ImageService
    settings: RegistrySettings = field(default_factory=RegistrySettings)

    def pull(
        self, name: str, tag: str, auth_header: str | None, platform: str | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        from dockyard.images.pull import pull

        ref = _ref(name, tag)
        return pull(self.images, self.settings, ref, decode_registry_auth(auth_header), platform)

    def pull_for_build(self, image: str, registry_config: str | None) -> AsyncGenerator[dict[str, Any], None]:
        """A builder's pull of a base image, with the credentials of the build request's
        `X-Registry-Config` map."""
        from dockyard.images.pull import pull

        ref = reference.parse_normalized(image).with_default_tag()
        return pull(self.images, self.settings, ref, auth_for_host(registry_config, ref.domain), None)

    def push(self, name: str, tag: str, auth_header: str | None) -> AsyncGenerator[dict[str, Any], None]:
        from dockyard.images.push import push

        ref = reference.parse_normalized(name)
        if tag:
            ref = ref.with_tag(tag)
        return push(self.images, self.settings, ref, decode_registry_auth(auth_header))

    async def login(self, body: dict[str, Any]) -> dict[str, str]:
        from dockyard.registry.client.auth import from_dict

        auth = from_dict(body)
        domain = registry_host(auth.server_address)
        async with self.settings.connect(domain, auth) as rc:
            await rc.login()
        return {"Status": "Login Succeeded", "IdentityToken": ""}

    async def inspect(self, name: str, auth_header: str | None) -> dict[str, Any]:
        """GET /distribution/{name}/json: the descriptor and platforms of a remote image."""
        ref = reference.parse_normalized(name).with_default_tag()
        auth = decode_registry_auth(auth_header)
        async with self.settings.connect(ref.domain, auth) as rc:
            m = await rc.get_manifest(ref.path, ref.digest or ref.tag or "latest")
            platforms: list[dict[str, Any]] = []
            doc = m.doc
            if m.media_type in spec.INDEX_TYPES:
                for e in doc.get("manifests") or []:
                    if spec.ARTIFACT_REFERENCE_TYPE in (e.get("annotations") or {}):
                        continue
                    p = e.get("platform") or {}
                    platforms.append(
                        {
                            "architecture": p.get("architecture", ""),
                            "os": p.get("os", ""),
                            **({"variant": p["variant"]} if p.get("variant") else {}),
                        }
                    )
                select_platform(doc)  # raises when linux/amd64 is absent, like dockerd's pull would
            else:
                cfg_desc = doc.get("config") or {}
                try:
                    import json

                    cfg = json.loads(await rc.read_blob(ref.path, str(cfg_desc.get("digest"))))
                    platforms.append({"architecture": cfg.get("architecture", ""), "os": cfg.get("os", "")})
                except errdefs.DockyardError:
                    pass
        return {
            "Descriptor": {"mediaType": m.media_type, "digest": m.digest, "size": len(m.body)},
            "Platforms": platforms,
        }


def _ref(name: str, tag: str) -> reference.Reference:
    ref = reference.parse_normalized(name)
    if tag:
        if tag.startswith("sha256:"):
            ref = reference.Reference(ref.domain, ref.path, None, tag)
        else:
            ref = ref.with_tag(tag)
    return ref.with_default_tag()
