"""Container snapshots over image layers: overlay upper/work dirs and their diffs."""

from dockyard.snapshots.overlay import OverlaySnapshotter

__all__ = ["OverlaySnapshotter"]
