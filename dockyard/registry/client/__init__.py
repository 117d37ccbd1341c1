"""The daemon's registry client: auth, manifest resolution, blob transfer."""

from dockyard.registry.client.auth import AuthConfig, auth_for_host, decode_registry_auth, registry_host
from dockyard.registry.client.resolve import Descriptor, ImageManifest, parse_image_manifest, select_platform
from dockyard.registry.client.session import (
    BlobDigestMismatch,
    Manifest,
    ManifestUnknown,
    RegistryClient,
    RegistryRequestError,
    Unauthorized,
)

__all__ = [
    "AuthConfig",
    "BlobDigestMismatch",
    "Descriptor",
    "ImageManifest",
    "Manifest",
    "ManifestUnknown",
    "RegistryClient",
    "RegistryRequestError",
    "Unauthorized",
    "auth_for_host",
    "decode_registry_auth",
    "parse_image_manifest",
    "registry_host",
    "select_platform",
]
