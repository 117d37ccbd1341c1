"""User-namespace remapping (`--userns-remap`): which host ids a remapped daemon's containers get.

Owns the parsing of `/etc/subuid`-style files, the resolution of the `userns-remap` setting
(`default`, `user`, `user:group`, `uid`, `uid:gid`) to a user name, the mapping builder, and
the translation of ids in both directions. Everything but `resolve_remap` and
`ensure_default_user` is pure; those two read passwd/group (and for `default` may run
`useradd`/`usermod`, as dockerd does). It decides nothing about containers: the daemon
resolves one `IdentityMapping` at startup and hands it to the services that create files.

Rules follow moby's daemon (`parseRemappedRoot`, `setupRemappedRoot`) and moby/sys/user
(`LoadIdentityMapping`): the ranges of a user are the lines of /etc/subuid *and*
/etc/subgid whose first field is the user's name or numeric uid, in file order, stacked
from container id 0 upwards. Root remapped to itself means no remapping.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_REMAP_USER",
    "IDMap",
    "IdentityMapping",
    "RemapError",
    "SubID",
    "build_mapping",
    "ensure_default_user",
    "load_mapping",
    "next_range_start",
    "parse_subid",
    "resolve_remap",
    "setup_remapped_root",
]

log = logging.getLogger(__name__)

DEFAULT_REMAP_USER = "dockremap"
_DEFAULT_RANGE_START = 100000
_DEFAULT_RANGE_LEN = 65536


class RemapError(Exception):
    """The daemon cannot start with this `userns-remap` setting (dockerd's wording)."""


@dataclass(frozen=True)
class SubID:
    """One line of /etc/subuid or /etc/subgid: `name:start:count`."""

    name: str
    start: int
    count: int


@dataclass(frozen=True)
class IDMap:
    """One OCI `uidMappings`/`gidMappings` entry: container ids [id, id+size) are host [host_id, ...)."""

    container_id: int
    host_id: int
    size: int

    def oci(self) -> dict[str, int]:
        return {"containerID": self.container_id, "hostID": self.host_id, "size": self.size}


def _to_host(cid: int, maps: tuple[IDMap, ...]) -> int | None:
    for m in maps:
        if m.container_id <= cid < m.container_id + m.size:
            return m.host_id + cid - m.container_id
    return None


def _to_container(hid: int, maps: tuple[IDMap, ...]) -> int | None:
    for m in maps:
        if m.host_id <= hid < m.host_id + m.size:
            return m.container_id + hid - m.host_id
    return None


@dataclass(frozen=True)
class IdentityMapping:
    """A remapped daemon's uid and gid maps (never empty: no remapping is `None`)."""

    uids: tuple[IDMap, ...]
    gids: tuple[IDMap, ...]
    user: str = ""  # "name:group", as dockerd rewrites its RemappedRoot setting

    @property
    def root_pair(self) -> tuple[int, int]:
        """The host uid and gid of the containers' root."""
        return self.to_host(0, 0)

    def to_host(self, uid: int, gid: int) -> tuple[int, int]:
        """Container ids to host ids; ValueError for an id outside the ranges (dockerd refuses
        to unpack such a layer too)."""
        hu, hg = _to_host(uid, self.uids), _to_host(gid, self.gids)
        if hu is None:
            raise ValueError(f"container ID {uid} cannot be mapped to a host ID")
        if hg is None:
            raise ValueError(f"container ID {gid} cannot be mapped to a host ID")
        return hu, hg

    def to_container(self, uid: int, gid: int) -> tuple[int, int]:
        """Host ids to container ids; an id outside the ranges becomes the overflow id 65534,
        which is what the container sees for it too."""
        cu, cg = _to_container(uid, self.uids), _to_container(gid, self.gids)
        return (65534 if cu is None else cu), (65534 if cg is None else cg)

    def oci_uid_mappings(self) -> list[dict[str, int]]:
        return [m.oci() for m in self.uids]

    def oci_gid_mappings(self) -> list[dict[str, int]]:
        return [m.oci() for m in self.gids]


def _field_int(text: str) -> int:
    # moby's parseLine: a field that is not a number reads as 0
    try:
        return int(text)
    except ValueError:
        return 0


def parse_subid(text: str) -> list[SubID]:
    """Every non-empty line of a subuid/subgid file, in order (man 5 subuid)."""
    out: list[SubID] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        parts = line.split(":")
        parts += [""] * (3 - len(parts))
        out.append(SubID(parts[0], _field_int(parts[1]), _field_int(parts[2])))
    return out


def build_mapping(entries: list[SubID], user: str, uid: int) -> tuple[IDMap, ...]:
    """The user's ranges (lines naming the user or its uid), stacked from container id 0."""
    maps: list[IDMap] = []
    next_id = 0
    for e in entries:
        if e.name in (user, str(uid)):
            maps.append(IDMap(next_id, e.start, e.count))
            next_id += e.count
    if not maps:
        raise RemapError(f'no subuid ranges found for user "{user}"')
    return tuple(maps)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as err:
        raise RemapError(
            f"Can't create ID mappings: open {path}: {err.strerror.lower() if err.strerror else err}"
        ) from None


def load_mapping(
    user: str, group: str, *, subuid: Path = Path("/etc/subuid"), subgid: Path = Path("/etc/subgid")
) -> IdentityMapping:
    """moby's LoadIdentityMapping: both files are searched for the *user's* name or uid."""
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        raise RemapError(
            f"Can't create ID mappings: could not get user for username {user}: no such user"
        ) from None
    try:
        uids = build_mapping(parse_subid(_read(subuid)), user, uid)
        gids = build_mapping(parse_subid(_read(subgid)), user, uid)
    except RemapError as err:
        msg = str(err)
        raise RemapError(msg if msg.startswith("Can't") else f"Can't create ID mappings: {msg}") from None
    return IdentityMapping(uids, gids, f"{user}:{group}")


def _int32(text: str) -> int | None:
    try:
        n = int(text, 10)
    except ValueError:
        return None
    return n if -(2**31) <= n < 2**31 else None


def resolve_remap(setting: str) -> tuple[str, str]:
    """moby's parseRemappedRoot: the setting to (user name, group name), with its errors."""
    parts = setting.split(":")
    if len(parts) > 2:
        raise RemapError(f'Invalid user/group specification in --userns-remap: "{setting}"')
    user = group = ""
    num = _int32(parts[0])
    if num is not None:
        try:
            user = pwd.getpwuid(num).pw_name
        except KeyError:
            raise RemapError(
                f"Uid {num} has no entry in /etc/passwd: no matching entries in passwd file"
            ) from None
        if len(parts) == 1:
            try:
                group = grp.getgrgid(num).gr_name
            except KeyError:
                raise RemapError(
                    f"Gid {num} has no entry in /etc/group: no matching entries in group file"
                ) from None
    else:
        name = DEFAULT_REMAP_USER if parts[0] == "default" else parts[0]
        try:
            user = pwd.getpwnam(name).pw_name
        except KeyError:
            if parts[0] != "default":
                raise RemapError(
                    f'Error during uid lookup for "{name}": no matching entries in passwd file'
                ) from None
            ensure_default_user()
            return DEFAULT_REMAP_USER, DEFAULT_REMAP_USER
        if len(parts) == 1:
            try:
                group = grp.getgrnam(name).gr_name
            except KeyError:
                raise RemapError(
                    f'Error during gid lookup for "{name}": no matching entries in group file'
                ) from None
    if len(parts) == 2:
        gnum = _int32(parts[1])
        if gnum is not None:
            try:
                group = grp.getgrgid(gnum).gr_name
            except KeyError:
                raise RemapError(
                    f"Gid {gnum} has no entry in /etc/passwd: no matching entries in group file"
                ) from None
        else:
            try:
                grp.getgrnam(parts[1])
            except KeyError:
                raise RemapError(
                    f'Error during groupname lookup for "{parts[1]}": no matching entries in group file'
                ) from None
            group = parts[1]
    return user, group


def next_range_start(taken: list[SubID]) -> int:
    """moby's findNextRangeStart: the first start at or after 100000 clear of every range."""
    start = _DEFAULT_RANGE_START
    for r in sorted(taken, key=lambda s: s.start):
        low, high = start, start + _DEFAULT_RANGE_LEN
        if r.start <= low <= r.start + r.count or r.start <= high <= r.start + r.count:
            start = r.start + r.count
    return start


def _run(argv: list[str]) -> None:
    # Daemon startup, before the event loop: a short synchronous child is fine here.
    res = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False
    )
    if res.returncode != 0:
        raise RemapError(
            f'Error during "{DEFAULT_REMAP_USER}" user creation: {argv[0]} failed: {res.stderr.strip()}'
        )


def ensure_default_user(subuid: Path = Path("/etc/subuid"), subgid: Path = Path("/etc/subgid")) -> None:
    """dockerd's AddNamespaceRangesUser: a system user/group `dockremap` and, where the
    distribution's tools made none, one 65536-id range in each of /etc/subuid and /etc/subgid."""
    try:
        pwd.getpwnam(DEFAULT_REMAP_USER)
    except KeyError:
        if shutil.which("adduser"):
            _run(["adduser", "--system", "--shell", "/bin/false", "--no-create-home", "--disabled-login",
                  "--disabled-password", "--group", DEFAULT_REMAP_USER])  # fmt: skip
        elif shutil.which("useradd"):
            _run(["useradd", "-r", "-s", "/bin/false", DEFAULT_REMAP_USER])
        else:
            raise RemapError(
                f'Error during "{DEFAULT_REMAP_USER}" user creation: cannot add user; no useradd/adduser binary found'
            ) from None
    uid = pwd.getpwnam(DEFAULT_REMAP_USER).pw_uid
    for path, flag in ((subuid, "-v"), (subgid, "-w")):
        entries = parse_subid(path.read_text()) if path.exists() else []
        if any(e.name in (DEFAULT_REMAP_USER, str(uid)) for e in entries):
            continue
        start = next_range_start(entries)
        _run(["usermod", flag, f"{start}-{start + _DEFAULT_RANGE_LEN - 1}", DEFAULT_REMAP_USER])
        log.info(
            "added subordinate range %d-%d to %s in %s",
            start,
            start + _DEFAULT_RANGE_LEN - 1,
            DEFAULT_REMAP_USER,
            path,
        )


def _can_access(path: Path, uid: int, gid: int) -> bool:
    """moby's canAccess: may (uid, gid) traverse the directory? (rudimentary, as theirs)"""
    try:
        st = path.stat()
    except OSError:
        return False
    mode = st.st_mode & 0o777
    return bool(mode & 0o001 or (st.st_uid == uid and mode & 0o100) or (st.st_gid == gid and mode & 0o010))


def setup_remapped_root(data_root: Path, mapping: IdentityMapping) -> Path:
    """dockerd's setupDaemonRoot for a remapped daemon: the data root becomes 0711 and the
    daemon's state moves to `<data-root>/<uid>.<gid>` (0710, group = the remapped root's
    gid), so a container's root can reach its rootfs, bind sources and volumes but not read
    any listing. Refuses, as dockerd does, when a parent directory would block that."""
    uid, gid = mapping.root_pair
    data_root.mkdir(parents=True, exist_ok=True, mode=0o711)
    data_root.chmod(0o711)
    sub = data_root / f"{uid}.{gid}"
    sub.mkdir(exist_ok=True, mode=0o710)

    os.chown(sub, os.getuid(), gid)
    sub.chmod(0o710)
    for parent in sub.resolve().parents:
        if parent == Path("/"):
            break
        if not _can_access(parent, uid, gid):
            raise RemapError(
                f"a subdirectory in your graphroot path ({sub}) restricts access to the remapped root uid/gid; "
                "please fix by allowing 'o+x' permissions on existing directories"
            )
    return sub
