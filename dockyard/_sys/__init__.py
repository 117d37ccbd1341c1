"""Kernel and process seam: subprocesses, mounts, atomic files, lookups confined to a root
(rootdir)."""
