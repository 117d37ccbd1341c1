"""Overlay snapshots for containers: a writable upper and work dir over shared lowers.

Owns `snapshots/` under the data root. The lower directories are image layers owned by the
layer store and shared read-only between every image and container that uses them; this
module only creates and removes the per-container directories and describes the mount as
a `Mount` record. It must not mount anything itself (the container engine does that).

Layout::

    snapshots/<key>/
      upper/     the container's writes (overlay upperdir)
      work/      overlay's scratch space (workdir; same filesystem as upper)
      init/      dockerd's "init layer": empty mount points the runtime would otherwise
                 create in upper (/proc, /sys, /dev/pts, /etc/hosts, ...), so they never
                 show in `docker diff` or in a committed layer; the topmost lowerdir
      lower      the layer keys (chain IDs) the snapshot stands on, bottom first, one a
                 line (overlay2 keeps such a file too): the image store's collector reads
                 them through `pinned()` so a layer a container uses is never removed
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dockyard._sys.mount import Mount
from dockyard.errdefs import InvalidArgument

__all__ = ["INIT_ENTRIES", "OverlaySnapshotter"]

# dockerd's daemon/initlayer: path -> "dir", "file", or a symlink target.
INIT_ENTRIES: dict[str, str] = {
    "dev/pts": "dir",
    "dev/shm": "dir",
    "proc": "dir",
    "sys": "dir",
    ".dockerenv": "file",
    "etc/resolv.conf": "file",
    "etc/hosts": "file",
    "etc/hostname": "file",
    "dev/console": "file",
    "etc/mtab": "/proc/mounts",
}


class OverlaySnapshotter:
    """Flow::

    m = snaps.prepare("3f2a...", [top_layer_dir, ..., bottom_layer_dir])
    mount(m, rootfs)      # by the caller; later: unmount(rootfs)
    snaps.changes / diff over snaps.upper("3f2a...")
    snaps.remove("3f2a...")
    """

    def __init__(self, root: Path, root_pair: tuple[int, int] | None = None) -> None:
        self.root = root
        # a remapped daemon: the container's root owns its upper dir and init entries
        # (dockerd's overlay2 and initlayer chown them to the remapped root too)
        self.root_pair = root_pair
        self.host_hardened = root_pair is None  # rootfs mounts nosuid,nodev on the host
        root.mkdir(mode=0o700, parents=True, exist_ok=True)  # container writes: private

    def _dir(self, key: str) -> Path:
        if not key or "/" in key or key in (".", ".."):
            raise InvalidArgument(f"invalid snapshot key {key!r}")
        return self.root / key

    def upper(self, key: str) -> Path:
        return self._dir(key) / "upper"

    def work(self, key: str) -> Path:
        return self._dir(key) / "work"

    def init_dir(self, key: str) -> Path:
        return self._dir(key) / "init"

    def prepare(self, key: str, lowers: list[Path], pins: list[str] | None = None) -> Mount:
        """Create (idempotently) the snapshot dirs; lowers are top-first. `pins` (the
        layers' keys, bottom first) is recorded in `lower` for `pinned()`."""
        d = self._dir(key)
        (d / "upper").mkdir(parents=True, exist_ok=True)
        if pins is not None:
            self._write_pins(d, pins)
        (d / "work").mkdir(exist_ok=True)
        if self.root_pair is not None:
            os.chown(d / "upper", *self.root_pair)
        self._make_init(d / "init", d / "init.done", self.root_pair)
        lowers = [d / "init", *lowers]
        opts = (
            "lowerdir=" + ":".join(str(p) for p in lowers),
            f"upperdir={d / 'upper'}",
            f"workdir={d / 'work'}",
            # Lowers are shared by many mounts; the inode index would tie a lower to one upper.
            "index=off",
            # The mount is visible on the host: a setuid-root file or a device node that a
            # container made must not work through it (CVE-2021-41091 was this, on dockerd).
            # A remapped daemon's containers cannot clear these flags in their own copy (they
            # are locked for a user namespace), and need not: what they make is owned by the
            # remapped ids, under a subtree host users cannot enter (idmap.py).
            *(("nosuid", "nodev") if self.host_hardened else ()),
        )
        return Mount("overlay", "overlay", opts)

    @staticmethod
    def _make_init(init: Path, done: Path, owner: tuple[int, int] | None = None) -> None:
        if done.exists():
            return
        for rel, kind in INIT_ENTRIES.items():
            p = init / rel
            p.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            if p.exists() or p.is_symlink():
                continue
            if kind == "dir":
                p.mkdir(mode=0o755)
            elif kind == "file":
                p.touch(mode=0o755)
            else:
                p.symlink_to(kind)
        if owner is not None:
            for dirpath, dirnames, filenames in os.walk(init):
                for name in (*dirnames, *filenames):
                    os.chown(os.path.join(dirpath, name), *owner, follow_symlinks=False)
            os.chown(init, *owner)
        done.touch()

    @staticmethod
    def _write_pins(d: Path, pins: list[str]) -> None:
        # written whole and renamed: a reader (the collector, in another thread) never sees
        # half a list, which would let it remove a layer this snapshot stands on
        tmp = d / f".lower.{os.getpid()}.{id(pins):x}"
        tmp.write_text("".join(p + "\n" for p in pins))
        os.replace(tmp, d / "lower")

    def pins(self, key: str) -> list[str] | None:
        """The layer keys recorded by `prepare` for this snapshot, bottom first (None: none
        recorded, e.g. the snapshot is gone)."""
        try:
            return (self._dir(key) / "lower").read_text().split()
        except FileNotFoundError:
            return None

    def pinned(self) -> set[str]:
        """Every layer key some snapshot stands on."""
        out: set[str] = set()
        for key in self.keys():
            out.update(self.pins(key) or ())
        return out

    def remove(self, key: str) -> None:
        shutil.rmtree(self._dir(key), ignore_errors=True)

    def keys(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())
