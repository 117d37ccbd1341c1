"""Files Docker provides in every container (/etc/hostname, /etc/hosts, /etc/resolv.conf),
resolution of the `User` field against the container's own /etc/passwd and /etc/group, and
the working directory made at start.

The image's files are untrusted: they are read and made only through `_sys.rootdir.RootDir`
(resolved in the rootfs, never on the host), a passwd or group file must be a regular file
under `_DB_LIMIT` (a FIFO there once hung the whole daemon), and every function here blocks,
so callers run them in a worker thread, never on the event loop.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dockyard._sys.rootdir import FileTooLarge, NotRegularFile, RootDir
from dockyard.errdefs import InvalidArgument
from dockyard.runtime.spec import ProcessUser

log = logging.getLogger(__name__)

_DB_LIMIT = 8 << 20  # a passwd or group file beyond this is not one we parse

_HOSTS_BASE = (
    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::\tip6-localnet\nff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
)


def hosts_file(extra_hosts: list[str], own_ip: str = "", hostname: str = "") -> str:
    text = _HOSTS_BASE
    for entry in extra_hosts:
        # "name:ip" on the wire (the ip may be IPv6, so split at the first colon); "name=ip" too
        name, _, ip = entry.partition("=") if "=" in entry.split(":", 1)[0] else entry.partition(":")
        text += f"{ip.strip('[]')}\t{name}\n"
    if own_ip and hostname:
        text += f"{own_ip}\t{hostname}\n"
    return text


def resolv_conf(host_resolv: Path = Path("/etc/resolv.conf"), dns: list[str] | None = None,
                search: list[str] | None = None, options: list[str] | None = None) -> str:
    """The host's resolv.conf minus loopback nameservers (unreachable from a container)."""
    lines: list[str] = []
    try:
        text = host_resolv.read_text()
    except OSError:
        text = ""
    servers = list(dns or [])
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if parts[0] == "nameserver":
            if not dns and len(parts) > 1 and not parts[1].startswith("127.") and parts[1] != "::1":
                servers.append(parts[1])
        elif (parts[0] in ("search", "domain") and search is None) or (parts[0] == "options" and options is None):
            lines.append(line)
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    if not servers:
        servers = ["8.8.8.8", "8.8.4.4"]  # Docker's fallback when the host has none usable
    return "".join(f"nameserver {s}\n" for s in servers) + "".join(f"{ln}\n" for ln in lines)


def write_container_files(cdir: Path, record: dict[str, Any], default_dns: list[str] | None = None) -> None:
    """`default_dns`: the daemon's `dns` setting, used when the container names no `--dns`."""
    cfg, hc = record["Config"], record["HostConfig"]
    hostname = cfg.get("Hostname") or ""
    if hc.get("NetworkMode") == "host":
        import socket

        hostname = hostname or socket.gethostname()
        (cdir / "hosts").write_text(Path("/etc/hosts").read_text() if Path("/etc/hosts").exists() else _HOSTS_BASE)
        (cdir / "resolv.conf").write_text(Path("/etc/resolv.conf").read_text() if Path("/etc/resolv.conf").exists() else "")
    else:
        (cdir / "hosts").write_text(hosts_file(hc.get("ExtraHosts") or []))
        (cdir / "resolv.conf").write_text(
            resolv_conf(dns=hc.get("Dns") or default_dns or None, search=hc.get("DnsSearch") or None, options=hc.get("DnsOptions") or None)
        )
    (cdir / "hostname").write_text(hostname + "\n")


class _Db:
    """One colon-separated database of the image (/etc/passwd, /etc/group): its entries, or
    why it could not be read (raised only when a name has to be looked up in it)."""

    def __init__(self, root: RootDir, path: str) -> None:
        self.path = path
        self.problem = ""
        self.not_regular = False
        self._entries: list[list[str]] = []
        try:
            text = root.read_regular(path, _DB_LIMIT).decode("utf-8", "replace")
        except (FileNotFoundError, NotADirectoryError):
            return  # no such file: numeric ids still work, as in Docker
        except NotRegularFile:
            self.problem = f"{path} is not a regular file"
            self.not_regular = True
        except FileTooLarge:
            self.problem = f"{path} is larger than {_DB_LIMIT} bytes"
        except OSError as err:
            self.problem = f"cannot read {path}: {err.strerror or err}"
        else:
            self._entries = [ln.split(":") for ln in text.splitlines() if ln and not ln.startswith("#")]
        if self.problem:
            log.warning("image file ignored: %s", self.problem)

    def entries(self, need: str) -> list[list[str]]:
        """The entries, for looking up `need` (a message fragment: "user app")."""
        if self.problem:
            raise InvalidArgument(f"unable to find {need}: {self.problem}")
        return self._entries


def resolve_user(rootfs: Path, user: str, group_add: Sequence[str] = ()) -> ProcessUser:
    """`User` is uid, name, uid:gid, name:group (any mix); names come from the rootfs, and so
    do the names among `HostConfig.GroupAdd` (ids or names: supplementary groups).
    Blocks (reads the image's files): run it in a worker thread."""
    with RootDir(rootfs) as root:
        passwd = _Db(root, "/etc/passwd")
        groups = _Db(root, "/etc/group")
    for db in (passwd, groups):
        # runc's init opens both files whatever the user (for HOME and the groups), and a
        # FIFO there blocks it for good: refuse now, with the reason, instead of hanging
        if db.not_regular:
            raise InvalidArgument(f"unable to find user {user or '0'}: {db.problem}")
    try:
        found = _lookup(user or "0", passwd, groups)
        extra = [*found.additional_gids]
        for g in group_add:
            gid = int(g) if str(g).isdigit() else _group_id(str(g), groups)
            if gid not in extra:
                extra.append(gid)
        return ProcessUser(found.uid, found.gid, tuple(extra))
    except ValueError:  # a malformed id field in an entry that matched
        raise InvalidArgument(f"unable to find user {user}: malformed entry in passwd or group file") from None


def _lookup(user: str, passwd_db: _Db, groups_db: _Db) -> ProcessUser:
    u, _, g = user.partition(":")
    uid = gid = None
    name = None
    if u.isdigit():
        uid = int(u)
        # a numeric user needs no file: an unreadable one only loses the name and its groups
        for ent in [] if passwd_db.problem else passwd_db.entries(""):
            if len(ent) > 3 and ent[2] == u:
                name, gid = ent[0], int(ent[3])
                break
    else:
        for ent in passwd_db.entries(f"user {u}"):
            if len(ent) > 3 and ent[0] == u:
                name, uid, gid = ent[0], int(ent[2]), int(ent[3])
                break
        if uid is None:
            raise InvalidArgument(f"unable to find user {u}: no matching entries in passwd file")
    if g:
        if g.isdigit():
            gid = int(g)
        else:
            found = [int(ent[2]) for ent in groups_db.entries(f"group {g}") if len(ent) > 2 and ent[0] == g]
            if not found:
                raise InvalidArgument(f"unable to find group {g}: no matching entries in group file")
            gid = found[0]
    if gid is None:
        gid = 0
    extra: list[int] = []
    if name and not groups_db.problem:
        for ent in groups_db.entries(""):
            if len(ent) > 3 and name in ent[3].split(",") and int(ent[2]) != gid:
                extra.append(int(ent[2]))
    return ProcessUser(uid, gid, tuple(extra))


def _group_id(name: str, groups_db: _Db) -> int:
    found = [int(ent[2]) for ent in groups_db.entries(f"group {name}") if len(ent) > 2 and ent[0] == name]
    if not found:
        raise InvalidArgument(f"unable to find group {name}: no matching entries in group file")
    return found[0]


def make_workdir(rootfs: Path, path: str, owner: tuple[int, int] | None = None) -> None:
    """Creates the container's working directory like Docker does at start (`mkdir -p`,
    0755), in the root by fd: an image's `/data -> /` must not lead to the host's root.
    `owner`: a remapped daemon's root pair, given to every directory made here (dockerd's
    MkdirAllAndChownNew); existing ones keep theirs."""
    clean = posixpath.normpath("/" + path)  # lexically clean first, like Docker
    try:
        with RootDir(rootfs) as root:
            try:
                os.close(root.open_dir(clean))
                return
            except FileNotFoundError:
                pass
            # every directory made here is the remapped root's, not only the last one (as
            # dockerd's MkdirAllAndChownNew): a container's root must own the parents too
            os.close(root.open_dir(clean, create=True, mode=0o755, owner=owner))
    except NotADirectoryError:
        raise InvalidArgument(f"cannot create working directory {path}: not a directory") from None
    except OSError as err:
        if err.errno != errno.ELOOP:
            raise
        raise InvalidArgument(f"cannot create working directory {path}: too many levels of symbolic links") from None
