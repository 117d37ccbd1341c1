"""The mount planner: a create request's storage settings in, the container's `Mounts` out.

Pure: it reads HostConfig `Binds` (`-v`), `Mounts` (`--mount`), `VolumesFrom`, `Tmpfs` and the
image's (or request's) `Config.Volumes`, validates them with Docker's messages, and returns
`PlannedMount`s. It creates no volume and touches no file; the only question it asks the host,
whether a `--mount type=bind` source exists, goes through an injectable `exists`. The container
service then creates the volumes (anonymous ones get a generated name) and fills in `Source`.

Precedence is Docker's (daemon/volumes.go `registerMountPoints`): volumes from other
containers first, then `-v` binds, then `--mount`s, each replacing an earlier one at the same
path; two explicit mounts at one path are "Duplicate mount point"; an image VOLUME is skipped
where something is already mounted.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dockyard.errdefs import InvalidArgument

PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
_CONSISTENCY = ("consistent", "cached", "delegated")
MountDict = dict[str, Any]


@dataclass(frozen=True)
class PlannedMount:
    type: str  # "volume", "bind" or "tmpfs"
    destination: str
    source: str = ""  # bind: host path; volume: Mountpoint, filled in by the service
    name: str = ""  # volume name; "" until an anonymous one is named
    driver: str = ""
    mode: str = ""
    rw: bool = True
    propagation: str = ""
    anonymous: bool = False
    nocopy: bool = False
    driver_opts: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    tmpfs_options: tuple[str, ...] = ()
    subpath: str = ""  # VolumeOptions.Subpath (API 1.45): a path inside the volume, mounted instead of it

    def inspect(self) -> MountDict:
        """Docker's container inspect `Mounts` entry."""
        out: MountDict = {"Type": self.type}
        if self.type == "volume":
            out["Name"] = self.name
        out.update(Source=self.source, Destination=self.destination)
        if self.type == "volume":
            out["Driver"] = self.driver or "local"
        out.update(Mode=self.mode, RW=self.rw, Propagation=self.propagation)
        return out

    def private(self) -> MountDict:
        """What the runtime needs beyond the inspect view (kept in the record's private part)."""
        out: MountDict = {"NoCopy": self.nocopy, "TmpfsOptions": list(self.tmpfs_options)}
        if self.type == "volume":
            out.update(Anonymous=self.anonymous, DriverOpts=dict(self.driver_opts), Labels=dict(self.labels))
            if self.subpath:
                out["Subpath"] = self.subpath
        return out


def _bad_spec(spec: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"invalid volume specification: '{spec}': {why}")


def _clean(path: str) -> str:
    return posixpath.normpath(path) if path else path


def _check_target(kind: str, target: str, spec: str | None = None) -> None:
    if not target:
        err = f'invalid mount config for type "{kind}": field Target must not be empty'
    elif not target.startswith("/"):
        err = f"invalid mount config for type \"{kind}\": invalid mount path: '{target}' mount path must be absolute"
    elif _clean(target) == "/":
        err = f"invalid mount config for type \"{kind}\": invalid specification: destination can't be '/'"
    else:
        return
    raise _bad_spec(spec, err) if spec is not None else InvalidArgument(err)


def _valid_mode(mode: str) -> bool:
    if not mode:
        return True
    rw = prop = label = copy = 0
    for opt in mode.split(","):
        if opt in ("ro", "rw"):
            rw += 1
        elif opt in PROPAGATIONS:
            prop += 1
        elif opt in ("z", "Z"):
            label += 1
        elif opt == "nocopy":
            copy += 1
        elif opt not in _CONSISTENCY:
            return False
    return rw <= 1 and prop <= 1 and label <= 1 and copy <= 1


def parse_bind(spec: str) -> PlannedMount:
    """One `-v` / `Binds` entry: `name:/path[:mode]`, `/host:/path[:mode]` or `/path`."""
    parts = spec.split(":")
    if len(parts) == 1:
        src, dst, mode = "", parts[0], ""
    elif len(parts) == 2:
        if _valid_mode(parts[1]) and parts[1] and not parts[1].startswith("/"):
            src, dst, mode = "", parts[0], parts[1]
        else:
            src, dst, mode = parts[0], parts[1], ""
    elif len(parts) == 3:
        src, dst, mode = parts
    else:
        raise _bad_spec(spec, "too many colons") if len(parts) > 3 else _bad_spec(spec, "empty")
    if not dst:
        raise InvalidArgument(f"invalid volume specification: '{spec}'")
    kind = "bind" if src.startswith("/") else "volume"
    _check_target(kind, dst, spec)
    if not _valid_mode(mode):
        raise _bad_spec(spec, f"invalid mode: {mode}")
    opts = [o for o in mode.split(",") if o]
    prop = next((o for o in opts if o in PROPAGATIONS), "")
    rw = "ro" not in opts
    if kind == "bind":
        if "nocopy" in opts:
            raise _bad_spec(spec, f"invalid mode: {mode}")
        return PlannedMount(
            "bind", _clean(dst), source=_clean(src), mode=mode, rw=rw, propagation=prop or "rprivate"
        )
    if prop:
        raise _bad_spec(spec, f"invalid mode: {mode}")
    return PlannedMount(
        "volume", _clean(dst), name=src, driver="local", mode=mode or "z", rw=rw,
        anonymous=not src, nocopy="nocopy" in opts,
    )  # fmt: skip


# TmpfsOptions.Options (API 1.46): flags a user may set on a `--mount type=tmpfs`. Only the
# one that undoes a safe default (noexec) and its inverse, as dockerd allows.
TMPFS_FLAGS = ("exec", "noexec")


def _tmpfs_options(size: int | None, mode: int | None, extra: Any = None) -> tuple[str, ...]:
    opts = []
    if size:
        opts.append(f"size={size}")
    if mode:
        opts.append(f"mode={mode:o}")
    for item in extra or []:
        if not (isinstance(item, list) and len(item) == 1 and item[0] in TMPFS_FLAGS):
            raise InvalidArgument(
                f'invalid mount config for type "tmpfs": unsupported tmpfs option {item!r}; '
                f"allowed: {', '.join(TMPFS_FLAGS)}"
            )
        opts.append(item[0])
    return tuple(opts)


def parse_mount(m: Mapping[str, Any], exists: Callable[[str], bool] = os.path.exists) -> PlannedMount:
    """One `--mount` / `HostConfig.Mounts` entry, validated like Docker's ValidateMountConfig."""
    kind = str(m.get("Type") or "")
    target = str(m.get("Target") or "")
    source = str(m.get("Source") or "")
    ro = bool(m.get("ReadOnly"))
    bind_o, vol_o, tmpfs_o = m.get("BindOptions"), m.get("VolumeOptions"), m.get("TmpfsOptions")

    def bad(why: str) -> InvalidArgument:
        return InvalidArgument(f'invalid mount config for type "{kind}": {why}')

    if kind not in ("bind", "volume", "tmpfs"):
        raise bad("mount type unknown")
    _check_target(kind, target)
    for present, key, allowed in (
        (bind_o, "BindOptions", "bind"), (vol_o, "VolumeOptions", "volume"), (tmpfs_o, "TmpfsOptions", "tmpfs")
    ):  # fmt: skip
        if present and kind != allowed:
            raise bad(f"field {key} must not be specified")
    if kind == "bind":
        if not source:
            raise bad("field Source must not be empty")
        if not source.startswith("/"):
            raise bad(f"invalid mount path: '{source}' mount path must be absolute")
        create = bool((bind_o or {}).get("CreateMountpoint"))
        if not create and not exists(source):
            raise bad(f"bind source path does not exist: {source}")
        prop = str((bind_o or {}).get("Propagation") or "rprivate")
        if prop not in PROPAGATIONS:
            raise bad(f"invalid propagation mode: {prop}")
        return PlannedMount("bind", _clean(target), source=_clean(source), rw=not ro, propagation=prop)
    if kind == "tmpfs":
        if source:
            raise bad("field Source must not be specified")
        t = tmpfs_o or {}
        size = t.get("SizeBytes")
        if size is not None and int(size) < 0:
            raise bad(f"invalid tmpfs size: {size}")
        mode = t.get("Mode")
        return PlannedMount(
            "tmpfs", _clean(target), rw=not ro,
            tmpfs_options=_tmpfs_options(int(size) if size else None, int(mode) if mode else None, t.get("Options")),
        )  # fmt: skip
    v = vol_o or {}
    dc = v.get("DriverConfig") or {}
    if source.startswith("/"):
        raise bad(f"invalid volume name: {source}: a volume name may not be a path")
    subpath = str(v.get("Subpath") or "")
    if subpath:
        clean = posixpath.normpath(subpath)
        if subpath.startswith("/") or clean == ".." or clean.startswith("../"):
            raise bad("subpath must be a relative path within the volume")
        subpath = clean
    return PlannedMount(
        "volume", _clean(target), name=source, driver=str(dc.get("Name") or "local"), mode="z", rw=not ro,
        anonymous=not source, nocopy=bool(v.get("NoCopy")), subpath=subpath if subpath != "." else "",
        driver_opts=dict(dc.get("Options") or {}), labels=dict(v.get("Labels") or {}),
    )  # fmt: skip


def parse_volumes_from(spec: str) -> tuple[str, str]:
    """`container[:ro|:rw]` -> (container, mode)."""
    ref, sep, mode = spec.rpartition(":")
    if not sep:
        return spec, ""
    if mode not in ("ro", "rw") or not ref:
        raise InvalidArgument(f"invalid mode: {mode}")
    return ref, mode


def validate(hc: Mapping[str, Any], exists: Callable[[str], bool] = os.path.exists) -> None:
    """Everything that can be checked without other containers: syntax and conflicts."""
    plan(hc, {}, {}, exists=exists)


def _from_inspect(m: MountDict, private: Mapping[str, Any], mode: str) -> PlannedMount:
    rw = bool(m.get("RW", True)) if not mode else mode == "rw"
    return PlannedMount(
        str(m["Type"]), str(m["Destination"]), source=str(m.get("Source") or ""), name=str(m.get("Name") or ""),
        driver=str(m.get("Driver") or ""), mode=str(m.get("Mode") or ""), rw=rw,
        propagation=str(m.get("Propagation") or ""), nocopy=bool(private.get("NoCopy")),
        tmpfs_options=tuple(private.get("TmpfsOptions") or ()), subpath=str(private.get("Subpath") or ""),
    )  # fmt: skip


def plan(
    hc: Mapping[str, Any],
    config_volumes: Mapping[str, Any] | None,
    volumes_from: Mapping[str, tuple[list[MountDict], Mapping[str, Any]]],
    *,
    exists: Callable[[str], bool] = os.path.exists,
) -> list[PlannedMount]:
    """The container's mounts, in order.

    `volumes_from` maps each `VolumesFrom` container reference to that container's inspect
    `Mounts` and its private mount options (keyed by destination); a reference missing from
    it is skipped (`validate` plans without looking containers up).
    """
    by_dest: dict[str, PlannedMount] = {}
    explicit: set[str] = set()
    tmpfs = {_clean(d): opts for d, opts in (hc.get("Tmpfs") or {}).items()}
    for dest in tmpfs:
        if not dest.startswith("/"):
            raise InvalidArgument(
                f'invalid mount config for type "tmpfs": mount path must be absolute: {dest}'
            )

    for spec in hc.get("VolumesFrom") or []:
        ref, mode = parse_volumes_from(str(spec))
        if ref not in volumes_from:
            continue
        mounts, private = volumes_from[ref]
        for m in mounts:
            pm = _from_inspect(m, private.get(m["Destination"]) or {}, mode)
            by_dest[pm.destination] = pm

    for spec in hc.get("Binds") or []:
        pm = parse_bind(str(spec))
        if pm.destination in explicit or pm.destination in tmpfs:
            raise InvalidArgument(f"Duplicate mount point: {pm.destination}")
        explicit.add(pm.destination)
        by_dest[pm.destination] = pm

    for m in hc.get("Mounts") or []:
        pm = parse_mount(m, exists)
        if pm.destination in explicit or pm.destination in tmpfs:
            raise InvalidArgument(f"Duplicate mount point: {m.get('Target')}")
        explicit.add(pm.destination)
        by_dest[pm.destination] = pm

    for dest in config_volumes or {}:
        d = _clean(str(dest))
        if not d.startswith("/"):
            raise InvalidArgument(
                f"invalid mount config for type \"volume\": invalid mount path: '{dest}' mount path must be absolute"
            )
        if d in by_dest or d in tmpfs:
            continue
        by_dest[d] = PlannedMount("volume", d, driver="local", anonymous=True)
    return list(by_dest.values())


def with_volume(pm: PlannedMount, name: str, mountpoint: str) -> PlannedMount:
    return replace(pm, name=name, source=mountpoint, driver=pm.driver or "local")


__all__ = [
    "PlannedMount",
    "parse_bind",
    "parse_mount",
    "parse_volumes_from",
    "plan",
    "validate",
    "with_volume",
]
