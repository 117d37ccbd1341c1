"""Container resource statistics in Docker's `GET /containers/{id}/stats` shape.

This module owns reading a container's cgroup (v1: one directory per controller; v2: one
unified directory), the host's /proc/stat and /proc/meminfo, and the container's
/proc/<pid>/net/dev, and turning them into Docker's JSON. The readers take directories
and text, so unit tests run them over fake trees. It keeps no state between samples: the
caller pairs each sample with the previous one (`precpu_stats`, `preread`).

Emulated Docker behaviour (moby daemon/stats_unix.go):
- cpu times are nanoseconds; v1 `cpuacct.stat` is in USER_HZ ticks, v2 `cpu.stat` in usec;
- `system_cpu_usage` is the first 7 fields of /proc/stat's "cpu" line, in nanoseconds, and
  `online_cpus` counts its "cpuN" lines;
- memory `limit` is the cgroup's limit, or the host's MemTotal when that is lower
  (no limit); v2 has no `max_usage` and no per-cpu usage;
- blkio on v2 fills only `io_service_bytes_recursive`; the other lists are null;
- the loopback interface is left out of `networks`; `networks` is absent without any.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.timefmt import ZERO_TIME, rfc3339

__all__ = [
    "CgroupDirs",
    "Sampler",
    "cgroup_dirs",
    "combine",
    "empty_stats",
    "mem_total",
    "parse_net_dev",
    "read_v1",
    "read_v2",
    "system_cpu",
    "zero_cpu_stats",
]

CGROUP_ROOT = Path("/sys/fs/cgroup")
_V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "blkio", "pids")
_BLKIO_KEYS = (
    "io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive", "io_service_time_recursive",
    "io_wait_time_recursive", "io_merged_recursive", "io_time_recursive", "sectors_recursive",
)  # fmt: skip
_NS = 1_000_000_000


@dataclass(frozen=True)
class CgroupDirs:
    """Where a container's cgroup lives: v2 = {"": dir}; v1 = {controller: dir}."""

    version: int
    dirs: Mapping[str, Path] = field(default_factory=dict)


def cgroup_dirs(proc_cgroup: str | None, cgroups_path: str, root: Path = CGROUP_ROOT) -> CgroupDirs:
    """From /proc/<pid>/cgroup when the container has a live pid, else from the path its
    spec asked for (`/dockyard/<id>`). A host is v2 when its root has cgroup.controllers;
    a hybrid host (v1 controllers plus an empty unified tree) reads v1."""
    v2 = (root / "cgroup.controllers").exists()
    if v2:
        rel = cgroups_path
        for line in (proc_cgroup or "").splitlines():
            hier, _, rest = line.partition(":")
            ctrls, _, path = rest.partition(":")
            if hier == "0" and ctrls == "":
                rel = path
        return CgroupDirs(2, {"": root / rel.lstrip("/")})
    dirs: dict[str, Path] = {}
    for line in (proc_cgroup or "").splitlines():
        _, _, rest = line.partition(":")
        ctrls, _, path = rest.partition(":")
        for c in ctrls.split(","):
            if c in _V1_CONTROLLERS:
                base = root / c if (root / c).is_dir() else root / ctrls
                dirs[c] = base / path.lstrip("/")
    for c in _V1_CONTROLLERS:
        dirs.setdefault(c, root / c / cgroups_path.lstrip("/"))
    return CgroupDirs(1, dirs)


# ---- small readers --------------------------------------------------------------------------


def _text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _int(path: Path, *, max_value: int = 0) -> int | None:
    """An integer file; "max" reads as `max_value`; missing or garbled is None."""
    t = _text(path)
    if t is None:
        return None
    t = t.strip()
    if t == "max":
        return max_value
    try:
        return int(t)
    except ValueError:
        return None


def _kv(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (_text(path) or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def mem_total(meminfo: str) -> int:
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def system_cpu(proc_stat: str, clk_tck: int = 100) -> tuple[int, int]:
    """(system_cpu_usage in ns, online cpus) from /proc/stat, as moby computes them."""
    usage, cpus = 0, 0
    for line in proc_stat.splitlines():
        if line.startswith("cpu "):
            fields = line.split()
            usage = sum(int(x) for x in fields[1:8]) * _NS // clk_tck
        elif line.startswith("cpu") and line[3:4].isdigit():
            cpus += 1
    return usage, cpus


def parse_net_dev(text: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        name = name.strip()
        f = [int(x) for x in rest.split()]
        if name == "lo" or len(f) < 12:
            continue
        out[name] = {
            "rx_bytes": f[0], "rx_packets": f[1], "rx_errors": f[2], "rx_dropped": f[3],
            "tx_bytes": f[8], "tx_packets": f[9], "tx_errors": f[10], "tx_dropped": f[11],
        }  # fmt: skip
    return out


def zero_cpu_stats() -> dict[str, Any]:
    return {
        "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    }


def _no_blkio() -> dict[str, Any]:
    return {k: None for k in _BLKIO_KEYS}


def empty_stats(name: str, cid: str) -> dict[str, Any]:
    """What Docker answers for a container that is not running: every number zero."""
    return {
        "name": name,
        "id": cid,
        "read": ZERO_TIME,
        "preread": ZERO_TIME,
        "pids_stats": {},
        "blkio_stats": _no_blkio(),
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": zero_cpu_stats(),
        "precpu_stats": zero_cpu_stats(),
        "memory_stats": {},
    }


# ---- cgroup v1 --------------------------------------------------------------------------------


def _blkio_v1(path: Path) -> list[dict[str, Any]]:
    """ "8:0 Read 4096" lines (or "8:0 4096" for sectors/time); the "Total" line is dropped."""
    out: list[dict[str, Any]] = []
    for line in (_text(path) or "").splitlines():
        f = line.split()
        if len(f) == 3 and ":" in f[0]:
            mm, op, v = f
        elif len(f) == 2 and ":" in f[0]:
            mm, op, v = f[0], "", f[1]
        else:
            continue
        major, _, minor = mm.partition(":")
        try:
            out.append({"major": int(major), "minor": int(minor), "op": op, "value": int(v)})
        except ValueError:
            continue
    return out


def read_v1(dirs: Mapping[str, Path], host_mem: int, clk_tck: int = 100) -> dict[str, Any]:
    """cpu_stats (without the system fields), memory_stats, pids_stats, blkio_stats."""
    cpuacct = dirs.get("cpuacct") or dirs.get("cpu") or Path("/nonexistent")
    cpu = dirs.get("cpu") or cpuacct
    ticks = _kv(cpuacct / "cpuacct.stat")
    percpu = [int(x) for x in (_text(cpuacct / "cpuacct.usage_percpu") or "").split()]
    throttle = _kv(cpu / "cpu.stat")
    cpu_usage: dict[str, Any] = {"total_usage": _int(cpuacct / "cpuacct.usage") or 0}
    if percpu:
        cpu_usage["percpu_usage"] = percpu
    cpu_usage["usage_in_kernelmode"] = ticks.get("system", 0) * _NS // clk_tck
    cpu_usage["usage_in_usermode"] = ticks.get("user", 0) * _NS // clk_tck
    cpu_stats = {
        "cpu_usage": cpu_usage,
        "throttling_data": {
            "periods": throttle.get("nr_periods", 0),
            "throttled_periods": throttle.get("nr_throttled", 0),
            "throttled_time": throttle.get("throttled_time", 0),
        },
    }

    mem = dirs.get("memory") or Path("/nonexistent")
    memory_stats: dict[str, Any] = {}
    usage = _int(mem / "memory.usage_in_bytes")
    if usage is not None:
        limit = _int(mem / "memory.limit_in_bytes") or 0
        if host_mem and (limit == 0 or limit > host_mem):
            limit = host_mem
        memory_stats = {
            "usage": usage,
            "max_usage": _int(mem / "memory.max_usage_in_bytes") or 0,
            "stats": _kv(mem / "memory.stat"),
            "limit": limit,
        }
        failcnt = _int(mem / "memory.failcnt")
        if failcnt:
            memory_stats["failcnt"] = failcnt

    pids = dirs.get("pids") or Path("/nonexistent")
    pids_stats: dict[str, int] = {}
    if (current := _int(pids / "pids.current")) is not None:
        pids_stats["current"] = current
        if limit_p := _int(pids / "pids.max", max_value=0):  # "max" is omitted, like Docker on v1
            pids_stats["limit"] = limit_p

    blk = dirs.get("blkio") or Path("/nonexistent")
    blkio: dict[str, Any] = {k: [] for k in _BLKIO_KEYS}
    cfq = (blk / "blkio.io_serviced_recursive").exists()
    if cfq:
        for key, fname in (
            ("io_service_bytes_recursive", "blkio.io_service_bytes_recursive"),
            ("io_serviced_recursive", "blkio.io_serviced_recursive"),
            ("io_queue_recursive", "blkio.io_queued_recursive"),
            ("io_service_time_recursive", "blkio.io_service_time_recursive"),
            ("io_wait_time_recursive", "blkio.io_wait_time_recursive"),
            ("io_merged_recursive", "blkio.io_merged_recursive"),
            ("io_time_recursive", "blkio.time_recursive"),
            ("sectors_recursive", "blkio.sectors_recursive"),
        ):
            blkio[key] = _blkio_v1(blk / fname)
    # the throttle files count I/O under every scheduler (CFQ is gone from modern kernels)
    if not blkio["io_service_bytes_recursive"]:
        blkio["io_service_bytes_recursive"] = _blkio_v1(
            blk / "blkio.throttle.io_service_bytes_recursive"
        ) or _blkio_v1(blk / "blkio.throttle.io_service_bytes")
    if not blkio["io_serviced_recursive"]:
        blkio["io_serviced_recursive"] = _blkio_v1(
            blk / "blkio.throttle.io_serviced_recursive"
        ) or _blkio_v1(blk / "blkio.throttle.io_serviced")
    return {
        "cpu_stats": cpu_stats, "memory_stats": memory_stats, "pids_stats": pids_stats, "blkio_stats": blkio,
    }  # fmt: skip


# ---- cgroup v2 --------------------------------------------------------------------------------


def read_v2(cg: Path, host_mem: int) -> dict[str, Any]:
    cs = _kv(cg / "cpu.stat")
    cpu_stats = {
        "cpu_usage": {
            "total_usage": cs.get("usage_usec", 0) * 1000,
            "usage_in_kernelmode": cs.get("system_usec", 0) * 1000,
            "usage_in_usermode": cs.get("user_usec", 0) * 1000,
        },
        "throttling_data": {
            "periods": cs.get("nr_periods", 0),
            "throttled_periods": cs.get("nr_throttled", 0),
            "throttled_time": cs.get("throttled_usec", 0) * 1000,
        },
    }
    memory_stats: dict[str, Any] = {}
    usage = _int(cg / "memory.current")
    if usage is not None:
        limit = _int(cg / "memory.max", max_value=2**63 - 1) or 0
        if host_mem and (limit == 0 or limit > host_mem):
            limit = host_mem
        memory_stats = {"usage": usage, "stats": _kv(cg / "memory.stat"), "limit": limit}
        if oom := _kv(cg / "memory.events").get("oom"):
            memory_stats["failcnt"] = oom

    pids_stats: dict[str, int] = {}
    if (current := _int(cg / "pids.current")) is not None:
        pids_stats["current"] = current
        # v2 reports "max" as the largest uint64, as Docker does
        pids_stats["limit"] = _int(cg / "pids.max", max_value=2**64 - 1) or 0

    service_bytes: list[dict[str, Any]] = []
    for line in (_text(cg / "io.stat") or "").splitlines():
        f = line.split()
        if not f or ":" not in f[0]:
            continue
        major, _, minor = f[0].partition(":")
        kv = dict(x.split("=", 1) for x in f[1:] if "=" in x)
        try:
            dev = {"major": int(major), "minor": int(minor)}
            service_bytes.append({**dev, "op": "read", "value": int(kv.get("rbytes", 0))})
            service_bytes.append({**dev, "op": "write", "value": int(kv.get("wbytes", 0))})
        except ValueError:
            continue
    blkio = _no_blkio()
    blkio["io_service_bytes_recursive"] = service_bytes or None
    return {
        "cpu_stats": cpu_stats, "memory_stats": memory_stats, "pids_stats": pids_stats, "blkio_stats": blkio,
    }  # fmt: skip


# ---- one sample -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sampler:
    """Reads one sample of a running container; `proc` and `clock` are seams for tests."""

    cgroup: CgroupDirs
    pid: int
    proc: Path = Path("/proc")
    clk_tck: int = field(default_factory=lambda: os.sysconf("SC_CLK_TCK"))

    @classmethod
    def for_container(
        cls, cid: str, pid: int, root: Path = CGROUP_ROOT, proc: Path = Path("/proc")
    ) -> Sampler:
        own = _text(proc / str(pid) / "cgroup") if pid else None
        return cls(cgroup_dirs(own, f"/dockyard/{cid}", root), pid, proc)

    def sample(self, now_ns: int) -> dict[str, Any]:
        """Everything but name, id, preread and precpu_stats, which the caller adds."""
        host_mem = mem_total(_text(self.proc / "meminfo") or "")
        if self.cgroup.version == 2:
            cg = read_v2(self.cgroup.dirs[""], host_mem)
        else:
            cg = read_v1(self.cgroup.dirs, host_mem, self.clk_tck)
        system, cpus = system_cpu(_text(self.proc / "stat") or "", self.clk_tck)
        cg["cpu_stats"]["system_cpu_usage"] = system
        cg["cpu_stats"]["online_cpus"] = cpus or len(cg["cpu_stats"]["cpu_usage"].get("percpu_usage") or [])
        out: dict[str, Any] = {
            "read": rfc3339(now_ns),
            "pids_stats": cg["pids_stats"],
            "blkio_stats": cg["blkio_stats"],
            "num_procs": 0,
            "storage_stats": {},
            "cpu_stats": cg["cpu_stats"],
            "memory_stats": cg["memory_stats"],
        }
        nets = parse_net_dev(_text(self.proc / str(self.pid) / "net" / "dev") or "") if self.pid else {}
        if nets:
            out["networks"] = nets
        return out


def combine(sample: dict[str, Any], prev: dict[str, Any] | None, name: str, cid: str) -> dict[str, Any]:
    """Docker's key order, with the previous sample's cpu stats and read time."""
    return {
        "name": name,
        "id": cid,
        "read": sample["read"],
        "preread": prev["read"] if prev else ZERO_TIME,
        "pids_stats": sample["pids_stats"],
        "blkio_stats": sample["blkio_stats"],
        "num_procs": sample["num_procs"],
        "storage_stats": sample["storage_stats"],
        "cpu_stats": sample["cpu_stats"],
        "precpu_stats": prev["cpu_stats"] if prev else zero_cpu_stats(),
        "memory_stats": sample["memory_stats"],
        **({"networks": sample["networks"]} if "networks" in sample else {}),
    }
