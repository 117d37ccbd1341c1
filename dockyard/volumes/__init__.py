"""Volumes: the local driver (directories under the data root) and the service that owns them."""

from dockyard.volumes.service import ANONYMOUS_LABEL, VolumeInUse, VolumeNotFound, VolumeService

__all__ = ["ANONYMOUS_LABEL", "VolumeInUse", "VolumeNotFound", "VolumeService"]
