"""The container record: built from a create request and an image, stored as Docker's shape.

The record is the document `GET /containers/{id}/json` returns, plus a private
`Dockyard` section (bundle paths, conmon pid, the image reference the user typed) that the
inspect view strips. Validation of the create request lives here, so a bad request fails
before anything is written.
"""

from __future__ import annotations

import copy
import re
import secrets
from pathlib import Path
from typing import Any

from dockyard.containers import health, logconfig, mounts, restart, security
from dockyard.errdefs import InvalidArgument
from dockyard.runtime.spec import ALL_CAPS, normalize_cap
from dockyard.timefmt import now_rfc3339

ZERO_TIME = "0001-01-01T00:00:00Z"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STATIC_NETWORK_MODES = {"", "default", "bridge", "none", "host"}


def new_id() -> str:
    return secrets.token_hex(32)


def _default_host_config() -> dict[str, Any]:
    return {
        "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
        "NetworkMode": "bridge", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0],
        "CapAdd": None, "CapDrop": None, "CgroupnsMode": "host", "Dns": [], "DnsOptions": [],
        "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None, "IpcMode": "private", "Cgroup": "",
        "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False, "PublishAllPorts": False,
        "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "", "ShmSize": 67108864,
        "Runtime": "runc", "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0,
        "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": [],
        "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [],
        "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0,
        "CpusetCpus": "", "CpusetMems": "", "Devices": [], "DeviceCgroupRules": None,
        "DeviceRequests": None, "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": None,
        "OomKillDisable": None, "PidsLimit": None, "Ulimits": None, "CpuCount": 0, "CpuPercent": 0,
        "IOMaximumIOps": 0, "IOMaximumBandwidth": 0, "MaskedPaths": None, "ReadonlyPaths": None,
        "Init": None, "Tmpfs": None, "Sysctls": None, "Mounts": None,
    }  # fmt: skip


def _validate_host_config(hc: dict[str, Any]) -> None:
    mem = int(hc.get("Memory") or 0)
    if mem and mem < 6 * 1024 * 1024:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    swap = int(hc.get("MemorySwap") or 0)
    if mem and swap > 0 and swap < mem:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
    if swap and swap != -1 and not mem:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit, see usage")
    if int(hc.get("NanoCpus") or 0) < 0 or int(hc.get("CpuShares") or 0) < 0:
        raise InvalidArgument("Range of CPUs is from 0.01 to the number of CPUs available")
    if hc.get("CpusetCpus") and not re.fullmatch(r"[0-9,\-]+", str(hc["CpusetCpus"])):
        raise InvalidArgument(f"Invalid value {hc['CpusetCpus']} for cpuset cpus")
    restart.validate(hc.get("RestartPolicy"), bool(hc.get("AutoRemove")))
    mode = hc.get("NetworkMode") or ""
    if mode.startswith("container:") and not mode.split(":", 1)[1]:
        raise InvalidArgument("invalid container format container:<name|id>")
    # any other name is a network; the network service answers 404 for an unknown one
    for cap in (hc.get("CapAdd") or []) + (hc.get("CapDrop") or []):
        c = normalize_cap(cap)
        if c != "CAP_ALL" and c not in ALL_CAPS:
            raise InvalidArgument(f"unknown capability: \"{c}\"")
    mounts.validate(hc)
    security.parse(hc.get("SecurityOpt"))  # 400 for an unknown option or a bad seccomp profile
    for key in ("MaskedPaths", "ReadonlyPaths"):
        paths = hc.get(key)
        if paths is not None and not (
            isinstance(paths, list) and all(isinstance(p, str) and p.startswith("/") for p in paths)
        ):
            raise InvalidArgument(f"invalid {key}: must be a list of absolute paths")
    for h in hc.get("ExtraHosts") or []:
        if ":" not in h and "=" not in h:
            raise InvalidArgument(f"invalid argument \"{h}\" for \"--add-host\" flag: bad format for add-host")
    if int(hc.get("ShmSize") or 0) < 0:
        raise InvalidArgument("SHM size can not be less than 0")


def merge_config(body: dict[str, Any], image_config: dict[str, Any]) -> dict[str, Any]:
    """The container's Config: the request's fields over the image's defaults."""
    img = image_config.get("config") or image_config.get("Config") or {}
    cfg: dict[str, Any] = {
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
        "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
        "Cmd": None, "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
        "OnBuild": None, "Labels": {},
    }  # fmt: skip
    for key in cfg:
        if body.get(key) is not None:
            cfg[key] = copy.deepcopy(body[key])
    for key in ("ExposedPorts", "StopSignal", "StopTimeout", "Healthcheck", "NetworkDisabled", "MacAddress", "Shell"):
        if body.get(key) is not None:
            cfg[key] = copy.deepcopy(body[key])
    if isinstance(cfg["Cmd"], str):
        cfg["Cmd"] = [cfg["Cmd"]]
    if isinstance(cfg["Entrypoint"], str):
        cfg["Entrypoint"] = [cfg["Entrypoint"]]
    if body.get("Entrypoint") is None:
        cfg["Entrypoint"] = img.get("Entrypoint")
        cfg["Cmd"] = cfg["Cmd"] or img.get("Cmd")
    elif cfg["Entrypoint"] in ([], [""]):
        # `--entrypoint ""` resets the image's entrypoint (and, as in Docker, its Cmd)
        cfg["Entrypoint"] = None
    env = list(img.get("Env") or [DEFAULT_PATH])
    keys = {e.split("=", 1)[0]: i for i, e in enumerate(env)}
    for e in body.get("Env") or []:
        k = e.split("=", 1)[0]
        if k in keys:
            env[keys[k]] = e
        else:
            keys[k] = len(env)
            env.append(e)
    cfg["Env"] = env
    cfg["WorkingDir"] = cfg["WorkingDir"] or img.get("WorkingDir") or ""
    cfg["User"] = cfg["User"] or img.get("User") or ""
    labels = dict(img.get("Labels") or {})
    labels.update(body.get("Labels") or {})
    cfg["Labels"] = labels
    if img.get("ExposedPorts") or cfg.get("ExposedPorts"):
        cfg["ExposedPorts"] = {**(img.get("ExposedPorts") or {}), **(cfg.get("ExposedPorts") or {})}
    cfg["Healthcheck"] = health.merge_config(cfg.get("Healthcheck"), img.get("Healthcheck"))
    if cfg["Healthcheck"] is None:
        del cfg["Healthcheck"]
    if "StopSignal" not in cfg and img.get("StopSignal"):
        cfg["StopSignal"] = img["StopSignal"]
    if img.get("Volumes") and not cfg["Volumes"]:
        cfg["Volumes"] = img["Volumes"]
    return cfg


def build_record(
    cid: str, name: str, body: dict[str, Any], image_id: str, image_ref: str, image_config: dict[str, Any],
    container_dir: Path, volumes_from: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] | None = None,
    log_defaults: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`volumes_from`: each VolumesFrom container's Mounts and private mount options (mounts.plan);
    `log_defaults`: the daemon's LogConfig for requests that name no log driver."""
    hc = _default_host_config()
    hc_in = body.get("HostConfig") or {}
    _validate_host_config(hc_in)
    for k, v in hc_in.items():
        if v is not None or k in hc:
            hc[k] = v
    if not hc.get("NetworkMode") or hc["NetworkMode"] == "default":
        hc["NetworkMode"] = "bridge"
    if not hc.get("RestartPolicy") or not hc["RestartPolicy"].get("Name"):
        hc["RestartPolicy"] = {"Name": "no", "MaximumRetryCount": 0}
    if not hc.get("ShmSize"):
        hc["ShmSize"] = 67108864
    if not hc.get("Runtime"):
        hc["Runtime"] = "runc"
    hc["LogConfig"] = logconfig.normalize(hc.get("LogConfig"), log_defaults)
    health.validate(body.get("Healthcheck"))
    cfg = merge_config(body, image_config)
    cfg["Image"] = image_ref
    if not cfg["Hostname"]:
        cfg["Hostname"] = "" if hc["NetworkMode"] == "host" else cid[:12]
    argv = list(cfg["Entrypoint"] or []) + list(cfg["Cmd"] or [])
    if not argv:
        raise InvalidArgument("no command specified")
    planned = mounts.plan(hc, cfg.get("Volumes"), volumes_from or {})
    return {
        "Id": cid,
        "Created": now_rfc3339(),
        "Path": argv[0],
        "Args": argv[1:],
        "State": {
            "Status": "created", "Running": False, "Paused": False, "Restarting": False,
            "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
            "StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME,
        },  # fmt: skip
        "Image": image_id,
        "ResolvConfPath": str(container_dir / "resolv.conf"),
        "HostnamePath": str(container_dir / "hostname"),
        "HostsPath": str(container_dir / "hosts"),
        "LogPath": str(container_dir / "ctr.log") if logconfig.readable(hc["LogConfig"]) else "",
        "Name": name,
        "RestartCount": 0,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": hc,
        "GraphDriver": {"Name": "overlay2", "Data": {}},
        "Mounts": [m.inspect() for m in planned],
        "Config": cfg,
        "NetworkSettings": {
            "Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {}, "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None, "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
            "Networks": {hc["NetworkMode"]: {
                "IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "NetworkID": "",
                "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
                "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DriverOpts": None, "DNSNames": None,
            }},
        },  # fmt: skip
        "Dockyard": {"ConmonPid": 0, "ExecIDs": [], "MountOptions": {m.destination: m.private() for m in planned}},
    }


def inspect_view(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if k != "Dockyard"}
    out["ExecIDs"] = record.get("Dockyard", {}).get("ExecIDs") or None
    return out
