"""A container's `--security-opt` list (HostConfig.SecurityOpt): parsed, validated, decided.

This module owns the meaning of every security option; `model` calls `parse` at create time
(so a bad option is a 400 before anything is written) and `service` calls it again at start
to fill the spec's input. It decides nothing about the spec itself (`runtime/spec.py` and
`runtime/seccomp.py` do).

Accepted, as dockerd accepts them (`key=value`, or the older `key:value`):

- `seccomp=unconfined`, `seccomp=builtin` / `seccomp=default`, or `seccomp=<profile JSON>`
  (the docker CLI reads the file named on its command line and sends its content);
- `no-new-privileges`, `no-new-privileges=true|false` (overrides the daemon-wide default);
- `systempaths=unconfined`: no masked or read-only /proc and /sys paths (the docker CLI
  turns this option into empty `MaskedPaths`/`ReadonlyPaths` itself; API clients may send it);
- `apparmor=unconfined` and `label=disable` (`disable` alone too): requests for *no* LSM
  confinement, which is what a host without that LSM gives, so they are accepted no-ops;
- `apparmor=<profile>` and `label=user:|role:|type:|level:...` only when the host runs that
  LSM, which this daemon does not drive: they are refused (400) rather than stored and ignored.

Anything else is a 400 naming the option, as dockerd's "invalid --security-opt".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.errdefs import InvalidArgument
from dockyard.runtime import seccomp

__all__ = ["SecurityOptions", "host_lsms", "parse"]

_TRUE = {"1", "t", "true", "yes", "y", "on"}  # Go's strconv.ParseBool, which dockerd uses, is
_FALSE = {"0", "f", "false", "no", "n", "off"}  # stricter; yes/no/on/off are extra leniency


@dataclass(frozen=True)
class SecurityOptions:
    # None: the daemon's default (`--no-new-privileges` / daemon.json)
    no_new_privileges: bool | None = None
    # "builtin", "unconfined", or "custom" with `seccomp_profile` set (Docker's format)
    seccomp: str = "builtin"
    seccomp_profile: dict[str, Any] | None = None
    systempaths_unconfined: bool = False


def host_lsms() -> frozenset[str]:
    """The Linux security modules this kernel runs (empty when securityfs is not mounted)."""
    try:
        return frozenset(x for x in Path("/sys/kernel/security/lsm").read_text().strip().split(",") if x)
    except OSError:
        return frozenset()


def _invalid(opt: str) -> InvalidArgument:
    return InvalidArgument(f'invalid --security-opt: "{opt}"')


def parse(opts: Iterable[str] | None, lsms: Callable[[], frozenset[str]] = host_lsms) -> SecurityOptions:
    nnp: bool | None = None
    mode, custom, systempaths = "builtin", None, False
    for opt in opts or ():
        if not isinstance(opt, str):
            raise InvalidArgument(f'invalid --security-opt: "{opt}" is not a string')
        if opt == "no-new-privileges":
            nnp = True
            continue
        if opt == "disable":  # dockerd's shorthand for label=disable
            continue
        sep = "=" if "=" in opt else ":"
        key, found, value = opt.partition(sep)
        if not found:
            raise _invalid(opt)
        if key == "no-new-privileges":
            if value.lower() in _TRUE:
                nnp = True
            elif value.lower() in _FALSE:
                nnp = False
            else:
                raise _invalid(opt)
        elif key == "seccomp":
            if value == "unconfined":
                mode, custom = "unconfined", None
            elif value in ("builtin", "default"):
                mode, custom = "builtin", None
            elif value.lstrip().startswith("{"):
                mode, custom = "custom", seccomp.parse(value)
            else:
                # a path: the docker CLI reads profile files itself, the daemon never opens one
                raise InvalidArgument(
                    "invalid --security-opt: seccomp expects 'unconfined', 'builtin' or a profile's "
                    f"JSON content, got {value!r}"
                )
        elif key == "systempaths":
            if value != "unconfined":
                raise _invalid(opt)
            systempaths = True
        elif key == "apparmor":
            if value != "unconfined" and "apparmor" not in lsms():
                raise InvalidArgument(
                    f'invalid --security-opt: "{opt}": AppArmor is not enabled on this host; '
                    'only "apparmor=unconfined" is accepted'
                )
            if value != "unconfined":
                raise InvalidArgument(
                    f'invalid --security-opt: "{opt}": AppArmor profiles are not supported by this daemon'
                )
        elif key == "label":
            if value == "disable":
                continue
            kind = value.split(":", 1)[0]
            if kind not in ("user", "role", "type", "level", "filetype", "nested"):
                raise _invalid(opt)
            if "selinux" not in lsms():
                raise InvalidArgument(
                    f'invalid --security-opt: "{opt}": SELinux is not enabled on this host; '
                    'only "label=disable" is accepted'
                )
            raise InvalidArgument(
                f'invalid --security-opt: "{opt}": SELinux labels are not supported by this daemon'
            )
        else:
            raise _invalid(opt)
    return SecurityOptions(nnp, mode, custom, systempaths)
