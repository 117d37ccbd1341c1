"""Builds images from Dockerfiles: parser, context, cache, stage graph, and the service."""

from dockyard.build.builder import Builder, BuildError, BuildOptions
from dockyard.build.cache import BuildCache
from dockyard.build.service import BuildService

__all__ = ["BuildCache", "BuildError", "BuildOptions", "BuildService", "Builder"]
