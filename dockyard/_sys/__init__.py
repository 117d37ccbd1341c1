"""Kernel and process seam: subprocesses, mounts, atomic files."""
