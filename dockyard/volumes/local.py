"""The `local` volume driver: one directory per volume under the data root.

Layout (under `<data-root>/volumes/`)::

    <name>/             owned by this driver; removed with the volume
        _data/          the volume's content (its Mountpoint); with driver options
                        (type/device/o) the filesystem is mounted here at first use

Docker's local driver options: `type` (filesystem type, e.g. tmpfs), `device` (what to mount)
and `o` (comma-separated mount options; `bind` makes it a bind mount). Without options a
volume is a plain directory. This module decides nothing about references or containers; it
only makes, mounts, measures and deletes directories. Every function here may block.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from dockyard._sys import mount as sysmount
from dockyard.errdefs import InvalidArgument

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
OPTION_KEYS = ("type", "device", "o", "size")


def validate_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise InvalidArgument(
            f'create {name}: "{name}" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path'
        )


def validate_options(opts: dict[str, str]) -> None:
    for key in opts:
        if key not in OPTION_KEYS:
            raise InvalidArgument(f"invalid option: {key!r}")
    if opts.get("size") and opts.get("type") != "tmpfs":
        # Docker's quota support needs xfs project quotas; tmpfs takes size= as a mount option
        raise InvalidArgument("quota size requested but no quota support")
    if ("type" in opts) != ("device" in opts) and not (opts.get("type") == "tmpfs"):
        raise InvalidArgument("missing required option: " + ("device" if "type" in opts else "type"))


def needs_mount(opts: dict[str, str]) -> bool:
    return bool(opts.get("type") or opts.get("device"))


def mount_record(opts: dict[str, str]) -> sysmount.Mount:
    """The mount syscall a volume with driver options stands for."""
    fstype = opts.get("type") or "none"
    options = [o for o in (opts.get("o") or "").split(",") if o]
    if opts.get("size") and fstype == "tmpfs":
        options.append(f"size={opts['size']}")
    if "bind" in options or "rbind" in options:
        return sysmount.Mount("bind", opts.get("device") or "", tuple(options))
    return sysmount.Mount(fstype, opts.get("device") or fstype, tuple(options))


class LocalDriver:
    name = "local"

    def __init__(self, root: Path, root_pair: tuple[int, int] | None = None) -> None:
        self.root = root
        # a remapped daemon (`--userns-remap`): a new volume belongs to the containers' root,
        # as dockerd's local driver makes it (MkdirAllAndChown with the root identity)
        self.root_pair = root_pair

    def mountpoint(self, name: str) -> Path:
        return self.root / name / "_data"

    def create(self, name: str) -> Path:
        path = self.mountpoint(name)
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o701)
        if self.root_pair is not None:
            os.chown(path, *self.root_pair)
        return path

    def mount(self, name: str, opts: dict[str, str]) -> None:
        path = self.mountpoint(name)
        if needs_mount(opts) and not sysmount.is_mounted(path):
            sysmount.mount(mount_record(opts), path)

    def unmount(self, name: str, opts: dict[str, str]) -> None:
        if needs_mount(opts):
            sysmount.unmount(self.mountpoint(name))

    def remove(self, name: str) -> None:
        sysmount.unmount(self.mountpoint(name))
        shutil.rmtree(self.root / name, ignore_errors=True)

    def is_empty(self, name: str) -> bool:
        try:
            with os.scandir(self.mountpoint(name)) as it:
                return next(it, None) is None
        except FileNotFoundError:
            return True

    def size(self, name: str) -> int:
        """Docker's UsageData.Size: apparent sizes of everything but directories, hard links once."""
        total = 0
        seen: set[tuple[int, int]] = set()
        for root, dirs, files in os.walk(self.mountpoint(name)):
            for entry in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
                try:
                    st = os.lstat(os.path.join(root, entry))
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
        return total
