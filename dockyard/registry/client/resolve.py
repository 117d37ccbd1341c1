"""Manifest resolution (sans-IO): pick a platform from an index, read an image manifest.

Owns the rules for choosing one image from a manifest list / OCI index (os/arch/variant,
attestation entries ignored, like BuildKit's `unknown/unknown` ones) and the checks on an
image manifest's config and layers. It does no IO.

Manifests come from registries, which are not trusted: every descriptor's digest must be
one of the spec's (it becomes a URL and a path in the blob store), its media type must be
an RFC 6838 type and its size a non-negative integer (the download stops there).
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
    if not isinstance(d, dict):
        raise errdefs.InvalidArgument("invalid descriptor in manifest")
    digest = d.get("digest")
    problem = spec.digest_problem(digest) if isinstance(digest, str) else "digest is not a string"
    if problem is not None:
        raise errdefs.InvalidArgument(f"invalid descriptor in manifest: {problem}")
    mt = d.get("mediaType", "")
    if not isinstance(mt, str) or (mt and not spec.is_media_type(mt)):
        raise errdefs.InvalidArgument(f"invalid descriptor in manifest: media type {str(mt)[:100]!r}")
    size = d.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise errdefs.InvalidArgument(f"invalid descriptor in manifest: size {str(size)[:40]!r}")
    urls = d.get("urls") or ()
    if not isinstance(urls, list | tuple) or not all(isinstance(u, str) for u in urls):
        raise errdefs.InvalidArgument("invalid descriptor in manifest: urls")
    return Descriptor(mt, str(digest), size, tuple(urls))


def parse_image_manifest(doc: dict[str, Any]) -> ImageManifest:
    if "config" not in doc or not isinstance(doc.get("layers"), list):
        raise errdefs.InvalidArgument("invalid image manifest: config and layers are required")
    return ImageManifest(_desc(doc["config"]), tuple(_desc(x) for x in doc["layers"]))


def select_platform(index: dict[str, Any], os: str = "linux", arch: str = "amd64", variant: str = "") -> str:
    """The digest of the best entry for os/arch[/variant]; NotFound names the platform."""
    best: tuple[int, str] | None = None
    entries = index.get("manifests") or []
    if not isinstance(entries, list):
        raise errdefs.InvalidArgument("invalid manifest list: manifests is not a list")
    for m in entries:
        if not isinstance(m, dict):
            raise errdefs.InvalidArgument("invalid descriptor in manifest list")
        ann = m.get("annotations") or {}
        if isinstance(ann, dict) and spec.ARTIFACT_REFERENCE_TYPE in ann:
            continue
        p = m.get("platform") or {}
        if not isinstance(p, dict) or p.get("os") != os or p.get("architecture") != arch:
            continue
        digest = m.get("digest")
        problem = spec.digest_problem(digest) if isinstance(digest, str) else "digest is not a string"
        if problem is not None:  # the chosen entry's digest becomes the next request's URL
            raise errdefs.InvalidArgument(f"invalid descriptor in manifest list: {problem}")
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
