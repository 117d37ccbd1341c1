"""SystemService: the daemon-wide views `/info` and `/system/df` over the other services."""

from __future__ import annotations

import os
import platform
import socket
from datetime import datetime
from typing import Any

from dockyard.api import versions


def _cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def _mem_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


class SystemService:
    def __init__(self, cfg: Any, images: Any, containers: Any, volumes: Any = None) -> None:
        self.cfg = cfg
        self.images = images
        self.containers = containers
        self.volumes = volumes
        self.builds: Any = None  # the BuildService, set by the wiring (for BuildCache)

    async def info(self) -> dict[str, Any]:
        recs = self.containers.all()
        running = sum(1 for r in recs if r["State"]["Running"] and not r["State"]["Paused"])
        paused = sum(1 for r in recs if r["State"]["Paused"])
        uname = platform.uname()
        runtimes = {name: {"path": path} for name, path in self.cfg.runtimes.items()}
        runtimes.setdefault("runc", {"path": "runc"})
        return {
            "ID": self._daemon_id(),
            "Containers": len(recs),
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": len(recs) - running - paused,
            "Images": len(self.images.list_images(all=True)),  # dockerd counts intermediate images too
            "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": None,
                        "Log": ["json-file"]},
            "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True,
            "CPUShares": True, "CPUSet": True, "PidsLimit": True, "IPv4Forwarding": True,
            "BridgeNfIptables": False, "BridgeNfIp6tables": False, "Debug": self.cfg.log_level == "debug",
            "NFd": len(os.listdir("/proc/self/fd")), "OomKillDisable": False,
            "NGoroutines": 0, "SystemTime": datetime.now().astimezone().isoformat(),
            "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs", "CgroupVersion": _cgroup_version(),
            "NEventsListener": 0, "KernelVersion": uname.release, "OperatingSystem": _os_name(),
            "OSVersion": "", "OSType": "linux", "Architecture": uname.machine,
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": None, "AllowNondistributableArtifactsHostnames": None,
                               "InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {}, "Mirrors": None},
            "NCPU": os.cpu_count() or 1, "MemTotal": _mem_total(), "GenericResources": None,
            "DockerRootDir": str(self.cfg.data_root), "HttpProxy": "", "HttpsProxy": "", "NoProxy": "",
            "Name": socket.gethostname(), "Labels": list(self.cfg.labels), "ExperimentalBuild": versions.EXPERIMENTAL,
            "ServerVersion": versions.ENGINE_VERSION, "Runtimes": runtimes,
            "DefaultRuntime": self.cfg.default_runtime,
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                      "Error": "", "RemoteManagers": None},
            "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "docker-init",
            "ContainerdCommit": {"ID": ""}, "RuncCommit": {"ID": ""}, "InitCommit": {"ID": ""},
            "SecurityOptions": ["name=seccomp,profile=builtin", *_userns_options(self.cfg),
                                *(["name=no-new-privileges"] if self.cfg.no_new_privileges else [])],
            "Warnings": None,
        }  # fmt: skip

    def daemon_id(self) -> str:
        """/info's ID, the Actor of `daemon` events."""
        return self._daemon_id()

    def _daemon_id(self) -> str:
        path = self.cfg.data_root / "engine-id"
        if not path.exists():
            import uuid

            path.write_text(str(uuid.uuid4()))
        return str(path.read_text().strip())

    async def disk_usage(self) -> dict[str, Any]:
        from dockyard.containers import listing

        containers = []
        for rec in self.containers.all():
            e = listing.entry(rec)
            e["SizeRw"], e["SizeRootFs"] = await self.containers.sizes(rec["Id"])
            containers.append(e)
        usage = self.images.disk_usage()
        return {
            "LayersSize": usage["LayersSize"],
            "Images": usage["Images"],
            "Containers": containers,
            "Volumes": await self.volumes.disk_usage() if self.volumes is not None else [],
            "BuildCache": self.builds.disk_usage() if self.builds is not None else [],
        }


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _userns_options(cfg: Any) -> list[str]:
    """dockerd lists `name=userns` when its containers' root is remapped (`--userns-remap`)."""
    return ["name=userns"] if getattr(cfg, "id_mapping", None) is not None else []
