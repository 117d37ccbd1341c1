"""The local image store: content, references, layers, archives and the image service."""

from dockyard.images.service import Image, ImageNotFound, ImageService

__all__ = ["Image", "ImageNotFound", "ImageService"]
