"""Files Docker provides in every container (/etc/hostname, /etc/hosts, /etc/resolv.conf)
and resolution of the `User` field against the container's own /etc/passwd and /etc/group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dockyard._sys.fs import RootPathError, resolve_in_root
from dockyard.errdefs import InvalidArgument
from dockyard.runtime.spec import ProcessUser

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


def _read_db(path: Path) -> list[list[str]]:
    try:
        return [line.split(":") for line in path.read_text().splitlines() if line and not line.startswith("#")]
    except OSError:
        return []


def resolve_user(rootfs: Path, user: str) -> ProcessUser:
    """`User` is uid, name, uid:gid, name:group (any mix); names come from the rootfs."""
    if not user:
        user = "0"
    u, _, g = user.partition(":")
    passwd = _read_db(rootfs / "etc" / "passwd")
    groups = _read_db(rootfs / "etc" / "group")
    uid = gid = None
    name = None
    if u.isdigit():
        uid = int(u)
        for ent in passwd:
            if len(ent) > 3 and ent[2] == u:
                name, gid = ent[0], int(ent[3])
                break
    else:
        for ent in passwd:
            if len(ent) > 3 and ent[0] == u:
                name, uid, gid = ent[0], int(ent[2]), int(ent[3])
                break
        if uid is None:
            raise InvalidArgument(f"unable to find user {u}: no matching entries in passwd file")
    if g:
        if g.isdigit():
            gid = int(g)
        else:
            found = [int(ent[2]) for ent in groups if len(ent) > 2 and ent[0] == g]
            if not found:
                raise InvalidArgument(f"unable to find group {g}: no matching entries in group file")
            gid = found[0]
    if gid is None:
        gid = 0
    extra: list[int] = []
    if name:
        for ent in groups:
            if len(ent) > 3 and name in ent[3].split(",") and int(ent[2]) != gid:
                extra.append(int(ent[2]))
    return ProcessUser(uid, gid, tuple(extra))


def make_workdir(rootfs: Path, path: str, owner: tuple[int, int] | None = None) -> None:
    """Creates the container's working directory like Docker does at start, evaluating
    symlinks inside the root (an image's `/data -> /` must not lead to the host's root).
    `owner`: a remapped daemon's root pair, given to the directory when it is made here
    (dockerd's MkdirAllAndChownNew)."""
    import os
    import posixpath

    clean = posixpath.normpath("/" + path)
    try:  # lexically clean first, like Docker
        existed = os.path.isdir(resolve_in_root(rootfs, clean))
        target = resolve_in_root(rootfs, clean, mkdir=True)
    except RootPathError as err:
        raise InvalidArgument(f"cannot create working directory {path}: {err}") from None
    if owner is not None and not existed:
        os.lchown(target, *owner)
