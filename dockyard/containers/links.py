"""Legacy container links (`--link name:alias`): parsing, and what a link gives the container
that holds it, as Docker's default bridge does.

A link is resolved to the linked (child) container's id at create and stored privately in
`Dockyard.Links`; inspect shows Docker's `HostConfig.Links` form `/child:/parent/alias`. At
start each link adds the child's `<ALIAS>_NAME`, `<ALIAS>_PORT*` and `<ALIAS>_ENV_*`
variables (Docker's names, from moby's `links` package behaviour) and a hosts entry for the
alias, the child's hostname and name. Pure functions: the container service does the I/O.
"""

from __future__ import annotations

from typing import Any

from dockyard.errdefs import InvalidArgument


def parse(spec: str) -> tuple[str, str]:
    """`name:alias` or `name` -> (name, alias), names without their leading slash."""
    name, _, alias = spec.partition(":")
    name, alias = name.strip().lstrip("/"), (alias or name).strip().lstrip("/")
    if not name or not alias:
        raise InvalidArgument(f"invalid link format: {spec!r}")
    # an alias given as /parent/alias (inspect's form, sent back by some clients) keeps its last part
    return name, alias.rsplit("/", 1)[-1]


def _env_alias(alias: str) -> str:
    return alias.upper().replace("-", "_")


def _ports(child: dict[str, Any]) -> list[tuple[int, str]]:
    out = []
    for key in child["Config"].get("ExposedPorts") or {}:
        port, _, proto = str(key).partition("/")
        if port.isdigit():
            out.append((int(port), proto or "tcp"))
    return sorted(out)


def environment(alias: str, parent_name: str, child: dict[str, Any], ip: str) -> list[str]:
    """The variables one link gives its parent (Docker's legacy link environment)."""
    a = _env_alias(alias)
    env = [f"{a}_NAME={parent_name}/{alias}"]
    ports = _ports(child)
    if ports:
        port, proto = ports[0]
        env.append(f"{a}_PORT={proto}://{ip}:{port}")
    for port, proto in ports:
        prefix = f"{a}_PORT_{port}_{proto.upper()}"
        env += [f"{prefix}={proto}://{ip}:{port}", f"{prefix}_ADDR={ip}", f"{prefix}_PORT={port}",
                f"{prefix}_PROTO={proto}"]  # fmt: skip
    for item in child["Config"].get("Env") or []:
        key, sep, value = str(item).partition("=")
        if sep and key not in ("HOME", "PATH"):  # set by the image or build, not the child's own
            env.append(f"{a}_ENV_{key}={value}")
    return env


def hosts_line(alias: str, child: dict[str, Any], ip: str) -> str:
    """`<ip>\\t<alias> <hostname> [<name>]`: the name is left out when it is the alias."""
    names = [alias, child["Config"].get("Hostname") or ""]
    if child["Name"].lstrip("/") != alias:
        names.append(child["Name"].lstrip("/"))
    return f"{ip}\t{' '.join(n for n in names if n)}\n"


def merge_env(link_env: list[str], env: list[str]) -> list[str]:
    """The container's own variables win over a link's of the same name."""
    own = {item.partition("=")[0] for item in env}
    return [item for item in link_env if item.partition("=")[0] not in own] + env
