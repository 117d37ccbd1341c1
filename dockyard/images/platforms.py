"""Platform specifiers (`os[/arch[/variant]]`) as the API's `platform` parameters carry them.

Owns parsing and normalising them the way dockerd does (containerd's `platforms.Parse`): a
single component may be an OS or an architecture, aliases such as `x86_64` and `aarch64`
are normalised, and anything else is refused with containerd's words, which is what clients
(docker-py's own tests among them) look for in the error.
"""

from __future__ import annotations

from dataclasses import dataclass

from dockyard import errdefs

__all__ = ["Platform", "parse"]

_OSES = frozenset(
    ["aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js", "linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows", "zos"]
)
_ARCHES = frozenset(
    ["386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "loong64", "mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc", "ppc64", "ppc64le", "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm"]
)
# containerd's normalizeArch: alias -> (arch, variant)
_ARCH_ALIASES = {
    "i386": ("386", ""),
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""


def _arch(arch: str, variant: str) -> tuple[str, str]:
    arch = arch.lower()
    if arch in _ARCH_ALIASES:
        a, v = _ARCH_ALIASES[arch]
        return a, variant or v
    return arch, variant


def parse(spec: str) -> Platform:
    """`linux`, `amd64`, `linux/arm64`, `linux/arm/v7`, ... -> Platform; InvalidArgument
    otherwise. A lone OS gets this host's architecture (amd64), a lone architecture linux."""
    parts = spec.split("/")
    if "*" in spec or any(not p for p in parts) or len(parts) > 3:
        raise errdefs.InvalidArgument(f'"{spec}": cannot parse platform specifier: invalid argument')
    if len(parts) == 1:
        one = parts[0].lower()
        if one == "macos":
            one = "darwin"
        if one in _OSES:
            return Platform(one, "amd64")
        arch, variant = _arch(one, "")
        if arch in _ARCHES:
            return Platform("linux", arch, variant)
        raise errdefs.InvalidArgument(f'"{spec}": unknown operating system or architecture: invalid argument')
    arch, variant = _arch(parts[1], parts[2] if len(parts) == 3 else "")
    return Platform(parts[0].lower(), arch, variant)
