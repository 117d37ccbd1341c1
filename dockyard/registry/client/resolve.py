"""Manifest resolution (sans-IO): pick a platform from an index, read an image manifest.

Owns the rules for choosing one image from a manifest list / OCI index (os/arch/variant,
attestation entries ignored, like BuildKit's `unknown/unknown` ones) and the checks on an
image manifest's config and layers. It does no IO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dockyard import errdefs
from dockyard.registry import spec

__all__ = ["Descriptor", "ImageManifest", "parse_image_manifest", "select_platform"]


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageManifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]


def _desc(d: Any) -> Descriptor:
    if not isinstance(d, dict) or not spec.is_digest(str(d.get("digest", ""))):
        raise errdefs.InvalidArgument("invalid descriptor in manifest")
    return Descriptor(
        str(d.get("mediaType", "")), str(d["digest"]), int(d.get("size") or 0), tuple(d.get("urls") or ())
    )


def parse_image_manifest(doc: dict[str, Any]) -> ImageManifest:
    if "config" not in doc or not isinstance(doc.get("layers"), list):
        raise errdefs.InvalidArgument("invalid image manifest: config and layers are required")
    return ImageManifest(_desc(doc["config"]), tuple(_desc(x) for x in doc["layers"]))


def select_platform(index: dict[str, Any], os: str = "linux", arch: str = "amd64", variant: str = "") -> str:
    """The digest of the best entry for os/arch[/variant]; NotFound names the platform."""
    best: tuple[int, str] | None = None
    for m in index.get("manifests") or []:
        ann = m.get("annotations") or {}
        if spec.ARTIFACT_REFERENCE_TYPE in ann:
            continue
        p = m.get("platform") or {}
        if p.get("os") != os or p.get("architecture") != arch:
            continue
        score = 0
        if variant and p.get("variant") == variant:
            score = 2
        elif not p.get("variant"):
            score = 1
        if best is None or score > best[0]:
            best = (score, str(m["digest"]))
    if best is None:
        want = f"{os}/{arch}" + (f"/{variant}" if variant else "")
        raise errdefs.NotFound(f"no matching manifest for {want} in the manifest list entries")
    return best[1]
