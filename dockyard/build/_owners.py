"""The owners COPY and ADD give files: `--chown`'s user and group, and their host ids.

Owns the lookup of named users and groups in the rootfs's own `/etc/passwd` and
`/etc/group` (read by file descriptor in that root, regular files only) and the shift of
the ids the container sees to the host ids a `--userns-remap` daemon writes. Blocking:
called from the worker thread that writes a step's files.
"""

from __future__ import annotations

from dockyard._sys.rootdir import RootDir
from dockyard.build import _files
from dockyard.build.model import BuildError
from dockyard.idmap import IdentityMapping

__all__ = ["host_owner", "resolve_chown"]


def host_owner(idmap: IdentityMapping | None, uid: int, gid: int, chown: str | None) -> tuple[int, int]:
    """The host ids a file the container sees as (uid, gid) is written with."""
    if idmap is None:
        return uid, gid
    try:
        return idmap.to_host(uid, gid)
    except ValueError as err:  # dockerd's words (its builder's parseChownFlag)
        raise BuildError(
            f"unable to convert uid/gid chown string to host mapping: unable to convert uid/gid to host mapping: {err}"
            if chown
            else f"unable to convert uid/gid to host mapping: {err}"
        ) from None


def _id_of(text: str | None, name: str, field: int = 2) -> int | None:
    """The numeric field of `name`'s line in a passwd/group file's text."""
    for line in (text or "").splitlines():
        fields = line.split(":")
        if fields[0] == name and len(fields) > field:
            try:
                return int(fields[field])
            except ValueError:
                return None
    return None


def resolve_chown(root: RootDir, spec: str) -> tuple[int, int]:
    """--chown's user and group, named ones looked up in the rootfs's own /etc files (read
    in the root, regular files only)."""
    user, _, group = spec.partition(":")
    passwd = _files.read_text(root, "/etc/passwd") if not user.isdigit() else None
    if user.isdigit():
        uid = int(user)
    else:
        found = _id_of(passwd, user)
        if found is None:
            raise BuildError(
                f"unable to convert uid/gid chown string to host mapping: can't find uid for user {user}: no such user: {user}"
            )
        uid = found
    if not group:
        gid = uid
        if not user.isdigit():
            gid = _id_of(passwd, user, 3) or gid
    elif group.isdigit():
        gid = int(group)
    else:
        found = _id_of(_files.read_text(root, "/etc/group"), group)
        if found is None:
            raise BuildError(
                f"unable to convert uid/gid chown string to host mapping: can't find gid for group {group}: no such group: {group}"
            )
        gid = found
    return uid, gid
