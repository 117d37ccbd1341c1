"""The registry server: an OCI distribution-spec v1.1 aiohttp app over a storage driver."""

from dockyard.registry.server.app import RegistryConfig, make_app
from dockyard.registry.server.auth import Htpasswd, TokenIssuer
from dockyard.registry.server.storage import FilesystemStorage, Storage

__all__ = ["FilesystemStorage", "Htpasswd", "RegistryConfig", "Storage", "TokenIssuer", "make_app"]
