"""The pure OCI runtime spec builder: a container's settings in, config.json dict out.

Nothing here touches the system; the caller resolves users, writes files and mounts the
root filesystem. Defaults follow Docker's: its capability set, masked and read-only
/proc and /sys paths, a private /dev, and a seccomp profile that denies the syscalls
Docker's default profile denies (written here as a deny list).
"""

from __future__ import annotations

import shutil

from dataclasses import dataclass, field
from typing import Any

DEFAULT_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)  # fmt: skip

ALL_CAPS = (
    "CAP_AUDIT_CONTROL", "CAP_AUDIT_READ", "CAP_AUDIT_WRITE", "CAP_BLOCK_SUSPEND", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
    "CAP_FSETID", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_KILL", "CAP_LEASE", "CAP_LINUX_IMMUTABLE",
    "CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE", "CAP_MKNOD", "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_RAW", "CAP_PERFMON", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
    "CAP_SETUID", "CAP_SYSLOG", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_CHROOT", "CAP_SYS_MODULE",
    "CAP_SYS_NICE", "CAP_SYS_PACCT", "CAP_SYS_PTRACE", "CAP_SYS_RAWIO", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_WAKE_ALARM",
)  # fmt: skip

MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)  # fmt: skip
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# Syscalls Docker's default seccomp profile does not allow (its profile is an allow list;
# this is the same boundary written as a deny list, returning EPERM like Docker does).
DENIED_SYSCALLS = (
    "acct", "add_key", "bpf", "clock_settime", "create_module", "delete_module",
    "finit_module", "get_kernel_syms", "get_mempolicy", "init_module", "ioperm", "iopl", "kcmp",
    "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mbind", "mount", "mount_setattr",
    "move_mount", "move_pages", "name_to_handle_at", "nfsservctl", "open_by_handle_at", "open_tree",
    "fsopen", "fsconfig", "fsmount", "fspick", "perf_event_open", "pivot_root", "process_vm_readv",
    "process_vm_writev", "ptrace", "query_module", "quotactl", "reboot", "request_key",
    "set_mempolicy", "setns", "settimeofday", "stime", "swapon", "swapoff", "sysfs", "_sysctl",
    "umount", "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vm86", "vm86old",
)  # fmt: skip

_DEVICES = [
    # (type, major, minor, path)
    ("c", 1, 3, "/dev/null"), ("c", 1, 5, "/dev/zero"), ("c", 1, 7, "/dev/full"),
    ("c", 1, 8, "/dev/random"), ("c", 1, 9, "/dev/urandom"), ("c", 5, 0, "/dev/tty"),
]  # fmt: skip

_ULIMITS = {
    "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA", "fsize": "RLIMIT_FSIZE",
    "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK", "msgqueue": "RLIMIT_MSGQUEUE",
    "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS",
    "rtprio": "RLIMIT_RTPRIO", "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING",
    "stack": "RLIMIT_STACK", "as": "RLIMIT_AS",
}  # fmt: skip


@dataclass(frozen=True)
class ProcessUser:
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()


@dataclass(frozen=True)
class BindMount:
    source: str
    destination: str
    readonly: bool = False
    options: tuple[str, ...] = ()
    type: str = "bind"


@dataclass(frozen=True)
class SpecInput:
    """Everything the spec depends on, already resolved by the caller."""

    args: list[str]
    env: list[str]
    cwd: str
    user: ProcessUser
    hostname: str
    domainname: str = ""
    terminal: bool = False
    readonly_rootfs: bool = False
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    network_ns: str | None = "new"  # "new", None (host), or a path to join
    ipc_host: bool = False
    pid_host: bool = False
    uts_host: bool = False
    mounts: tuple[BindMount, ...] = ()
    tmpfs: dict[str, str] = field(default_factory=dict)
    shm_size: int = 64 * 1024 * 1024
    sysctls: dict[str, str] = field(default_factory=dict)
    ulimits: tuple[dict[str, Any], ...] = ()
    resources: dict[str, Any] = field(default_factory=dict)
    cgroups_path: str = ""
    seccomp: bool = True
    oom_score_adj: int = 0
    # The host path of the rootfs mount whose nosuid/nodev (host-side hardening) must not
    # reach the container: it is remounted suid,dev in the container's mount namespace.
    rootfs_remount: str | None = None


def normalize_cap(name: str) -> str:
    name = name.upper()
    return name if name.startswith("CAP_") else f"CAP_{name}"


def capabilities(inp: SpecInput) -> list[str]:
    if inp.privileged:
        return list(ALL_CAPS)
    adds = {normalize_cap(c) for c in inp.cap_add}
    drops = {normalize_cap(c) for c in inp.cap_drop}
    base = list(ALL_CAPS) if "CAP_ALL" in adds else list(DEFAULT_CAPS)
    if "CAP_ALL" in drops:
        base = []
    caps = [c for c in base if c not in drops]
    caps += sorted(c for c in adds if c not in caps and c != "CAP_ALL")
    return caps


def resources(hc: dict[str, Any]) -> dict[str, Any]:
    """Docker HostConfig resource fields to OCI linux.resources."""
    res: dict[str, Any] = {}
    mem: dict[str, Any] = {}
    if hc.get("Memory"):
        mem["limit"] = int(hc["Memory"])
        swap = hc.get("MemorySwap")
        if swap == -1:
            mem["swap"] = -1
        elif swap:
            mem["swap"] = int(swap)
        else:
            mem["swap"] = 2 * int(hc["Memory"])  # Docker: swap defaults to the limit again
    if hc.get("MemoryReservation"):
        mem["reservation"] = int(hc["MemoryReservation"])
    if mem:
        res["memory"] = mem
    cpu: dict[str, Any] = {}
    if hc.get("CpuShares"):
        cpu["shares"] = int(hc["CpuShares"])
    if hc.get("NanoCpus"):
        cpu["period"] = 100000
        cpu["quota"] = int(hc["NanoCpus"]) * 100000 // 1_000_000_000
    if hc.get("CpuQuota"):
        cpu["quota"] = int(hc["CpuQuota"])
    if hc.get("CpuPeriod"):
        cpu["period"] = int(hc["CpuPeriod"])
    if hc.get("CpusetCpus"):
        cpu["cpus"] = hc["CpusetCpus"]
    if hc.get("CpusetMems"):
        cpu["mems"] = hc["CpusetMems"]
    if cpu:
        res["cpu"] = cpu
    if hc.get("PidsLimit") and int(hc["PidsLimit"]) > 0:
        res["pids"] = {"limit": int(hc["PidsLimit"])}
    return res


def _mount(dest: str, type: str, source: str, options: list[str]) -> dict[str, Any]:
    return {"destination": dest, "type": type, "source": source, "options": options}


def build(inp: SpecInput) -> dict[str, Any]:
    caps = capabilities(inp)
    # Without Ulimits the container inherits the daemon's limits, as under Docker; raising
    # them needs CAP_SYS_RESOURCE, which not every host grants.
    rlimits: list[dict[str, Any]] = []
    for u in inp.ulimits:
        name = _ULIMITS.get(str(u.get("Name", "")))
        if name:
            rlimits = [r for r in rlimits if r["type"] != name]
            rlimits.append({"type": name, "hard": int(u.get("Hard", 0)), "soft": int(u.get("Soft", 0))})
    process: dict[str, Any] = {
        "terminal": inp.terminal,
        "user": {
            "uid": inp.user.uid,
            "gid": inp.user.gid,
            **({"additionalGids": list(inp.user.additional_gids)} if inp.user.additional_gids else {}),
        },
        "args": inp.args,
        "env": inp.env,
        "cwd": inp.cwd or "/",
        "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
        "rlimits": rlimits,
        "noNewPrivileges": False,
        "oomScoreAdj": inp.oom_score_adj,
    }
    ro = [] if inp.privileged else ["ro"]
    mounts = [
        _mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount("/dev/pts", "devpts", "devpts",
               ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        _mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", *ro]),
        _mount("/sys/fs/cgroup", "cgroup", "cgroup", ["nosuid", "noexec", "nodev", "relatime", *ro]),
        _mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
    ]  # fmt: skip
    if not inp.ipc_host:
        mounts.append(
            _mount("/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", f"size={inp.shm_size}"])
        )
    for dest, tmpfs_opts in inp.tmpfs.items():
        options = ["nosuid", "nodev", "noexec"] if not tmpfs_opts else []
        options += [o for o in tmpfs_opts.split(",") if o]
        mounts.append(_mount(dest, "tmpfs", "tmpfs", options))
    for m in inp.mounts:
        if m.type != "bind":  # e.g. `--mount type=tmpfs`: a filesystem of its own, not a bind
            mounts.append(_mount(m.destination, m.type, m.source, [*m.options, "ro" if m.readonly else "rw"]))
            continue
        opts = ["rbind", *m.options, "ro" if m.readonly else "rw"]
        mounts.append(_mount(m.destination, "bind", m.source, opts))

    namespaces = [{"type": "mount"}]
    if not inp.pid_host:
        namespaces.append({"type": "pid"})
    if not inp.ipc_host:
        namespaces.append({"type": "ipc"})
    if not inp.uts_host:
        namespaces.append({"type": "uts"})
    if inp.network_ns == "new":
        namespaces.append({"type": "network"})
    elif inp.network_ns:
        namespaces.append({"type": "network", "path": inp.network_ns})

    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "resources": {
            "devices": [{"allow": inp.privileged, "access": "rwm"}]
            + [
                {"allow": True, "type": t, "major": ma, "minor": mi, "access": "rwm"}
                for t, ma, mi, _ in _DEVICES
            ]
            + [
                {"allow": True, "type": "c", "major": 136, "access": "rwm"},  # /dev/pts/*
                {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},  # ptmx
            ],
            **inp.resources,
        },
        "sysctl": dict(inp.sysctls),
    }
    if inp.cgroups_path:
        linux["cgroupsPath"] = inp.cgroups_path
    if not inp.privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
        if inp.seccomp:
            linux["seccomp"] = {
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [{"names": list(DENIED_SYSCALLS), "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
            }
    return {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": "rootfs", "readonly": inp.readonly_rootfs},
        "hostname": inp.hostname,
        **({"domainname": inp.domainname} if inp.domainname else {}),
        "mounts": mounts,
        "linux": linux,
        **({"hooks": _rootfs_remount_hook(inp.rootfs_remount)} if inp.rootfs_remount else {}),
    }


def _rootfs_remount_hook(rootfs: str) -> dict[str, Any]:
    """A createContainer hook that clears nosuid/nodev on the container's own root.

    The host's rootfs mount is nosuid,nodev so a setuid file a container made is inert
    there (CVE-2021-41091), but runc's bind of it would inherit those flags, and setuid
    programs in images (su, ping, sudo) must keep working as on Docker. runc runs
    createContainer hooks in the container's mount namespace before pivot_root, so the
    remount changes only the container's copy, never the host's."""
    mount = shutil.which("mount") or "/usr/bin/mount"
    return {"createContainer": [{"path": mount, "args": ["mount", "-o", "remount,bind,suid,dev", rootfs]}]}
