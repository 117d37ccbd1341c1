"""The pure OCI runtime spec builder: a container's settings in, config.json dict out.

Nothing here touches the system; the caller resolves users, writes files and mounts the
root filesystem. Defaults follow Docker's: its capability set, masked and read-only
/proc and /sys paths, a private /dev, tmpfs mounts that are noexec,nosuid,nodev unless the
user says otherwise, and the seccomp profile of `runtime/seccomp.py` (an allow list whose
capability-conditional rules are decided here from the container's final capability set).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Any

from dockyard.runtime import seccomp as seccomp_profiles

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

# Docker's defaults for every tmpfs the user asks for (`--tmpfs`, `--mount type=tmpfs`); the
# user's own options override them flag by flag (`exec` undoes `noexec`), as dockerd merges.
TMPFS_DEFAULTS = ("noexec", "nosuid", "nodev")
_FLAG_OPPOSITES = {
    "exec": "noexec", "suid": "nosuid", "dev": "nodev", "ro": "rw", "atime": "noatime",
    "diratime": "nodiratime", "relatime": "norelatime", "strictatime": "nostrictatime",
}  # fmt: skip
_FLAG_OPPOSITES.update({v: k for k, v in list(_FLAG_OPPOSITES.items())})

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
    seccomp: bool = True  # False: unconfined (`seccomp=unconfined`)
    seccomp_profile: dict[str, Any] | None = None  # a user's profile in Docker's format; None: built-in
    no_new_privileges: bool = False
    masked_paths: tuple[str, ...] | None = None  # None: Docker's defaults
    readonly_paths: tuple[str, ...] | None = None
    host_caps: frozenset[str] | None = None  # the daemon's bounding set; None: unknown (no limit)
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


def final_capabilities(inp: SpecInput) -> list[str]:
    """What the process really gets: the requested set within what the daemon itself holds.

    A restricted host (a sandbox, a container) lacks some capabilities, and the runtime fails
    with EPERM when asked to grant one; `--privileged` then means "all we have", as podman
    does. The seccomp profile's capability rules are decided from this set, not the request.
    """
    caps = capabilities(inp)
    return caps if inp.host_caps is None else [c for c in caps if c in inp.host_caps]


def tmpfs_options(user: tuple[str, ...] | list[str]) -> list[str]:
    """Docker's tmpfs defaults merged with the user's options (later options win)."""
    out: list[str] = []
    for opt in (*TMPFS_DEFAULTS, *user):
        if not opt:
            continue
        if "=" in opt:
            key = opt.split("=", 1)[0] + "="
            out = [o for o in out if not o.startswith(key)]
        else:
            out = [o for o in out if o not in (opt, _FLAG_OPPOSITES.get(opt))]
        out.append(opt)
    return out


def seccomp_spec(inp: SpecInput, caps: list[str]) -> dict[str, Any] | None:
    """The OCI `linux.seccomp` of the container, or None when it runs unconfined."""
    if inp.privileged or not inp.seccomp:  # Docker: a privileged container gets no filter
        return None
    if inp.seccomp_profile is not None:
        return seccomp_profiles.to_oci(inp.seccomp_profile, caps)
    return seccomp_profiles.profile(caps)


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
    caps = final_capabilities(inp)
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
        "noNewPrivileges": inp.no_new_privileges,
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
        mounts.append(_mount(dest, "tmpfs", "tmpfs", tmpfs_options(tmpfs_opts.split(","))))
    for m in inp.mounts:
        if m.type == "tmpfs":  # `--mount type=tmpfs`: the same defaults as `--tmpfs`
            opts = tmpfs_options([*m.options, "ro" if m.readonly else "rw"])
            mounts.append(_mount(m.destination, "tmpfs", m.source, opts))
            continue
        if m.type != "bind":  # a filesystem of its own, not a bind
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
        masked = MASKED_PATHS if inp.masked_paths is None else inp.masked_paths
        readonly = READONLY_PATHS if inp.readonly_paths is None else inp.readonly_paths
        if masked:
            linux["maskedPaths"] = list(masked)
        if readonly:
            linux["readonlyPaths"] = list(readonly)
    if (filt := seccomp_spec(inp, caps)) is not None:
        linux["seccomp"] = filt
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


def with_user_namespace(
    spec: dict[str, Any],
    uid_mappings: list[dict[str, int]],
    gid_mappings: list[dict[str, int]],
    join: str | None = None,
) -> dict[str, Any]:
    """A remapped daemon's container (`--userns-remap`): a new user namespace with the
    daemon's mappings, or, with `join`, the user namespace at that path (the one owning a
    network namespace being joined). The mappings stay in the spec when joining: runc 1.1
    refuses a user namespace without them, and they are the joined one's (dockerd keeps
    them too). Returns `spec`, changed."""
    linux = spec.setdefault("linux", {})
    namespaces = [ns for ns in linux.get("namespaces", []) if ns.get("type") != "user"]
    namespaces.append({"type": "user", "path": join} if join else {"type": "user"})
    linux["uidMappings"] = [dict(m) for m in uid_mappings]
    linux["gidMappings"] = [dict(m) for m in gid_mappings]
    linux["namespaces"] = namespaces
    return spec


def _rootfs_remount_hook(rootfs: str) -> dict[str, Any]:
    """A createContainer hook that clears nosuid/nodev on the container's own root.

    The host's rootfs mount is nosuid,nodev so a setuid file a container made is inert
    there (CVE-2021-41091), but runc's bind of it would inherit those flags, and setuid
    programs in images (su, ping, sudo) must keep working as on Docker. runc runs
    createContainer hooks in the container's mount namespace before pivot_root, so the
    remount changes only the container's copy, never the host's."""
    mount = shutil.which("mount") or "/usr/bin/mount"
    return {"createContainer": [{"path": mount, "args": ["mount", "-o", "remount,bind,suid,dev", rootfs]}]}
