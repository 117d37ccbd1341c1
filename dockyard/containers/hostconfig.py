"""HostConfig fields beyond the base OCI spec: devices and device cgroup rules, block I/O
weight and throttles, real-time CPU, the OOM killer, swappiness, annotations, the cgroup
parent, PID/IPC namespaces joined from another container, and the cgroup namespace.

`validate` runs at create and refuses, with Docker's messages, what dockerd refuses (or
warns and drops what dockerd drops, returning the warnings); `apply` runs at start on the
spec `runtime/spec.py` built, so that module stays the pure base builder. Device and block
device paths are the host's own (`/dev/...`), named by an API client that may already run
containers as root: they are stat'ed, never opened, and only character and block devices
are accepted.

Docker's rules followed here: moby `daemon/daemon_unix.go` (`verifyPlatformContainerResources`,
`verifyPlatformContainerSettings`), `oci/devices_linux.go` and `runconfig` (IPC, PID and
cgroupns modes).
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dockyard import errdefs
from dockyard._sys import mount as sysmount

Record = dict[str, Any]

_CGROUP_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")
_BLKIO = Path("/sys/fs/cgroup/blkio")
_THROTTLES = {
    "BlkioDeviceReadBps": "throttleReadBpsDevice", "BlkioDeviceWriteBps": "throttleWriteBpsDevice",
    "BlkioDeviceReadIOps": "throttleReadIOPSDevice", "BlkioDeviceWriteIOps": "throttleWriteIOPSDevice",
}  # fmt: skip
IPC_MODES = {"", "private", "shareable", "host", "none"}


def _blkio_weight_supported() -> bool:
    # cgroup v1 without CFQ/BFQ has no weight file (these machines): Docker drops the weight
    return (_BLKIO / "blkio.weight").exists() or (_BLKIO / "blkio.bfq.weight").exists()


def _device_node(path: str) -> os.stat_result:
    try:
        st = os.stat(path)
    except OSError as err:
        raise errdefs.InvalidArgument(
            f'error gathering device information while adding custom device "{path}": {os.strerror(err.errno or 0).lower()}'
        ) from None
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise errdefs.InvalidArgument(
            f'error gathering device information while adding custom device "{path}": not a device node'
        )
    return st


def _devices(hc: Record) -> list[tuple[str, str, os.stat_result]]:
    """(path in container, permissions, host stat) of each `Devices` entry."""
    out = []
    for d in hc.get("Devices") or []:
        if not isinstance(d, dict) or not d.get("PathOnHost"):
            raise errdefs.InvalidArgument("invalid device: PathOnHost is required")
        host = str(d["PathOnHost"])
        inside = str(d.get("PathInContainer") or host)
        perms = str(d.get("CgroupPermissions") or "rwm")
        if not inside.startswith("/") or not set(perms) <= set("rwm"):
            raise errdefs.InvalidArgument(f"invalid device mapping: {host}:{inside}:{perms}")
        out.append((posixpath.normpath(inside), perms, _device_node(host)))
    return out


def _weight_devices(entries: Any, key: str) -> list[tuple[os.stat_result, int]]:
    out = []
    for e in entries or []:
        path = str(e.get("Path") or "")
        value = int(e.get(key) or 0)
        try:
            st = os.stat(path)
        except OSError as err:
            raise errdefs.InvalidArgument(
                f"invalid device {path}: {os.strerror(err.errno or 0).lower()}"
            ) from None
        if not stat.S_ISBLK(st.st_mode):
            raise errdefs.InvalidArgument(f"invalid device {path}: not a block device")
        if value < 0:
            raise errdefs.InvalidArgument(f"invalid rate for device {path}: {value}")
        out.append((st, value))
    return out


def validate(hc: Record) -> list[str]:
    """Refuse what dockerd refuses at create; returns the warnings of what it drops."""
    warnings: list[str] = []
    _devices(hc)
    for rule in hc.get("DeviceCgroupRules") or []:
        if not _CGROUP_RULE.match(str(rule)):
            raise errdefs.InvalidArgument(f"invalid device cgroup format '{rule}'")
    for req in hc.get("DeviceRequests") or []:
        caps = req.get("Capabilities") or []
        # no device driver (nvidia, CDI) is installed here: dockerd's words for that case
        raise errdefs.InvalidArgument(
            f'could not select device driver "{req.get("Driver") or ""}" with capabilities: '
            f"[{' '.join('[' + ' '.join(c) + ']' for c in caps)}]"
        )
    weight = int(hc.get("BlkioWeight") or 0)
    if weight and not 10 <= weight <= 1000:
        raise errdefs.InvalidArgument("Range of blkio weight is from 10 to 1000")
    for key in _THROTTLES:
        _weight_devices(hc.get(key), "Rate")
    _weight_devices(hc.get("BlkioWeightDevice"), "Weight")
    if not _blkio_weight_supported():
        if weight:
            hc["BlkioWeight"] = 0
            warnings.append(
                "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."
            )
        if hc.get("BlkioWeightDevice"):
            hc["BlkioWeightDevice"] = []
            warnings.append(
                "Your kernel does not support Block I/O weight_device or the cgroup is not mounted. Weight-device discarded."
            )
    swappiness = hc.get("MemorySwappiness")
    if swappiness is not None and swappiness != -1 and not 0 <= int(swappiness) <= 100:
        raise errdefs.InvalidArgument(f"Invalid value: {swappiness}, valid memory swappiness range is 0-100")
    if hc.get("OomKillDisable") and not hc.get("Memory"):
        warnings.append(
            "OOM killer is disabled for the container, but no memory limit is set, this can result in the system "
            "running out of resources."
        )
    period, runtime = int(hc.get("CpuRealtimePeriod") or 0), int(hc.get("CpuRealtimeRuntime") or 0)
    if (period or runtime) and not Path("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists():
        raise errdefs.InvalidArgument("Your kernel does not support CPU real-time scheduler")
    if period and runtime > period:
        raise errdefs.InvalidArgument("cpu-rt-runtime cannot be higher than cpu-rt-period")
    if hc.get("KernelMemory"):
        hc["KernelMemory"] = 0  # moby ignores it since API 1.42 (cgroup v2 has none)
        warnings.append(
            "Specifying a kernel memory limit is deprecated and will be removed in a future release."
        )
    for key in hc.get("Annotations") or {}:
        if not str(key):
            raise errdefs.InvalidArgument(
                "invalid Annotations: the empty string is not permitted as an annotation key"
            )
    parent = str(hc.get("CgroupParent") or "")
    if parent and ".." in parent.split("/"):
        raise errdefs.InvalidArgument(
            f"invalid cgroup parent {parent}: it must not leave the cgroup hierarchy"
        )
    if hc.get("StorageOpt"):
        raise errdefs.InvalidArgument(
            "--storage-opt is supported only for overlay over xfs with 'pquota' mount option"
        )
    ipc = str(hc.get("IpcMode") or "")
    if ipc not in IPC_MODES and not (ipc.startswith("container:") and ipc[10:]):
        raise errdefs.InvalidArgument(f"invalid IPC mode: {ipc}")
    pid = str(hc.get("PidMode") or "")
    if pid not in ("", "host") and not (pid.startswith("container:") and pid[10:]):
        raise errdefs.InvalidArgument(f"invalid PID mode: {pid}")
    cgns = str(hc.get("CgroupnsMode") or "")
    if cgns not in ("", "host", "private"):
        raise errdefs.InvalidArgument(f"invalid cgroup namespace mode: {cgns}")
    return warnings


def check_peers(hc: Record, get: Callable[[str], Record]) -> None:
    """At create: a container named by `container:` modes exists (404 otherwise)."""
    for key in ("PidMode", "IpcMode"):
        mode = str(hc.get(key) or "")
        if mode.startswith("container:"):
            get(mode[10:])


def _ns(spec: dict[str, Any], kind: str, path: str | None) -> None:
    nss = [n for n in spec["linux"]["namespaces"] if n["type"] != kind]
    if path is not None:
        nss.append({"type": kind, **({"path": path} if path else {})})
    spec["linux"]["namespaces"] = nss


def shm_dir(bundle: Path) -> Path:
    return bundle / "shm"


def prepare(rec: Record, bundle: Path) -> None:
    """At start: a `shareable` container's /dev/shm is a tmpfs the daemon mounts in the
    bundle, so that containers joining its IPC namespace can bind the same one (a mount
    inside the donor's mount namespace cannot be bound from outside it)."""
    if rec["HostConfig"].get("IpcMode") != "shareable":
        return
    target = shm_dir(bundle)
    target.mkdir(mode=0o700, exist_ok=True)
    if not sysmount.is_mounted(target):
        size = int(rec["HostConfig"].get("ShmSize") or 67108864)
        sysmount.mount(sysmount.Mount("tmpfs", "shm", ("mode=1777", f"size={size}")), target)


def release(rec: Record, bundle: Path) -> None:
    if rec["HostConfig"].get("IpcMode") == "shareable":
        sysmount.unmount(shm_dir(bundle))


def _shm(spec: dict[str, Any], source: str | None) -> None:
    spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/dev/shm"]
    if source is not None:
        spec["mounts"].append({"destination": "/dev/shm", "type": "bind", "source": source,
                               "options": ["rbind", "nosuid", "nodev", "noexec", "rw"]})  # fmt: skip


def apply(
    spec: dict[str, Any], rec: Record, get: Callable[[str], Record], bundle_of: Callable[[str], Path]
) -> None:
    """Add the fields above to the spec `runtime/spec.py` built for `rec`."""
    hc = rec["HostConfig"]
    linux = spec["linux"]
    res = linux.setdefault("resources", {})
    if not hc.get("Privileged"):
        for inside, perms, st in _devices(hc):
            kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
            major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
            linux.setdefault("devices", []).append({
                "path": inside, "type": kind, "major": major, "minor": minor,
                "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
            })  # fmt: skip
            res.setdefault("devices", []).append({"allow": True, "type": kind, "major": major, "minor": minor,
                                                  "access": perms})  # fmt: skip
        for rule in hc.get("DeviceCgroupRules") or []:
            m = _CGROUP_RULE.match(str(rule))
            assert m is not None  # validated at create
            entry: dict[str, Any] = {"allow": True, "type": m.group(1), "access": m.group(4)}
            if m.group(2) != "*":
                entry["major"] = int(m.group(2))
            if m.group(3) != "*":
                entry["minor"] = int(m.group(3))
            res.setdefault("devices", []).append(entry)
    blkio: dict[str, Any] = {}
    if hc.get("BlkioWeight"):
        blkio["weight"] = int(hc["BlkioWeight"])
    for st, w in _weight_devices(hc.get("BlkioWeightDevice"), "Weight"):
        blkio.setdefault("weightDevice", []).append({"major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                                                     "weight": w})  # fmt: skip
    for key, oci in _THROTTLES.items():
        for st, rate in _weight_devices(hc.get(key), "Rate"):
            blkio.setdefault(oci, []).append({"major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                                              "rate": rate})  # fmt: skip
    if blkio:
        res["blockIO"] = blkio
    if hc.get("CpuRealtimePeriod") or hc.get("CpuRealtimeRuntime"):
        cpu = res.setdefault("cpu", {})
        if hc.get("CpuRealtimePeriod"):
            cpu["realtimePeriod"] = int(hc["CpuRealtimePeriod"])
        if hc.get("CpuRealtimeRuntime"):
            cpu["realtimeRuntime"] = int(hc["CpuRealtimeRuntime"])
    if hc.get("OomKillDisable"):
        res.setdefault("memory", {})["disableOOMKiller"] = True
    swappiness = hc.get("MemorySwappiness")
    if swappiness is not None and int(swappiness) >= 0:
        res.setdefault("memory", {})["swappiness"] = int(swappiness)
    if hc.get("Annotations"):
        spec["annotations"] = {str(k): str(v) for k, v in hc["Annotations"].items()}
    if hc.get("CgroupParent"):
        parent = posixpath.normpath("/" + str(hc["CgroupParent"]).strip("/"))
        linux["cgroupsPath"] = f"{parent}/{rec['Id']}"
    for key, kind, what in (("PidMode", "pid", "PID"), ("IpcMode", "ipc", "IPC")):
        mode = str(hc.get(key) or "")
        if not mode.startswith("container:"):
            continue
        peer = get(mode[10:])
        # 400, not a state conflict: a failed start of a `run --rm` container must remove it
        if not peer["State"]["Running"]:
            raise errdefs.InvalidArgument(f"cannot join {what} of a non running container: {peer['Id']}")
        if kind == "ipc" and peer["HostConfig"].get("IpcMode") != "shareable":
            raise errdefs.InvalidArgument(
                f"container {peer['Id']}: non-shareable IPC (hint: use IpcMode:shareable for the donor container)"
            )
        _ns(spec, kind, f"/proc/{peer['State']['Pid']}/ns/{kind}")
        if kind == "ipc":  # the donor's /dev/shm, not a new one
            _shm(spec, str(shm_dir(bundle_of(peer["Id"]))))
    if hc.get("IpcMode") == "shareable":
        _shm(spec, str(shm_dir(bundle_of(rec["Id"]))))
    if hc.get("IpcMode") == "none":
        _shm(spec, None)
    if hc.get("CgroupnsMode") == "private":
        _ns(spec, "cgroup", "")


_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}  # containerd's normalisation


def check_platform(ref: str, platform: str, image_config: dict[str, Any]) -> None:
    """`POST /containers/create?platform=os/arch[/variant]` (API 1.41): the image must be that
    platform; dockerd answers 404 when it is not (no emulation here either)."""
    want = [_ARCH_ALIASES.get(p.strip().lower(), p.strip().lower()) for p in platform.split("/")]
    if not want[0] or len(want) > 3:
        raise errdefs.InvalidArgument(f"invalid platform {platform}")
    have = [str(image_config.get("os") or "linux"), str(image_config.get("architecture") or "amd64")]
    if image_config.get("variant"):
        have.append(str(image_config["variant"]))
    if want != have[: len(want)] or (len(want) == 3 and len(have) < 3):
        raise errdefs.NotFound(
            f"image with reference {ref} was found but does not match the specified platform: "
            f"wanted {'/'.join(want)}, actual: {'/'.join(have)}"
        )
