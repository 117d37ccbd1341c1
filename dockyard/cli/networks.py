"""`network create/ls/inspect/rm/prune/connect/disconnect`, with docker's flags and output.

Talks to the daemon only through `dockyard.client`; the `--format` fields are those of the
docker CLI's network context (ID, Name, Driver, Scope, IPv6, Internal, Labels, CreatedAt).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import click

from dockyard import errdefs
from dockyard.cli import formatting as fmt
from dockyard.cli._common import StatusError, client, error_text, for_each, parse_filters, parse_kv
from dockyard.cli.contexts import RowCtx
from dockyard.cli.formatting import Template

LS_DEFAULT = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"


class NetworkCtx(RowCtx):
    FIELDS: tuple[str, ...] = ("CreatedAt", "Driver", "ID", "IPv6", "Internal", "Labels", "Name", "Scope")
    HEADERS: ClassVar[dict[str, str]] = {
        "ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv6": "IPV6",
        "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT",
    }  # fmt: skip

    def __init__(self, n: dict[str, Any], trunc: bool = True) -> None:
        self.n = n
        self.ID = n.get("Id", "")[:12] if trunc else n.get("Id", "")
        self.Name = n.get("Name", "")
        self.Driver = n.get("Driver", "")
        self.Scope = n.get("Scope", "")
        self.IPv6 = str(bool(n.get("EnableIPv6"))).lower()
        self.Internal = str(bool(n.get("Internal"))).lower()
        self.Labels = ",".join(f"{k}={v}" for k, v in sorted((n.get("Labels") or {}).items()))
        self.CreatedAt = n.get("Created", "")

    def Label(self, name: str) -> str:
        return str((self.n.get("Labels") or {}).get(name, ""))


@click.group("network")
def network_group() -> None:
    """Manage networks"""


@network_group.command("create")
@click.option("-d", "--driver", default="bridge", help="Driver to manage the Network")
@click.option("--subnet", multiple=True, help="Subnet in CIDR format that represents a network segment")
@click.option("--ip-range", multiple=True, help="Allocate container ip from a sub-range")
@click.option("--gateway", multiple=True, help="IPv4 or IPv6 Gateway for the master subnet")
@click.option("--aux-address", multiple=True, help="Auxiliary IPv4 or IPv6 addresses used by Network driver")
@click.option("--internal", is_flag=True, help="Restrict external access to the network")
@click.option("--attachable", is_flag=True, help="Enable manual container attachment")
@click.option("--ipv6", is_flag=True, help="Enable or disable IPv6 networking")
@click.option("--label", multiple=True, help="Set metadata on a network")
@click.option("-o", "--opt", multiple=True, help="Set driver specific options")
@click.option("--ipam-driver", default="default", help="IP Address Management Driver")
@click.option("--ipam-opt", multiple=True, help="Set IPAM driver specific options")
@click.argument("name")
def create(
    driver: str, subnet: tuple[str, ...], ip_range: tuple[str, ...], gateway: tuple[str, ...],
    aux_address: tuple[str, ...], internal: bool, attachable: bool, ipv6: bool, label: tuple[str, ...],
    opt: tuple[str, ...], ipam_driver: str, ipam_opt: tuple[str, ...], name: str,
) -> None:  # fmt: skip
    """Create a network"""
    if (ip_range or gateway) and not subnet:
        raise StatusError(1, "no matching subnet for range" if ip_range else "no matching subnet for gateway")
    configs = []
    for i, s in enumerate(subnet):
        c: dict[str, Any] = {"Subnet": s}
        if i < len(ip_range):
            c["IPRange"] = ip_range[i]
        if i < len(gateway):
            c["Gateway"] = gateway[i]
        if aux_address and i == 0:
            c["AuxiliaryAddresses"] = parse_kv(aux_address, "'--aux-address'")
        configs.append(c)
    body = {
        "Name": name, "Driver": driver, "Internal": internal, "Attachable": attachable, "EnableIPv6": ipv6,
        "Labels": parse_kv(label, "'--label'"), "Options": parse_kv(opt, "'--opt'"),
        "IPAM": {"Driver": ipam_driver, "Config": configs, "Options": parse_kv(ipam_opt, "'--ipam-opt'")},
    }  # fmt: skip
    res = client().post_json("/networks/create", body=body)
    if res.get("Warning"):
        click.echo(f"WARNING: {res['Warning']}", err=True)
    click.echo(res["Id"])


@network_group.command("ls")
@click.option("-f", "--filter", "filters", multiple=True, help='Provide filter values (e.g. "driver=bridge")')
@click.option("--format", "format_", help="Format output using a custom template")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output")
@click.option("-q", "--quiet", is_flag=True, help="Only display network IDs")
def ls(filters: tuple[str, ...], format_: str | None, no_trunc: bool, quiet: bool) -> None:
    """List networks"""
    flt = parse_filters(filters)
    params = {"filters": json.dumps(flt)} if flt else None
    nets = sorted(client().request("GET", "/networks", params=params, stream=False).json() or [],
                  key=lambda n: n.get("Name", ""))  # fmt: skip
    rows = [NetworkCtx(n, trunc=not no_trunc) for n in nets]
    if quiet:
        for r in rows:
            click.echo(r.ID)
        return
    fmt.render(rows, format_, default=LS_DEFAULT, headers=NetworkCtx.HEADERS)


@network_group.command("inspect")
@click.option("-f", "--format", "format_", help="Format output using a custom template")
@click.option("-v", "--verbose", is_flag=True, help="Verbose output for diagnostics")
@click.argument("names", nargs=-1, required=True)
def inspect(names: tuple[str, ...], format_: str | None, verbose: bool) -> None:
    """Display detailed information on one or more networks"""
    c = client()
    results: list[Any] = []
    failed = False
    for name in names:
        try:
            results.append(c.request("GET", "/networks/{0}", name, stream=False).json())
        except errdefs.NotFound as err:
            failed = True
            click.echo(error_text(err), err=True)
    if format_:
        tmpl = Template(format_.replace("\\t", "\t").replace("\\n", "\n"))
        for n in results:
            click.echo(tmpl.render(n))
    else:
        fmt.print_json(results)
    if failed:
        raise StatusError(1)


@network_group.command("rm")
@click.option("-f", "--force", is_flag=True, help="Do not error if the network does not exist")
@click.argument("names", nargs=-1, required=True)
def rm(names: tuple[str, ...], force: bool) -> None:
    """Remove one or more networks"""
    c = client()

    def remove(n: str) -> None:
        try:
            c.request("DELETE", "/networks/{0}", n, stream=False)
        except errdefs.NotFound:
            if not force:
                raise

    for_each(names, remove)


@network_group.command("prune")
@click.option("--filter", "filters", multiple=True, help='Provide filter values (e.g. "until=<timestamp>")')
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
def prune(filters: tuple[str, ...], force: bool) -> None:
    """Remove all unused networks"""
    if not force and not click.confirm(
        "WARNING! This will remove all custom networks not used by at least one container.\n"
        "Are you sure you want to continue?",
        default=False,
    ):
        return
    flt = parse_filters(filters)
    res = client().post_json("/networks/prune", body={}, params={"filters": json.dumps(flt)} if flt else None) or {}
    deleted = res.get("NetworksDeleted") or []
    if deleted:
        click.echo("Deleted Networks:")
        for name in deleted:
            click.echo(name)


@network_group.command("connect")
@click.option("--alias", multiple=True, help="Add network-scoped alias for the container")
@click.option("--ip", help="IPv4 address (e.g., \"172.30.100.104\")")
@click.option("--driver-opt", multiple=True, help="driver options for the network")
@click.argument("network")
@click.argument("container")
def connect(alias: tuple[str, ...], ip: str | None, driver_opt: tuple[str, ...], network: str, container: str) -> None:
    """Connect a container to a network"""
    epc: dict[str, Any] = {"Aliases": list(alias) or None}
    if ip:
        epc["IPAMConfig"] = {"IPv4Address": ip}
    if driver_opt:
        epc["DriverOpts"] = parse_kv(driver_opt, "'--driver-opt'")
    client().post_json("/networks/{0}/connect", network, body={"Container": container, "EndpointConfig": epc})


@network_group.command("disconnect")
@click.option("-f", "--force", is_flag=True, help="Force the container to disconnect from a network")
@click.argument("network")
@click.argument("container")
def disconnect(force: bool, network: str, container: str) -> None:
    """Disconnect a container from a network"""
    client().post_json("/networks/{0}/disconnect", network, body={"Container": container, "Force": force})


def register(group: click.Group) -> None:
    group.add_command(network_group)
