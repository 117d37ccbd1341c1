"""Seccomp profiles: the built-in default, users' profiles in Docker's format, and their OCI form.

This module owns three things and nothing else:

- `DEFAULT`: the built-in profile, written in Docker's profile format (the format users write
  for `--security-opt seccomp=<file>`). Its semantics are Docker's default profile's: every
  syscall not listed fails with EPERM; an allow list of the ordinary syscalls; the namespace
  flags of `clone` only with CAP_SYS_ADMIN (an argument filter on clone's flags word);
  `clone3` answering ENOSYS without CAP_SYS_ADMIN (its flags sit in a struct seccomp cannot
  read, and ENOSYS makes glibc fall back to `clone`, where the filter applies); groups of
  syscalls allowed only when the container holds the capability that guards them; and
  `io_uring_*` left out entirely (its rings perform I/O the filter never sees, which is why
  newer Docker profiles dropped it too).
- `parse(text)`: validation of a user's profile at create time, so a bad one is a 400 before
  anything is written. Everything the format can say is either honoured or refused.
- `to_oci(profile, capabilities)`: the conversion to the OCI `linux.seccomp` object, which
  decides the capability- and architecture-conditional rules from the container's final
  capability set. `profile(capabilities)` is that conversion for the built-in profile.

Pure: no files, no syscalls (the host's architecture and kernel release are read once from
`os.uname()` unless the caller passes them).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from dockyard.errdefs import InvalidArgument

__all__ = ["DEFAULT", "native_arch", "parse", "profile", "to_oci"]

EPERM = 1
ENOSYS = 38

# clone(2)'s flags that create namespaces: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER,
# NEWPID, NEWNET. Without CAP_SYS_ADMIN clone is allowed only when (flags & mask) == 0;
# CLONE_NEWUSER matters most, since an unprivileged user namespace needs no capability and
# opens the kernel's namespaced-root attack surface.
CLONE_NAMESPACE_FLAGS = (
    0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
)

# Everything a normal program needs. Kept in Docker's order of thought: file I/O, processes,
# signals, memory, time reading, sockets, IPC; 32-bit and time64 variants for the sub-arches.
_ALLOWED = (
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat", "capget", "capset",
    "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64", "clock_getres",
    "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
    "clock_nanosleep_time64", "close", "close_range", "connect", "copy_file_range", "creat", "dup",
    "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit",
    "exit_group", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark",
    "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64",
    "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat",
    "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex",
    "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake", "futimesat", "getcpu",
    "getcwd", "getdents", "getdents64", "getegid", "getegid32", "geteuid", "geteuid32", "getgid",
    "getgid32", "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid",
    "getppid", "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32",
    "getrlimit", "get_robust_list", "getrusage", "getsid", "getsockname", "getsockopt",
    "get_thread_area", "gettid", "gettimeofday", "getuid", "getuid32", "getxattr", "inotify_add_watch",
    "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "ioctl", "io_destroy",
    "io_getevents", "io_pgetevents", "io_pgetevents_time64", "ioprio_get", "ioprio_set", "io_setup",
    "io_submit", "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset",
    "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen",
    "listxattr", "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64",
    "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir",
    "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect",
    "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv",
    "msgsnd", "msync", "munlock", "munlockall", "munmap", "name_to_handle_at", "nanosleep",
    "newfstatat", "_newselect", "open", "openat", "openat2", "pause", "pidfd_open", "pidfd_send_signal",
    "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll", "ppoll", "ppoll_time64",
    "prctl", "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease", "pselect6",
    "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat",
    "readv", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages",
    "removexattr", "rename", "renameat", "renameat2", "restart_syscall", "rmdir", "rseq",
    "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
    "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo",
    "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
    "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr", "sched_setparam",
    "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop", "semtimedop",
    "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto", "setfsgid",
    "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32",
    "setitimer", "setpgid", "setpriority", "setregid", "setregid32", "setresgid", "setresgid32",
    "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit", "set_robust_list", "setsid",
    "setsockopt", "set_thread_area", "set_tid_address", "setuid", "setuid32", "setxattr", "shmat",
    "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4", "sigprocmask",
    "sigreturn", "socketcall", "socketpair", "splice", "stat", "stat64", "statfs", "statfs64", "statx",
    "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time",
    "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64",
    "timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64",
    "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate", "truncate64", "ugetrlimit",
    "umask", "uname", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes", "vfork",
    "vmsplice", "wait4", "waitid", "waitpid", "write", "writev",
)  # fmt: skip


def _allow(names: Iterable[str], **extra: Any) -> dict[str, Any]:
    return {"names": list(names), "action": "SCMP_ACT_ALLOW", **extra}


def _arg(index: int, value: int, op: str, value_two: int = 0) -> dict[str, Any]:
    return {"index": index, "value": value, "valueTwo": value_two, "op": op}


def _caps(*caps: str) -> dict[str, Any]:
    return {"caps": list(caps)}


# The built-in profile, in Docker's format (see the module docstring for its semantics).
#
# One deliberate difference from Docker's: x86-64 lists the 32-bit x86 ABI but not x32.
# libseccomp compiles an x32 section slowly (measured here: runc run 78 ms with x86_64+x86,
# 111 ms with x32 added, median of 30), and x32 is nearly extinct (kernels build it out or
# boot with it off; this one has no CONFIG_X86_X32_ABI). An x32 syscall then matches no
# listed architecture and fails as a bad-arch call, so the change only ever denies more.
DEFAULT: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": EPERM,
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
        {"architecture": "SCMP_ARCH_PPC64LE", "subArchitectures": []},
        {"architecture": "SCMP_ARCH_S390X", "subArchitectures": ["SCMP_ARCH_S390"]},
        {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": []},
    ],
    "syscalls": [
        _allow(_ALLOWED),
        # Since 4.8 the kernel runs seccomp after ptrace's changes, so tracing cannot bypass it.
        _allow(("process_vm_readv", "process_vm_writev", "ptrace"), includes={"minKernel": "4.8"}),
        # AF_VSOCK (40) reaches the hypervisor, outside every namespace.
        _allow(("socket",), args=[_arg(0, 40, "SCMP_CMP_NE")]),
        # personality: only the harmless personas (Linux, its 32-bit variant, UNAME26, query).
        *(_allow(("personality",), args=[_arg(0, v, "SCMP_CMP_EQ")]) for v in (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)),
        _allow(("arch_prctl",), includes={"arches": ["amd64", "x32"]}),
        _allow(("modify_ldt",), includes={"arches": ["amd64", "x32", "x86"]}),
        _allow(("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"),
               includes={"arches": ["arm", "arm64"]}),
        _allow(("sync_file_range2", "swapcontext"), includes={"arches": ["ppc64le"]}),
        _allow(("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"), includes={"arches": ["s390", "s390x"]}),
        _allow(("riscv_flush_icache",), includes={"arches": ["riscv64"]}),
        _allow(("open_by_handle_at",), includes=_caps("CAP_DAC_READ_SEARCH")),
        _allow(("bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
                "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open",
                "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
                "umount2", "unshare"), includes=_caps("CAP_SYS_ADMIN")),
        # Without CAP_SYS_ADMIN: clone without any namespace flag (s390 swaps clone's first two args).
        _allow(("clone",), args=[_arg(0, CLONE_NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ")],
               excludes={"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}),
        _allow(("clone",), args=[_arg(1, CLONE_NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ")],
               includes={"arches": ["s390", "s390x"]}, excludes={"caps": ["CAP_SYS_ADMIN"]}),
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS, "excludes": _caps("CAP_SYS_ADMIN")},
        _allow(("reboot",), includes=_caps("CAP_SYS_BOOT")),
        _allow(("chroot",), includes=_caps("CAP_SYS_CHROOT")),
        _allow(("delete_module", "init_module", "finit_module"), includes=_caps("CAP_SYS_MODULE")),
        _allow(("acct",), includes=_caps("CAP_SYS_PACCT")),
        _allow(("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"),
               includes=_caps("CAP_SYS_PTRACE")),
        _allow(("iopl", "ioperm"), includes=_caps("CAP_SYS_RAWIO")),
        _allow(("settimeofday", "stime", "clock_settime", "clock_settime64"), includes=_caps("CAP_SYS_TIME")),
        _allow(("vhangup",), includes=_caps("CAP_SYS_TTY_CONFIG")),
        _allow(("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"), includes=_caps("CAP_SYS_NICE")),
        _allow(("syslog",), includes=_caps("CAP_SYSLOG")),
        _allow(("bpf",), includes=_caps("CAP_BPF")),
        _allow(("perf_event_open",), includes=_caps("CAP_PERFMON")),
    ],
}  # fmt: skip

# What the profile format may say, and what runc (libseccomp) accepts here.
ACTIONS = frozenset({
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",
})  # fmt: skip
OPERATORS = frozenset({
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
})  # fmt: skip
ARCHES = frozenset({
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_RISCV64",
})  # fmt: skip
# Docker's names for architectures in includes/excludes (Go's GOARCH spelling).
ARCH_NAMES = frozenset({
    "x86", "amd64", "x32", "arm", "arm64", "mips", "mips64", "mips64n32", "mipsel", "mipsel64",
    "mipsel64n32", "ppc", "ppc64", "ppc64le", "s390", "s390x", "riscv64",
})  # fmt: skip
_MACHINE_TO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x",
                    "riscv64": "riscv64", "i686": "x86", "i386": "x86", "armv7l": "arm"}  # fmt: skip
_ARCH_TO_SCMP = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "ppc64le": "SCMP_ARCH_PPC64LE",
                 "s390x": "SCMP_ARCH_S390X", "riscv64": "SCMP_ARCH_RISCV64", "x86": "SCMP_ARCH_X86",
                 "arm": "SCMP_ARCH_ARM"}  # fmt: skip

_TOP_KEYS = {"defaultAction", "defaultErrnoRet", "architectures", "archMap", "syscalls", "comment"}
_SYSCALL_KEYS = {"name", "names", "action", "errnoRet", "args", "comment", "includes", "excludes"}
_ARG_KEYS = {"index", "value", "valueTwo", "op"}
_FILTER_KEYS = {"caps", "arches", "minKernel"}
_ARCHMAP_KEYS = {"architecture", "subArchitectures"}
# Recognised but refused: a seccomp agent (notify) needs a listener this daemon does not run.
_UNSUPPORTED_KEYS = {"listenerPath", "listenerMetadata", "flags"}


def native_arch() -> str:
    """The host's architecture in Docker's spelling ("amd64", "arm64", ...)."""
    machine = os.uname().machine
    return _MACHINE_TO_ARCH.get(machine, machine)


def _kernel_release() -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _bad(why: str) -> InvalidArgument:
    return InvalidArgument(f"invalid seccomp profile: {why}")


def _check_keys(obj: Any, allowed: set[str], where: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise _bad(f"{where} must be a JSON object")
    for key in obj:
        if key in _UNSUPPORTED_KEYS:
            raise _bad(f"{where}: {key!r} is not supported by this daemon")
        if key not in allowed:
            raise _bad(f"{where}: unknown field {key!r}")
    return obj


def _check_uint(v: Any, what: str) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v >= 1 << 64:
        raise _bad(f"{what} must be an unsigned integer")


def _check_strings(v: Any, what: str, allowed: frozenset[str] | None = None) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _bad(f"{what} must be a list of strings")
    for x in v:
        if allowed is not None and x not in allowed:
            raise _bad(f"{what}: unknown value {x!r}")
    return v


def _check_filter(f: Any, where: str) -> None:
    f = _check_keys(f, _FILTER_KEYS, where)
    if "caps" in f:
        _check_strings(f["caps"], f"{where}.caps")
    if "arches" in f:
        _check_strings(f["arches"], f"{where}.arches", ARCH_NAMES)
    kernel = f.get("minKernel")
    if kernel is not None and not (isinstance(kernel, str) and re.fullmatch(r"\d+\.\d+", kernel)):
        raise _bad(f"{where}.minKernel must be a kernel version such as \"4.8\"")


def validate(doc: Any) -> dict[str, Any]:
    """Checks a profile (already decoded) in Docker's format; raises InvalidArgument naming the fault."""
    top = _check_keys(doc, _TOP_KEYS, "profile")
    action = top.get("defaultAction")
    if not action:
        raise _bad("defaultAction is required")
    if action not in ACTIONS:
        raise _bad(f"unknown defaultAction {action!r}")
    if "defaultErrnoRet" in top:
        _check_uint(top["defaultErrnoRet"], "defaultErrnoRet")
    if top.get("architectures") and top.get("archMap"):
        raise _bad("'architectures' and 'archMap' were both given; use one of them")
    if "architectures" in top:
        _check_strings(top["architectures"], "architectures", ARCHES)
    if not isinstance(top.get("archMap", []), list):
        raise _bad("archMap must be a list")
    for i, entry in enumerate(top.get("archMap", [])):
        e = _check_keys(entry, _ARCHMAP_KEYS, f"archMap[{i}]")
        if e.get("architecture") not in ARCHES:
            raise _bad(f"archMap[{i}]: unknown architecture {e.get('architecture')!r}")
        _check_strings(e.get("subArchitectures") or [], f"archMap[{i}].subArchitectures", ARCHES)
    if not isinstance(top.get("syscalls", []), list):
        raise _bad("syscalls must be a list")
    for i, call in enumerate(top.get("syscalls", [])):
        where = f"syscalls[{i}]"
        c = _check_keys(call, _SYSCALL_KEYS, where)
        if c.get("name") and c.get("names"):
            raise _bad(f"{where}: 'name' and 'names' were both given; use one of them")
        names = [c["name"]] if c.get("name") else _check_strings(c.get("names") or [], f"{where}.names")
        if not names or not all(isinstance(n, str) and re.fullmatch(r"[a-z0-9_]+", n) for n in names):
            raise _bad(f"{where}: needs syscall names")
        if c.get("action") not in ACTIONS:
            raise _bad(f"{where}: unknown action {c.get('action')!r}")
        if "errnoRet" in c:
            _check_uint(c["errnoRet"], f"{where}.errnoRet")
            if c["action"] not in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
                raise _bad(f"{where}: errnoRet is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE")
        if not isinstance(c.get("args") or [], list):
            raise _bad(f"{where}.args must be a list")
        for j, arg in enumerate(c.get("args") or []):
            a = _check_keys(arg, _ARG_KEYS, f"{where}.args[{j}]")
            index = a.get("index")
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 5:
                raise _bad(f"{where}.args[{j}].index must be 0 to 5")
            _check_uint(a.get("value", 0), f"{where}.args[{j}].value")
            _check_uint(a.get("valueTwo", 0), f"{where}.args[{j}].valueTwo")
            if a.get("op") not in OPERATORS:
                raise _bad(f"{where}.args[{j}]: unknown op {a.get('op')!r}")
        for kind in ("includes", "excludes"):
            if kind in c:
                _check_filter(c[kind], f"{where}.{kind}")
    return dict(top)


def parse(text: str) -> dict[str, Any]:
    """A user's profile (the JSON the docker CLI sends as `seccomp=<json>`), validated."""
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise InvalidArgument(f"decoding seccomp profile failed: {err}") from None
    return validate(doc)


def _wanted(call: Mapping[str, Any], caps: frozenset[str], arch: str, kernel: tuple[int, int]) -> bool:
    """Docker's includes/excludes: included when every condition holds, excluded when any does."""
    inc, exc = call.get("includes") or {}, call.get("excludes") or {}
    if exc.get("arches") and arch in exc["arches"]:
        return False
    if exc.get("caps") and any(c in caps for c in exc["caps"]):
        return False
    if exc.get("minKernel") and kernel >= _version(exc["minKernel"]):
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if inc.get("caps") and not all(c in caps for c in inc["caps"]):
        return False
    return not (inc.get("minKernel") and kernel < _version(inc["minKernel"]))


def _version(s: str) -> tuple[int, int]:
    major, minor = s.split(".")[:2]
    return int(major), int(minor)


def to_oci(
    doc: Mapping[str, Any],
    capabilities: Iterable[str],
    arch: str | None = None,
    kernel: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """A validated Docker-format profile as the OCI `linux.seccomp` object for one container.

    `capabilities` is the container's final (bounding) set; `arch` is Docker's name of the
    host architecture, `kernel` its (major, minor) release.
    """
    caps = frozenset(capabilities)
    arch = arch or native_arch()
    kernel = kernel or _kernel_release()
    out: dict[str, Any] = {"defaultAction": doc["defaultAction"]}
    if "defaultErrnoRet" in doc:
        out["defaultErrnoRet"] = doc["defaultErrnoRet"]
    arches = list(doc.get("architectures") or [])
    native = _ARCH_TO_SCMP.get(arch)
    for entry in doc.get("archMap") or []:
        if entry["architecture"] == native:  # only the host's family: others could never run here
            arches = [native, *(entry.get("subArchitectures") or [])]
            break
    if arches:
        out["architectures"] = arches
    syscalls = []
    for call in doc.get("syscalls") or []:
        if not _wanted(call, caps, arch, kernel):
            continue
        rule: dict[str, Any] = {
            "names": [call["name"]] if call.get("name") else list(call["names"]),
            "action": call["action"],
        }
        if "errnoRet" in call:
            rule["errnoRet"] = call["errnoRet"]
        if call.get("args"):
            rule["args"] = [
                {"index": a["index"], "value": a.get("value", 0), "valueTwo": a.get("valueTwo", 0),
                 "op": a["op"]}
                for a in call["args"]
            ]  # fmt: skip
        syscalls.append(rule)
    out["syscalls"] = syscalls
    return out


def profile(
    capabilities: Iterable[str], arch: str | None = None, kernel: tuple[int, int] | None = None
) -> dict[str, Any]:
    """The built-in profile for a container holding `capabilities`, in OCI form."""
    return to_oci(DEFAULT, capabilities, arch, kernel)
