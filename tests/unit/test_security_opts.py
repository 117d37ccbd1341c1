"""`--security-opt` parsing (containers/security.py): what is honoured, what is refused with
which message, and the LSM checks against a given host. Pure: the LSM list is passed in."""

from __future__ import annotations

import pytest

from dockyard.containers import model, security
from dockyard.errdefs import InvalidArgument


def _none() -> frozenset[str]:
    return frozenset()


def _parse(*opts: str) -> security.SecurityOptions:
    return security.parse(list(opts), lsms=_none)


def test_defaults() -> None:
    assert _parse() == security.SecurityOptions(None, "builtin", None, False)
    assert security.parse(None, lsms=_none) == security.SecurityOptions()


@pytest.mark.parametrize(
    "opt, nnp",
    [("no-new-privileges", True), ("no-new-privileges=true", True), ("no-new-privileges:true", True),
     ("no-new-privileges=false", False), ("no-new-privileges=0", False), ("no-new-privileges=1", True)],
)  # fmt: skip
def test_no_new_privileges(opt: str, nnp: bool) -> None:
    assert _parse(opt).no_new_privileges is nnp


def test_later_options_win() -> None:
    assert _parse("no-new-privileges", "no-new-privileges=false").no_new_privileges is False
    assert _parse("seccomp=unconfined", "seccomp=builtin").seccomp == "builtin"


def test_seccomp_forms() -> None:
    assert _parse("seccomp=unconfined").seccomp == "unconfined"
    assert _parse("seccomp:unconfined").seccomp == "unconfined"
    assert _parse("seccomp=default").seccomp == "builtin"
    opts = _parse('seccomp={"defaultAction":"SCMP_ACT_ALLOW"}')
    assert opts.seccomp == "custom" and opts.seccomp_profile == {"defaultAction": "SCMP_ACT_ALLOW"}


def test_harmless_no_ops_and_systempaths() -> None:
    assert _parse("apparmor=unconfined", "label=disable", "label:disable", "disable") == security.SecurityOptions()
    assert _parse("systempaths=unconfined").systempaths_unconfined


@pytest.mark.parametrize(
    "opt, words",
    [
        ("bogus", 'invalid --security-opt: "bogus"'),
        ("foo=bar", 'invalid --security-opt: "foo=bar"'),
        ("no-new-privileges=perhaps", 'invalid --security-opt: "no-new-privileges=perhaps"'),
        ("seccomp=./profile.json", "seccomp expects"),
        ("seccomp={", "decoding seccomp profile failed"),
        ("apparmor=docker-default", "AppArmor is not enabled on this host"),
        ("label=type:svirt_t", "SELinux is not enabled on this host"),
        ("label=whatever", 'invalid --security-opt: "label=whatever"'),
        ("systempaths=strict", 'invalid --security-opt: "systempaths=strict"'),
    ],
)
def test_refused(opt: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        _parse(opt)
    assert words in str(err.value)


def test_lsm_present_but_not_driven_is_still_refused() -> None:
    with pytest.raises(InvalidArgument, match="AppArmor profiles are not supported"):
        security.parse(["apparmor=docker-default"], lsms=lambda: frozenset({"apparmor"}))
    with pytest.raises(InvalidArgument, match="SELinux labels are not supported"):
        security.parse(["label=level:s0"], lsms=lambda: frozenset({"selinux"}))


def test_create_validation_refuses_before_anything_is_built() -> None:
    with pytest.raises(InvalidArgument, match="invalid --security-opt"):
        model._validate_host_config({"SecurityOpt": ["nope=1"]})
    with pytest.raises(InvalidArgument, match="invalid MaskedPaths"):
        model._validate_host_config({"MaskedPaths": ["relative"]})
    model._validate_host_config({"SecurityOpt": ["no-new-privileges"], "MaskedPaths": [], "ReadonlyPaths": []})
