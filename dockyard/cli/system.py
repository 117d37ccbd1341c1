"""System commands (version, info, events, inspect, system df/prune) and the management groups
`container`, `image` and `system` that alias the top-level commands.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import sys
from typing import Any

import click

from dockyard import errdefs
from dockyard.cli import containers, images
from dockyard.cli import formatting as fmt
from dockyard.cli._common import StatusError, client, parse_filters, parse_since
from dockyard.cli.formatting import Template

CLIENT_VERSION = "0.1.0"


def _go_arch() -> str:
    m = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(m, m)


@click.command("version")
@click.option("-f", "--format", "format_", help="Format output using a custom template")
def version(format_: str | None) -> None:
    """Show the Dockyard version information"""
    c = client()
    cli_info = {
        "Version": CLIENT_VERSION,
        "ApiVersion": "",
        "Os": "linux",
        "Arch": _go_arch(),
        "PythonVersion": platform.python_version(),
    }
    server: dict[str, Any] | None = None
    err: errdefs.DockyardError | None = None
    try:
        server = c.version()
        cli_info["ApiVersion"] = c.api_version
    except errdefs.DockyardError as e:
        err = e
    if format_:
        click.echo(Template(format_).render({"Client": cli_info, "Server": server}))
    else:
        click.echo("Client:")
        click.echo(f" Version:           {CLIENT_VERSION}")
        click.echo(f" API version:       {cli_info['ApiVersion'] or 'unknown'}")
        click.echo(f" Python version:    {cli_info['PythonVersion']}")
        click.echo(f" OS/Arch:           linux/{cli_info['Arch']}")
        if server:
            click.echo("\nServer:")
            comps = server.get("Components") or [
                {"Name": "Engine", "Version": server.get("Version"), "Details": {}}
            ]
            for comp in comps:
                click.echo(f" {comp.get('Name')}:")
                click.echo(f"  Version:          {comp.get('Version')}")
                if comp.get("Name") == "Engine":
                    click.echo(
                        f"  API version:      {server.get('ApiVersion')} "
                        f"(minimum version {server.get('MinAPIVersion')})"
                    )
                    click.echo(f"  Go version:       {server.get('GoVersion', '')}")
                    click.echo(f"  Git commit:       {server.get('GitCommit', '')}")
                    click.echo(f"  Built:            {server.get('BuildTime', '')}")
                    click.echo(f"  OS/Arch:          {server.get('Os')}/{server.get('Arch')}")
                    click.echo(f"  Experimental:     {str(server.get('Experimental', False)).lower()}")
                else:
                    for k, v in (comp.get("Details") or {}).items():
                        click.echo(f"  {k}:{' ' * max(1, 17 - len(k))}{v}")
    if err:
        raise err


@click.command("info")
@click.option("-f", "--format", "format_", help="Format output using a custom template")
def info(format_: str | None) -> None:
    """Display system-wide information"""
    c = client()
    i = c.info()
    if format_:
        click.echo(Template(format_).render(i))
        return
    p = click.echo
    p("Client:")
    p(f" Version:    {CLIENT_VERSION}")
    p(" Context:    default")
    p(" Debug Mode: false")
    p("")
    p("Server:")
    p(f" Containers: {i.get('Containers', 0)}")
    p(f"  Running: {i.get('ContainersRunning', 0)}")
    p(f"  Paused: {i.get('ContainersPaused', 0)}")
    p(f"  Stopped: {i.get('ContainersStopped', 0)}")
    p(f" Images: {i.get('Images', 0)}")
    p(f" Server Version: {i.get('ServerVersion', '')}")
    p(f" Storage Driver: {i.get('Driver', '')}")
    for k, v in i.get("DriverStatus") or []:
        p(f"  {k}: {v}")
    p(f" Logging Driver: {i.get('LoggingDriver', '')}")
    p(f" Cgroup Driver: {i.get('CgroupDriver', '')}")
    p(f" Cgroup Version: {i.get('CgroupVersion', '')}")
    runtimes = " ".join(sorted((i.get("Runtimes") or {}).keys()))
    p(f" Runtimes: {runtimes}")
    p(f" Default Runtime: {i.get('DefaultRuntime', '')}")
    p(f" Kernel Version: {i.get('KernelVersion', '')}")
    p(f" Operating System: {i.get('OperatingSystem', '')}")
    p(f" OSType: {i.get('OSType', '')}")
    p(f" Architecture: {i.get('Architecture', '')}")
    p(f" CPUs: {i.get('NCPU', 0)}")
    p(f" Total Memory: {fmt.bytes_size(i.get('MemTotal') or 0)}")
    p(f" Name: {i.get('Name', '')}")
    p(f" ID: {i.get('ID', '')}")
    p(f" Docker Root Dir: {i.get('DockerRootDir', '')}")
    p(f" Debug Mode: {str(i.get('Debug', False)).lower()}")
    p(f" Experimental: {str(i.get('ExperimentalBuild', False)).lower()}")
    p(f" Live Restore Enabled: {str(i.get('LiveRestoreEnabled', False)).lower()}")
    for w in i.get("Warnings") or []:
        click.echo(w, err=True)


def _rfc3339nano(time_nano: int | None, seconds: int | None) -> str:
    ns = int(time_nano) if time_nano else int(seconds or 0) * 10**9
    dt = _dt.datetime.fromtimestamp(ns // 10**9).astimezone()
    frac = f"{ns % 10**9:09d}".rstrip("0")
    off = dt.strftime("%z")
    tz = "Z" if off == "+0000" else f"{off[:3]}:{off[3:]}"
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + tz


@click.command("events")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided")
@click.option("--format", "format_", help="Format output using a custom template")
@click.option("--since", help="Show all events created since timestamp")
@click.option("--until", help="Stream events until this timestamp")
def events(filters: tuple[str, ...], format_: str | None, since: str | None, until: str | None) -> None:
    """Get real time events from the server"""
    c = client()
    params: dict[str, Any] = {"since": parse_since(since), "until": parse_since(until)}
    flt = parse_filters(filters)
    if flt:
        params["filters"] = json.dumps(flt)
    resp = c.request("GET", "/events", params={k: v for k, v in params.items() if v is not None})
    if format_ == "json":
        format_ = "{{json .}}"
    tmpl = Template(format_.replace("\\t", "\t").replace("\\n", "\n")) if format_ else None
    for ev in c.iter_json(resp):
        if tmpl:
            click.echo(tmpl.render(ev))
            continue
        actor = ev.get("Actor") or {}
        attrs = actor.get("Attributes") or {}
        attr_s = ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs))
        line = (
            f"{_rfc3339nano(ev.get('timeNano'), ev.get('time'))} {ev.get('Type', '')} "
            f"{ev.get('Action', '')} {actor.get('ID', '')}"
        )
        if attr_s:
            line += f" ({attr_s})"
        click.echo(line)


@click.command("inspect")
@click.option("-f", "--format", "format_", help="Format output using a custom template")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes if the type is container")
@click.option(
    "--type", "type_", type=click.Choice(["container", "image"]), help="Return JSON for specified type"
)
@click.argument("names", nargs=-1, required=True)
def inspect(names: tuple[str, ...], format_: str | None, size: bool, type_: str | None) -> None:
    """Return low-level information on Dockyard objects"""
    _inspect(names, format_, size, type_)


def _inspect(names: tuple[str, ...], format_: str | None, size: bool, type_: str | None) -> None:
    c = client()
    results: list[Any] = []
    failed = False
    for name in names:
        obj = None
        kinds = [type_] if type_ else ["container", "image"]
        for kind in kinds:
            try:
                if kind == "container":
                    obj = c.request(
                        "GET", "/containers/{0}/json", name, params={"size": int(size)}, stream=False
                    ).json()
                else:
                    obj = c.inspect_image(name)
                break
            except errdefs.NotFound:
                continue
        if obj is None:
            failed = True
            what = {"container": "container", "image": "image"}.get(type_ or "", "object")
            click.echo(f"Error: No such {what}: {name}", err=True)
            continue
        results.append(obj)
    if format_:
        tmpl = Template(format_.replace("\\t", "\t").replace("\\n", "\n"))
        for obj in results:
            click.echo(tmpl.render(obj))
    else:
        fmt.print_json(results)
    if failed:
        raise StatusError(1)


DF_DEFAULT = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"


@click.command("df")
@click.option("--format", "format_", help="Format output using a custom template")
@click.option("-v", "--verbose", is_flag=True, help="Show detailed information on space usage")
def df(format_: str | None, verbose: bool) -> None:
    """Show docker disk usage"""
    d = client().df()
    if verbose and not format_:
        _df_verbose(d)
        return
    imgs = d.get("Images") or []
    ctrs = d.get("Containers") or []
    vols = d.get("Volumes") or []
    cache = d.get("BuildCache") or []
    used_images = {c.get("ImageID") for c in ctrs}
    img_size = sum(i.get("Size") or 0 for i in imgs)
    shared = sum(i.get("SharedSize") or 0 for i in imgs if (i.get("SharedSize") or 0) > 0)
    img_total = img_size - shared if shared else img_size
    img_active = sum(1 for i in imgs if i.get("Containers", 0) > 0 or i.get("Id") in used_images)
    img_reclaim = sum(
        i.get("Size") or 0 for i in imgs if not (i.get("Containers", 0) > 0 or i.get("Id") in used_images)
    )
    ctr_size = sum(c.get("SizeRw") or 0 for c in ctrs)
    ctr_active = sum(1 for c in ctrs if c.get("State") == "running")
    ctr_reclaim = sum(c.get("SizeRw") or 0 for c in ctrs if c.get("State") != "running")
    vol_size = sum(
        ((v.get("UsageData") or {}).get("Size") or 0)
        for v in vols
        if ((v.get("UsageData") or {}).get("Size") or 0) > 0
    )
    vol_active = sum(1 for v in vols if ((v.get("UsageData") or {}).get("RefCount") or 0) > 0)
    vol_reclaim = sum(
        ((v.get("UsageData") or {}).get("Size") or 0)
        for v in vols
        if ((v.get("UsageData") or {}).get("RefCount") or 0) == 0
        and ((v.get("UsageData") or {}).get("Size") or 0) > 0
    )
    cache_size = sum(b.get("Size") or 0 for b in cache)
    cache_active = sum(1 for b in cache if b.get("InUse"))

    def pct(part: float, total: float) -> str:
        return (
            f"{fmt.human_size(part, 4)} ({int(part * 100 / total) if total else 0}%)"
            if total
            else fmt.human_size(part, 4)
        )

    rows = [
        {
            "Type": "Images",
            "TotalCount": str(len(imgs)),
            "Active": str(img_active),
            "Size": fmt.human_size(img_total, 4),
            "Reclaimable": pct(img_reclaim, img_total),
        },
        {
            "Type": "Containers",
            "TotalCount": str(len(ctrs)),
            "Active": str(ctr_active),
            "Size": fmt.human_size(ctr_size, 4),
            "Reclaimable": pct(ctr_reclaim, ctr_size),
        },
        {
            "Type": "Local Volumes",
            "TotalCount": str(len(vols)),
            "Active": str(vol_active),
            "Size": fmt.human_size(vol_size, 4),
            "Reclaimable": pct(vol_reclaim, vol_size),
        },
        {
            "Type": "Build Cache",
            "TotalCount": str(len(cache)),
            "Active": str(cache_active),
            "Size": fmt.human_size(cache_size, 4),
            "Reclaimable": fmt.human_size(cache_size, 4),
        },
    ]
    fmt.render(
        rows,
        format_,
        default=DF_DEFAULT,
        headers={
            "Type": "TYPE",
            "TotalCount": "TOTAL",
            "Active": "ACTIVE",
            "Size": "SIZE",
            "Reclaimable": "RECLAIMABLE",
        },
    )


def _df_verbose(d: dict[str, Any]) -> None:
    """docker system df -v: one table per object kind."""
    p = click.echo
    p("Images space usage:\n")
    rows = []
    for i in d.get("Images") or []:
        tags = [t for t in i.get("RepoTags") or [] if t != "<none>:<none>"] or ["<none>:<none>"]
        for t in tags:
            repo, _, tag = t.rpartition(":")
            shared = i.get("SharedSize") or 0
            rows.append("\t".join([
                repo, tag, fmt.trunc_id(i.get("Id", "")), fmt.human_duration(_dt.datetime.now().timestamp()
                - (i.get("Created") or 0)) + " ago", fmt.human_size(i.get("Size") or 0),
                fmt.human_size(max(shared, 0)), fmt.human_size((i.get("Size") or 0) - max(shared, 0)),
                str(max(i.get("Containers") or 0, 0)),
            ]))  # fmt: skip
    fmt.tabwrite(["REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tCONTAINERS", *rows], sys.stdout)
    p("\nContainers space usage:\n")
    rows = []
    for c in d.get("Containers") or []:
        local_vols = sum(1 for m in c.get("Mounts") or [] if m.get("Type") == "volume")
        rows.append("\t".join([
            fmt.trunc_id(c.get("Id", "")), c.get("Image", ""), fmt.ellipsis(json.dumps(c.get("Command", ""))[1:-1], 20),
            str(local_vols), fmt.human_size(c.get("SizeRw") or 0),
            fmt.human_duration(_dt.datetime.now().timestamp() - (c.get("Created") or 0)) + " ago",
            c.get("Status", ""), ",".join(n.lstrip("/") for n in c.get("Names") or []),
        ]))  # fmt: skip
    fmt.tabwrite(["CONTAINER ID\tIMAGE\tCOMMAND\tLOCAL VOLUMES\tSIZE\tCREATED\tSTATUS\tNAMES", *rows], sys.stdout)
    p("\nLocal Volumes space usage:\n")
    rows = []
    for v in d.get("Volumes") or []:
        usage = v.get("UsageData") or {}
        size = usage.get("Size", -1)
        rows.append(f"{v.get('Name', '')}\t{usage.get('RefCount', 0)}\t{fmt.human_size(size) if size >= 0 else 'N/A'}")
    fmt.tabwrite(["VOLUME NAME\tLINKS\tSIZE", *rows], sys.stdout)
    cache = d.get("BuildCache") or []
    p(f"\nBuild cache usage: {fmt.human_size(sum(b.get('Size') or 0 for b in cache))}\n")
    rows = [
        "\t".join([fmt.trunc_id(b.get("ID", "")), b.get("Type", ""), fmt.human_size(b.get("Size") or 0),
                   b.get("CreatedAt", ""), b.get("LastUsedAt") or "", str(b.get("UsageCount", 0)),
                   str(b.get("Shared", False)).lower()])
        for b in cache
    ]  # fmt: skip
    fmt.tabwrite(["CACHE ID\tCACHE TYPE\tSIZE\tCREATED\tLAST USED\tUSAGE\tSHARED", *rows], sys.stdout)


@click.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused images not just dangling ones")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--volumes", is_flag=True, help="Prune anonymous volumes")
@click.option("--filter", "filters", multiple=True, help='Provide filter values (e.g. "label=<key>=<value>")')
def system_prune(all_: bool, force: bool, volumes: bool, filters: tuple[str, ...]) -> None:
    """Remove unused data"""
    items = ["all stopped containers", "all networks not used by at least one container"]
    if volumes:
        items.append("all anonymous volumes not used by at least one container")
    items.append(
        "all images without at least one container associated to them" if all_ else "all dangling images"
    )
    items.append("unused build cache" if all_ else "all dangling build cache")
    if not force:
        msg = "WARNING! This will remove:\n" + "".join(f"  - {i}\n" for i in items)
        if not click.confirm(msg + "\nAre you sure you want to continue?", default=False):
            return
    c = client()
    total = containers.prune_containers(filters).get("SpaceReclaimed") or 0
    flt = parse_filters(filters)
    try:
        res = (
            c.post_json("/networks/prune", body={}, params={"filters": json.dumps(flt)} if flt else None)
            or {}
        )
        if res.get("NetworksDeleted"):
            click.echo("Deleted Networks:")
            for n in res["NetworksDeleted"]:
                click.echo(n)
            click.echo()
    except errdefs.NotFound:
        pass
    if volumes:
        res = c.post_json("/volumes/prune", body={}) or {}
        total += res.get("SpaceReclaimed") or 0
    total += images.prune_images(all_, filters).get("SpaceReclaimed") or 0
    try:
        res = c.post_json("/build/prune", body={}, params={"all": int(all_)}) or {}
        total += res.get("SpaceReclaimed") or 0
    except (errdefs.NotFound, errdefs.Unsupported):
        pass
    click.echo(f"Total reclaimed space: {fmt.human_size(total)}")


# -- management groups ----------------------------------------------------------------------


def _alias(cmd: click.Command, name: str) -> click.Command:
    """A copy of `cmd` registered under another name (`container ls` for `ps`)."""
    return click.Command(
        name, callback=cmd.callback, params=cmd.params, help=cmd.help, context_settings=cmd.context_settings
    )


@click.group("container")
def container_group() -> None:
    """Manage containers"""


@click.group("image")
def image_group() -> None:
    """Manage images"""


@click.group("system")
def system_group() -> None:
    """Manage Dockyard"""


@click.command("inspect")
@click.option("-f", "--format", "format_", help="Format output using a custom template")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes")
@click.argument("names", nargs=-1, required=True)
def container_inspect(names: tuple[str, ...], format_: str | None, size: bool) -> None:
    """Display detailed information on one or more containers"""
    _inspect(names, format_, size, "container")


@click.command("inspect")
@click.option("-f", "--format", "format_", help="Format output using a custom template")
@click.argument("names", nargs=-1, required=True)
def image_inspect(names: tuple[str, ...], format_: str | None) -> None:
    """Display detailed information on one or more images"""
    _inspect(names, format_, False, "image")


def register(group: click.Group) -> None:
    from dockyard.cli import copy, interactive, run

    for cmd in (version, info, events, inspect):
        group.add_command(cmd)
    for cmd in (df, system_prune, events, info):
        system_group.add_command(cmd)
    container_group.add_command(container_inspect)
    container_group.add_command(containers.container_prune)
    for cmd in [
        *containers.CONTAINER_COMMANDS,
        run.run,
        run.create,
        interactive.attach,
        interactive.exec_,
        copy.cp,
    ]:
        container_group.add_command(cmd)
    container_group.add_command(_alias(containers.ps, "ls"))
    container_group.add_command(_alias(containers.ps, "list"))
    image_group.add_command(image_inspect)
    image_group.add_command(images.image_prune)
    image_group.add_command(_alias(images.images, "ls"))
    image_group.add_command(_alias(images.images, "list"))
    image_group.add_command(_alias(images.rmi, "rm"))
    for cmd in images.IMAGE_COMMANDS:
        if cmd.name not in ("images", "rmi"):
            image_group.add_command(cmd)
    for g in (container_group, image_group, system_group):
        group.add_command(g)
