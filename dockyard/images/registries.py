"""The daemon's distribution service: what the API calls for pull, push, login and
`/distribution/{name}/json`.

The transfers themselves are in `pull.py` and `push.py`, the registry settings and the
choice of endpoints in `endpoints.py` (re-exported here). Both transfers import the
settings from `endpoints`, never from here, so this module imports them at the top: no
import loop hidden in function bodies (issue 13).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from dockyard import errdefs
from dockyard.images import platforms, reference
from dockyard.images.endpoints import RegistrySettings
from dockyard.images.progress import Event
from dockyard.images.pull import pull
from dockyard.images.push import push
from dockyard.images.store import ImageStore
from dockyard.registry import spec
from dockyard.registry.client import (
    auth_for_host,
    decode_registry_auth,
    registry_host,
    select_platform,
)
from dockyard.registry.client.auth import from_dict

__all__ = ["DistributionService", "RegistrySettings"]


@dataclass
class DistributionService:
    """Flow::

    async for ev in dist.pull("busybox", tag="", auth_header=h): ...   # progress.Event
    async for ev in dist.push("127.0.0.1:5000/bb", tag="", auth_header=h): ...
    await dist.login({"username": ..., "password": ..., "serveraddress": ...})
    """

    images: ImageStore
    settings: RegistrySettings = field(default_factory=RegistrySettings)

    def pull(
        self, name: str, tag: str, auth_header: str | None, platform: str | None = None
    ) -> AsyncGenerator[Event, None]:
        if platform:
            platforms.parse(platform)  # dockerd refuses a bad platform before it looks at the name
        ref = _ref(name, tag)
        return pull(self.images, self.settings, ref, decode_registry_auth(auth_header), platform)

    def pull_for_build(self, image: str, registry_config: str | None) -> AsyncGenerator[Event, None]:
        """A builder's pull of a base image, with the credentials of the build request's
        `X-Registry-Config` map."""
        ref = reference.parse_normalized(image).with_default_tag()
        return pull(self.images, self.settings, ref, auth_for_host(registry_config, ref.domain), None)

    def push(self, name: str, tag: str, auth_header: str | None) -> AsyncGenerator[Event, None]:
        ref = reference.parse_normalized(name)
        if tag:
            ref = ref.with_tag(tag)
        return push(self.images, self.settings, ref, decode_registry_auth(auth_header))

    async def login(self, body: dict[str, Any]) -> dict[str, str]:
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
