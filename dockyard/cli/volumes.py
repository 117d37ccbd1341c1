"""`volume create/ls/inspect/rm/prune`, with docker's flags and output.

Talks to the daemon only through `dockyard.client`; the `--format` fields are those of the
docker CLI's volume context (Name, Driver, Scope, Mountpoint, Labels, Links, Size).
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

LS_DEFAULT = "table {{.Driver}}\t{{.Name}}"


class VolumeCtx(RowCtx):
    FIELDS: tuple[str, ...] = (
        "Availability",
        "Driver",
        "Group",
        "Labels",
        "Links",
        "Mountpoint",
        "Name",
        "Scope",
        "Size",
        "Status",
    )
    HEADERS: ClassVar[dict[str, str]] = {
        "Driver": "DRIVER",
        "Name": "VOLUME NAME",
        "Links": "LINKS",
        "Size": "SIZE",
        "Mountpoint": "MOUNTPOINT",
    }

    def __init__(self, v: dict[str, Any]) -> None:
        self.v = v
        self.Name = v.get("Name", "")
        self.Driver = v.get("Driver", "")
        self.Scope = v.get("Scope", "")
        self.Mountpoint = v.get("Mountpoint", "")
        self.Labels = ",".join(f"{k}={val}" for k, val in sorted((v.get("Labels") or {}).items()))
        usage = v.get("UsageData") or {}
        self.Links = str(usage["RefCount"]) if usage else "N/A"
        self.Size = fmt.human_size(usage["Size"]) if usage and usage.get("Size", -1) >= 0 else "N/A"
        self.Group = self.Availability = self.Status = ""

    def Label(self, name: str) -> str:
        return str((self.v.get("Labels") or {}).get(name, ""))


@click.group("volume")
def volume_group() -> None:
    """Manage volumes"""


@volume_group.command("create")
@click.option("-d", "--driver", default="local", help="Specify volume driver name")
@click.option("--label", multiple=True, help="Set metadata for a volume")
@click.option("-o", "--opt", multiple=True, help="Set driver specific options")
@click.option("--name", "name_opt", help="Specify volume name")
@click.argument("name", required=False)
def create(
    driver: str, label: tuple[str, ...], opt: tuple[str, ...], name_opt: str | None, name: str | None
) -> None:
    """Create a volume"""
    if name and name_opt and name != name_opt:
        raise StatusError(1, "conflicting options: either specify --name or provide positional arg, not both")
    body = {"Name": name or name_opt or "", "Driver": driver, "DriverOpts": parse_kv(opt, "'--opt'"),
            "Labels": parse_kv(label, "'--label'")}  # fmt: skip
    vol = client().post_json("/volumes/create", body=body)
    click.echo(vol["Name"])


@volume_group.command("ls")
@click.option("-f", "--filter", "filters", multiple=True, help='Provide filter values (e.g. "dangling=true")')
@click.option("--format", "format_", help="Format output using a custom template")
@click.option("-q", "--quiet", is_flag=True, help="Only display volume names")
def ls(filters: tuple[str, ...], format_: str | None, quiet: bool) -> None:
    """List volumes"""
    flt = parse_filters(filters)
    params = {"filters": json.dumps(flt)} if flt else None
    res = client().request("GET", "/volumes", params=params, stream=False).json()
    vols = sorted(res.get("Volumes") or [], key=lambda v: v.get("Name", ""))
    if quiet:
        for v in vols:
            click.echo(v["Name"])
        return
    fmt.render([VolumeCtx(v) for v in vols], format_, default=LS_DEFAULT, headers=VolumeCtx.HEADERS)


@volume_group.command("inspect")
@click.option("-f", "--format", "format_", help="Format output using a custom template")
@click.argument("names", nargs=-1, required=True)
def inspect(names: tuple[str, ...], format_: str | None) -> None:
    """Display detailed information on one or more volumes"""
    c = client()
    results: list[Any] = []
    failed = False
    for name in names:
        try:
            results.append(c.request("GET", "/volumes/{0}", name, stream=False).json())
        except errdefs.NotFound as err:
            failed = True
            click.echo(error_text(err), err=True)
    if format_:
        tmpl = Template(format_.replace("\\t", "\t").replace("\\n", "\n"))
        for v in results:
            click.echo(tmpl.render(v))
    else:
        fmt.print_json(results)
    if failed:
        raise StatusError(1)


@volume_group.command("rm")
@click.option("-f", "--force", is_flag=True, help="Force the removal of one or more volumes")
@click.argument("names", nargs=-1, required=True)
def rm(names: tuple[str, ...], force: bool) -> None:
    """Remove one or more volumes"""
    c = client()
    for_each(
        names, lambda n: c.request("DELETE", "/volumes/{0}", n, params={"force": int(force)}, stream=False)
    )


@volume_group.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused volumes, not just anonymous ones")
@click.option("--filter", "filters", multiple=True, help='Provide filter values (e.g. "label=<label>")')
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
def prune(all_: bool, filters: tuple[str, ...], force: bool) -> None:
    """Remove unused local volumes"""
    what = "all local volumes" if all_ else "anonymous local volumes"
    if not force and not click.confirm(
        f"WARNING! This will remove {what} not used by at least one container.\nAre you sure you want to continue?",
        default=False,
    ):
        return
    flt = parse_filters(filters)
    if all_:
        flt["all"] = ["true"]
    res = (
        client().post_json("/volumes/prune", body={}, params={"filters": json.dumps(flt)} if flt else None)
        or {}
    )
    deleted = res.get("VolumesDeleted") or []
    if deleted:
        click.echo("Deleted Volumes:")
        for name in deleted:
            click.echo(name)
        click.echo()
    click.echo(f"Total reclaimed space: {fmt.human_size(res.get('SpaceReclaimed') or 0)}")


def register(group: click.Group) -> None:
    group.add_command(volume_group)
