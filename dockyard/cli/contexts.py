"""Template contexts: the `.Field` names `--format` sees for ps, images, history and stats rows.

Each context mirrors the docker CLI's formatter context (same field names, same rendering) and
offers `to_json()` for `{{json .}}`. No daemon access here.
"""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

from dockyard.cli.formatting import bytes_size, ellipsis, human_duration, human_size, trunc_id


class RowCtx:
    """One row of a listing: its FIELDS feed tables, `{{json .}}` and templates."""

    FIELDS: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.FIELDS}

    def __str__(self) -> str:
        return json.dumps(self.to_json())


def rfc3339(ts: float) -> str:
    """Go's time.RFC3339 in local time: `Z` for UTC, else `+hh:mm`."""
    t = time.localtime(ts)
    off = time.strftime("%z", t)
    tz = "Z" if off in ("+0000", "-0000") else f"{off[:3]}:{off[3:]}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + tz


def _labels(labels: dict[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))


def format_ports(ports: list[dict[str, Any]] | None) -> str:
    out = []
    for p in sorted(ports or [], key=lambda p: (p.get("PrivatePort", 0), p.get("Type", ""), p.get("IP", ""))):
        priv = f"{p.get('PrivatePort')}/{p.get('Type', 'tcp')}"
        if p.get("PublicPort"):
            ip = p.get("IP", "")
            host = f"[{ip}]" if ":" in ip else ip
            out.append(f"{host}:{p['PublicPort']}->{priv}")
        else:
            out.append(priv)
    return ", ".join(out)


class ContainerCtx(RowCtx):
    FIELDS = (
        "Command",
        "CreatedAt",
        "ID",
        "Image",
        "Labels",
        "LocalVolumes",
        "Mounts",
        "Names",
        "Networks",
        "Platform",
        "Ports",
        "RunningFor",
        "Size",
        "State",
        "Status",
    )
    HEADERS: ClassVar[dict[str, str]] = {
        "ID": "CONTAINER ID",
        "Image": "IMAGE",
        "Command": "COMMAND",
        "CreatedAt": "CREATED AT",
        "RunningFor": "CREATED",
        "Status": "STATUS",
        "Ports": "PORTS",
        "Names": "NAMES",
        "Size": "SIZE",
        "Labels": "LABELS",
        "Mounts": "MOUNTS",
        "Networks": "NETWORKS",
        "State": "STATE",
        "LocalVolumes": "LOCAL VOLUMES",
    }

    def __init__(self, c: dict[str, Any], trunc: bool = True) -> None:
        self.c = c
        self.trunc = trunc

    @property
    def ID(self) -> str:
        return trunc_id(self.c["Id"]) if self.trunc else str(self.c["Id"])

    @property
    def Names(self) -> str:
        names = [n.lstrip("/") for n in self.c.get("Names") or []]
        if self.trunc:
            names = [n for n in names if "/" not in n][:1] or names[:1]
        return ",".join(names)

    @property
    def Image(self) -> str:
        img = str(self.c.get("Image") or "<no image>")
        if self.trunc:
            if img.startswith("sha256:"):
                return trunc_id(img)
            if "@" in img:
                img = img.split("@", 1)[0]
        return img

    @property
    def Command(self) -> str:
        cmd = str(self.c.get("Command") or "")
        if self.trunc:
            cmd = ellipsis(cmd, 20)
        return json.dumps(cmd, ensure_ascii=False)

    @property
    def CreatedAt(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(self.c.get("Created", 0)))

    @property
    def RunningFor(self) -> str:
        return human_duration(time.time() - float(self.c.get("Created", 0))) + " ago"

    @property
    def Ports(self) -> str:
        return format_ports(self.c.get("Ports"))

    @property
    def State(self) -> str:
        return str(self.c.get("State") or "")

    @property
    def Status(self) -> str:
        return str(self.c.get("Status") or "")

    @property
    def Size(self) -> str:
        rw, root = self.c.get("SizeRw") or 0, self.c.get("SizeRootFs") or 0
        if "SizeRw" not in self.c and "SizeRootFs" not in self.c:
            return "0B"
        return f"{human_size(rw)} (virtual {human_size(root)})"

    @property
    def Labels(self) -> str:
        return _labels(self.c.get("Labels"))

    def Label(self, name: str) -> str:
        return str((self.c.get("Labels") or {}).get(name, ""))

    @property
    def Mounts(self) -> str:
        out = []
        for m in self.c.get("Mounts") or []:
            name = m.get("Name") or m.get("Source", "")
            out.append(ellipsis(name, 15) if self.trunc else name)
        return ",".join(out)

    @property
    def Platform(self) -> Any:
        return (
            self.c.get("ImageManifestDescriptor", {}).get("platform")
            if self.c.get("ImageManifestDescriptor")
            else None
        )

    @property
    def LocalVolumes(self) -> str:
        return str(sum(1 for m in self.c.get("Mounts") or [] if m.get("Driver") == "local"))

    @property
    def Networks(self) -> str:
        nets = (self.c.get("NetworkSettings") or {}).get("Networks") or {}
        return ",".join(sorted(nets))


class ImageCtx(RowCtx):
    FIELDS = (
        "Containers",
        "CreatedAt",
        "CreatedSince",
        "Digest",
        "ID",
        "Repository",
        "SharedSize",
        "Size",
        "Tag",
        "UniqueSize",
        "VirtualSize",
    )
    HEADERS: ClassVar[dict[str, str]] = {
        "Repository": "REPOSITORY",
        "Tag": "TAG",
        "ID": "IMAGE ID",
        "CreatedSince": "CREATED",
        "CreatedAt": "CREATED AT",
        "Size": "SIZE",
        "Digest": "DIGEST",
        "Containers": "CONTAINERS",
        "VirtualSize": "VIRTUAL SIZE",
        "SharedSize": "SHARED SIZE",
        "UniqueSize": "UNIQUE SIZE",
    }

    def __init__(self, img: dict[str, Any], repo: str, tag: str, digest: str, trunc: bool = True) -> None:
        self.i, self.Repository, self.Tag, self.Digest, self.trunc = img, repo, tag, digest, trunc

    @property
    def ID(self) -> str:
        return trunc_id(self.i["Id"]) if self.trunc else str(self.i["Id"])

    @property
    def CreatedSince(self) -> str:
        created = float(self.i.get("Created") or 0)
        if created <= 0:
            return "N/A"
        return human_duration(time.time() - created) + " ago"

    @property
    def CreatedAt(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(self.i.get("Created", 0)))

    @property
    def Size(self) -> str:
        return human_size(self.i.get("Size") or 0)

    @property
    def VirtualSize(self) -> str:
        return human_size(self.i.get("VirtualSize", self.i.get("Size")) or 0, 4)

    @property
    def SharedSize(self) -> str:
        s = self.i.get("SharedSize", -1)
        return "N/A" if s is None or s < 0 else human_size(s)

    @property
    def UniqueSize(self) -> str:
        s = self.i.get("SharedSize", -1)
        return "N/A" if s is None or s < 0 else human_size((self.i.get("Size") or 0) - s)

    @property
    def Containers(self) -> str:
        n = self.i.get("Containers", -1)
        return "N/A" if n is None or n < 0 else str(n)


class HistoryCtx(RowCtx):
    FIELDS = ("Comment", "CreatedAt", "CreatedBy", "CreatedSince", "ID", "Size")
    HEADERS: ClassVar[dict[str, str]] = {
        "ID": "IMAGE",
        "CreatedSince": "CREATED",
        "CreatedAt": "CREATED AT",
        "CreatedBy": "CREATED BY",
        "Size": "SIZE",
        "Comment": "COMMENT",
    }

    def __init__(self, h: dict[str, Any], trunc: bool = True, human: bool = True) -> None:
        self.h, self.trunc, self.human = h, trunc, human

    @property
    def ID(self) -> str:
        ident = str(self.h.get("Id") or "")
        if ident in ("", "<missing>"):
            return "<missing>"
        return trunc_id(ident) if self.trunc else ident

    @property
    def CreatedSince(self) -> str:
        if not self.human:
            return self.CreatedAt
        return human_duration(time.time() - float(self.h.get("Created") or 0)) + " ago"

    @property
    def CreatedAt(self) -> str:
        return rfc3339(float(self.h.get("Created") or 0))

    @property
    def CreatedBy(self) -> str:
        by = str(self.h.get("CreatedBy") or "").replace("\t", " ")
        return ellipsis(by, 45) if self.trunc else by

    @property
    def Size(self) -> str:
        return human_size(self.h.get("Size") or 0) if self.human else str(self.h.get("Size") or 0)

    @property
    def Comment(self) -> str:
        return str(self.h.get("Comment") or "")


class StatsCtx(RowCtx):
    FIELDS = ("BlockIO", "CPUPerc", "Container", "ID", "MemPerc", "MemUsage", "Name", "NetIO", "PIDs")
    HEADERS: ClassVar[dict[str, str]] = {
        "Container": "CONTAINER",
        "ID": "CONTAINER ID",
        "Name": "NAME",
        "CPUPerc": "CPU %",
        "MemUsage": "MEM USAGE / LIMIT",
        "MemPerc": "MEM %",
        "NetIO": "NET I/O",
        "BlockIO": "BLOCK I/O",
        "PIDs": "PIDS",
    }

    def __init__(self, container: str, s: dict[str, Any]) -> None:
        self.Container = container
        self.s = s

    @property
    def ID(self) -> str:
        return trunc_id(str(self.s.get("id") or self.Container))

    @property
    def Name(self) -> str:
        return str(self.s.get("name") or "--").lstrip("/")

    @property
    def CPUPerc(self) -> str:
        cpu, pre = self.s.get("cpu_stats") or {}, self.s.get("precpu_stats") or {}
        cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get(
            "total_usage", 0
        )
        sys_delta = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
        ncpu = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
        pct = (cpu_delta / sys_delta) * ncpu * 100.0 if sys_delta > 0 and cpu_delta > 0 else 0.0
        return f"{pct:.2f}%"

    def _mem(self) -> tuple[float, float]:
        mem = self.s.get("memory_stats") or {}
        usage = float(mem.get("usage") or 0)
        st = mem.get("stats") or {}
        # docker subtracts page cache: cgroup v1 total_inactive_file, v2 inactive_file
        usage -= float(st.get("total_inactive_file", st.get("inactive_file", 0)) or 0)
        return max(usage, 0.0), float(mem.get("limit") or 0)

    @property
    def MemUsage(self) -> str:
        usage, limit = self._mem()
        return f"{bytes_size(usage)} / {bytes_size(limit)}"

    @property
    def MemPerc(self) -> str:
        usage, limit = self._mem()
        return f"{(usage / limit * 100.0 if limit else 0.0):.2f}%"

    @property
    def NetIO(self) -> str:
        rx = tx = 0
        for n in (self.s.get("networks") or {}).values():
            rx += n.get("rx_bytes", 0)
            tx += n.get("tx_bytes", 0)
        return f"{human_size(rx)} / {human_size(tx)}"

    @property
    def BlockIO(self) -> str:
        r = w = 0
        for e in (self.s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
            op = str(e.get("op", "")).lower()
            if op == "read":
                r += e.get("value", 0)
            elif op == "write":
                w += e.get("value", 0)
        return f"{human_size(r)} / {human_size(w)}"

    @property
    def PIDs(self) -> str:
        return str((self.s.get("pids_stats") or {}).get("current", 0))
