"""The seccomp profiles (runtime/seccomp.py) and their place in the spec (runtime/spec.py):
golden checks of the built-in profile for given capability sets, the conversion of users'
Docker-format profiles, and the 400s for what cannot be honoured. Pure: no root, no files."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dockyard.errdefs import InvalidArgument
from dockyard.runtime import seccomp
from dockyard.runtime import spec as ocispec

KERNEL = (6, 18)


def _rules(p: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for r in p["syscalls"] if name in r["names"]]


def _unconditional(p: dict[str, Any]) -> set[str]:
    return {n for r in p["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args") for n in r["names"]}


def test_default_profile_golden_shape() -> None:
    p = seccomp.profile(ocispec.DEFAULT_CAPS, arch="amd64", kernel=KERNEL)
    assert p["defaultAction"] == "SCMP_ACT_ERRNO" and p["defaultErrnoRet"] == 1
    assert p["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]  # no x32: see DEFAULT
    allowed = _unconditional(p)
    # the ordinary calls, and the arch's own
    assert {"read", "write", "openat", "execve", "fork", "wait4", "mmap", "futex", "arch_prctl", "modify_ldt"} <= allowed
    # ptrace since 4.8 (seccomp runs after the tracer's changes), chroot with the default CAP_SYS_CHROOT
    assert {"ptrace", "process_vm_readv", "chroot"} <= allowed
    # nothing that needs a capability the default set lacks, and never io_uring
    for name in ("mount", "umount2", "unshare", "setns", "bpf", "perf_event_open", "reboot", "init_module",
                 "kexec_load", "acct", "settimeofday", "clock_settime", "iopl", "syslog", "keyctl", "add_key",
                 "io_uring_setup", "io_uring_enter", "io_uring_register", "clone", "clone3", "open_by_handle_at",
                 "kcmp", "mbind", "vhangup", "s390_runtime_instr", "cacheflush"):  # fmt: skip
        assert name not in allowed, name
    # clone: only without namespace flags; clone3: ENOSYS so libc falls back to clone
    assert _rules(p, "clone") == [
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}
    ]  # fmt: skip
    assert _rules(p, "clone3") == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    assert _rules(p, "socket") == [
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 40, "valueTwo": 0, "op": "SCMP_CMP_NE"}]}
    ]
    assert sorted(r["args"][0]["value"] for r in _rules(p, "personality")) == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]
    # the same input gives the same output, and it is JSON
    assert json.loads(json.dumps(p)) == seccomp.profile(list(ocispec.DEFAULT_CAPS), arch="amd64", kernel=KERNEL)


def test_cap_sys_admin_opens_namespaces_and_mounts() -> None:
    p = seccomp.profile([*ocispec.DEFAULT_CAPS, "CAP_SYS_ADMIN"], arch="amd64", kernel=KERNEL)
    allowed = _unconditional(p)
    assert {"clone", "clone3", "unshare", "setns", "mount", "umount2", "sethostname"} <= allowed
    assert not [r for r in _rules(p, "clone") if r.get("args")]  # no flag filter left
    assert not _rules(p, "clone3")[0].get("errnoRet")  # the ENOSYS rule is gone


@pytest.mark.parametrize(
    "cap, calls",
    [
        ("CAP_SYS_PTRACE", {"kcmp", "pidfd_getfd", "process_madvise"}),
        ("CAP_SYS_MODULE", {"init_module", "finit_module", "delete_module"}),
        ("CAP_SYS_TIME", {"settimeofday", "clock_settime", "clock_settime64"}),
        ("CAP_SYS_BOOT", {"reboot"}),
        ("CAP_SYS_RAWIO", {"iopl", "ioperm"}),
        ("CAP_SYS_NICE", {"mbind", "set_mempolicy", "get_mempolicy"}),
        ("CAP_SYS_PACCT", {"acct"}),
        ("CAP_SYSLOG", {"syslog"}),
        ("CAP_BPF", {"bpf"}),
        ("CAP_PERFMON", {"perf_event_open"}),
        ("CAP_SYS_TTY_CONFIG", {"vhangup"}),
        ("CAP_DAC_READ_SEARCH", {"open_by_handle_at"}),
    ],
)
def test_capability_groups(cap: str, calls: set[str]) -> None:
    without = _unconditional(seccomp.profile(ocispec.DEFAULT_CAPS, arch="amd64", kernel=KERNEL))
    with_cap = _unconditional(seccomp.profile([*ocispec.DEFAULT_CAPS, cap], arch="amd64", kernel=KERNEL))
    assert calls <= with_cap and not calls & without


def test_dropping_sys_chroot_drops_chroot() -> None:
    caps = [c for c in ocispec.DEFAULT_CAPS if c != "CAP_SYS_CHROOT"]
    assert "chroot" not in _unconditional(seccomp.profile(caps, arch="amd64", kernel=KERNEL))


def test_arch_and_kernel_conditions() -> None:
    arm = seccomp.profile(ocispec.DEFAULT_CAPS, arch="arm64", kernel=KERNEL)
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "cacheflush" in _unconditional(arm) and "arch_prctl" not in _unconditional(arm)
    s390 = seccomp.profile(ocispec.DEFAULT_CAPS, arch="s390x", kernel=KERNEL)
    assert [r["args"][0]["index"] for r in _rules(s390, "clone")] == [1]  # clone's flags are its 2nd arg there
    old = seccomp.profile(ocispec.DEFAULT_CAPS, arch="amd64", kernel=(4, 4))
    assert "ptrace" not in _unconditional(old)


# ---- users' profiles ----------------------------------------------------------------------


def test_user_profile_conversion() -> None:
    doc = seccomp.parse(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "comment": "no dirs"},
            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_FOWNER"]}},
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}], "includes": {"arches": ["amd64"]}},
            {"names": ["sync"], "action": "SCMP_ACT_LOG", "includes": {"minKernel": "99.0"}},
        ],
    }))  # fmt: skip
    got = seccomp.to_oci(doc, ["CAP_FOWNER"], arch="amd64", kernel=KERNEL)
    assert got == {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 9, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
        ],
    }


@pytest.mark.parametrize(
    "doc, words",
    [
        ({}, "defaultAction is required"),
        ({"defaultAction": "SCMP_ACT_NOTIFY"}, "unknown defaultAction"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "bogus": 1}, "unknown field 'bogus'"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"]}, "not supported"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
          "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}, "'architectures' and 'archMap'"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}, "unknown value"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}]},
         "'name' and 'names'"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ALLOW"}]}, "needs syscall names"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}]},
         "errnoRet is only valid"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW",
          "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]}, "unsigned integer"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW",
          "includes": {"minKernel": "new"}}]}, "minKernel"),
        ([1, 2], "must be a JSON object"),
    ],
)  # fmt: skip
def test_bad_profiles(doc: Any, words: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        seccomp.parse(json.dumps(doc))
    assert words in str(err.value)
    assert str(err.value) == str(err.value).rstrip(".")


def test_not_json() -> None:
    with pytest.raises(InvalidArgument, match="decoding seccomp profile failed"):
        seccomp.parse("{nope")


def test_the_builtin_profile_passes_its_own_validation() -> None:
    assert seccomp.validate(json.loads(json.dumps(seccomp.DEFAULT))) == seccomp.DEFAULT


# ---- the spec -----------------------------------------------------------------------------


def _inp(**kw: Any) -> ocispec.SpecInput:
    return ocispec.SpecInput(args=["true"], env=[], cwd="/", user=ocispec.ProcessUser(), hostname="h", **kw)


def test_spec_seccomp_follows_final_capabilities() -> None:
    # asked for SYS_ADMIN, but the daemon does not hold it: the filter must not open clone's flags
    spec = ocispec.build(_inp(cap_add=("SYS_ADMIN",), host_caps=frozenset(ocispec.DEFAULT_CAPS)))
    assert "CAP_SYS_ADMIN" not in spec["process"]["capabilities"]["bounding"]
    assert any(r.get("args") for r in _rules(spec["linux"]["seccomp"], "clone"))
    spec = ocispec.build(_inp(cap_add=("SYS_ADMIN",)))
    assert not any(r.get("args") for r in _rules(spec["linux"]["seccomp"], "clone"))


def test_spec_unconfined_privileged_custom_and_nnp() -> None:
    assert "seccomp" not in ocispec.build(_inp(seccomp=False))["linux"]
    assert "seccomp" not in ocispec.build(_inp(privileged=True))["linux"]
    custom = seccomp.parse('{"defaultAction": "SCMP_ACT_LOG"}')
    assert ocispec.build(_inp(seccomp_profile=custom))["linux"]["seccomp"] == {"defaultAction": "SCMP_ACT_LOG", "syscalls": []}
    assert ocispec.build(_inp())["process"]["noNewPrivileges"] is False
    assert ocispec.build(_inp(no_new_privileges=True))["process"]["noNewPrivileges"] is True


def test_spec_system_paths() -> None:
    linux = ocispec.build(_inp())["linux"]
    assert linux["maskedPaths"] == list(ocispec.MASKED_PATHS) and linux["readonlyPaths"] == list(ocispec.READONLY_PATHS)
    linux = ocispec.build(_inp(masked_paths=(), readonly_paths=()))["linux"]
    assert "maskedPaths" not in linux and "readonlyPaths" not in linux
    assert ocispec.build(_inp(masked_paths=("/proc/x",)))["linux"]["maskedPaths"] == ["/proc/x"]


@pytest.mark.parametrize(
    "user, want",
    [
        ("", ["noexec", "nosuid", "nodev"]),
        ("size=1m", ["noexec", "nosuid", "nodev", "size=1m"]),
        ("exec,size=1m", ["nosuid", "nodev", "exec", "size=1m"]),
        ("suid,dev,exec", ["suid", "dev", "exec"]),
        ("size=1m,size=2m,mode=1777", ["noexec", "nosuid", "nodev", "size=2m", "mode=1777"]),
        ("nosuid", ["noexec", "nodev", "nosuid"]),
    ],
)
def test_tmpfs_option_merge(user: str, want: list[str]) -> None:
    assert ocispec.tmpfs_options(user.split(",")) == want


def test_spec_tmpfs_mounts() -> None:
    spec = ocispec.build(_inp(
        tmpfs={"/t": "size=1m", "/x": "exec"},
        mounts=(ocispec.BindMount("tmpfs", "/m", False, ("size=1024",), type="tmpfs"),),
    ))  # fmt: skip
    by_dest = {m["destination"]: m["options"] for m in spec["mounts"]}
    assert by_dest["/t"] == ["noexec", "nosuid", "nodev", "size=1m"]
    assert by_dest["/x"] == ["nosuid", "nodev", "exec"]
    assert by_dest["/m"] == ["noexec", "nosuid", "nodev", "size=1024", "rw"]
