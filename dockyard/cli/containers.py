"""Container lifecycle and query commands: ps, start, stop, kill, rm, logs, top, stats, ...

Each command is a thin translation of docker's flags into client calls plus docker's output.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import click

from dockyard import errdefs
from dockyard.cli import formatting as fmt
from dockyard.cli._common import (
    StatusError,
    client,
    for_each,
    parse_bytes,
    parse_filters,
    parse_since,
    write_binary,
)
from dockyard.cli.contexts import ContainerCtx, StatsCtx
from dockyard.cli.interactive import run_session
from dockyard.client import FrameDecoder

PS_DEFAULT = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"


@click.command("ps")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default shows just running)")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided")
@click.option("--format", "format_", help="Format output using a custom template")
@click.option(
    "-n", "--last", type=int, default=-1, help="Show n last created containers (includes all states)"
)
@click.option("-l", "--latest", is_flag=True, help="Show the latest created container (includes all states)")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("-q", "--quiet", is_flag=True, help="Only display container IDs")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes")
def ps(
    all_: bool,
    filters: tuple[str, ...],
    format_: str | None,
    last: int,
    latest: bool,
    no_trunc: bool,
    quiet: bool,
    size: bool,
) -> None:
    """List containers"""
    params: dict[str, Any] = {"all": int(all_ or latest or last > 0)}
    if latest:
        last = 1
    if last > 0:
        params["limit"] = last
    if size or (format_ and (".Size" in format_ or "json ." in format_)):
        params["size"] = 1
    flt = parse_filters(filters)
    if flt:
        params["filters"] = fmt_json(flt)
    resp = client().request("GET", "/containers/json", params=params, stream=False)
    rows = [ContainerCtx(c, trunc=not no_trunc) for c in resp.json()]
    if quiet:
        format_ = "{{.ID}}"
    default = PS_DEFAULT + ("\t{{.Size}}" if size else "")
    fmt.render(rows, format_, default=default, headers=ContainerCtx.HEADERS)


def fmt_json(v: Any) -> str:
    import json

    return json.dumps(v)


@click.command("start")
@click.option("-a", "--attach", is_flag=True, help="Attach STDOUT/STDERR and forward signals")
@click.option("-i", "--interactive", is_flag=True, help="Attach container's STDIN")
@click.option("--detach-keys", help="Override the key sequence for detaching a container")
@click.argument("containers", nargs=-1, required=True)
def start(containers: tuple[str, ...], attach: bool, interactive: bool, detach_keys: str | None) -> None:
    """Start one or more stopped containers"""
    c = client()
    if not (attach or interactive):
        for_each(containers, c.start)
        return
    if len(containers) > 1:
        raise StatusError(1, "you cannot start and attach multiple containers at once")
    info = c.inspect_container(containers[0])
    cid, is_tty = info["Id"], bool(info["Config"].get("Tty"))
    use_stdin = interactive and bool(info["Config"].get("OpenStdin"))
    conn = c.attach_socket(cid, stdin=use_stdin, detach_keys=detach_keys)
    wait = c.wait_begin(cid, "next-exit")
    c.start(cid)
    detached = run_session(
        conn,
        is_tty=is_tty,
        stdin=use_stdin,
        detach_keys=detach_keys,
        resize=lambda h, w: c.resize(cid, height=h, width=w),
        sig_proxy=lambda s: c.kill(cid, s),
    )
    if not detached:
        code = int(wait().get("StatusCode", 0))
        if code:
            raise StatusError(code)


@click.command("stop")
@click.option("-s", "--signal", "sig", help="Signal to send to the container")
@click.option("-t", "--time", "timeout", type=int, help="Seconds to wait before killing the container")
@click.argument("containers", nargs=-1, required=True)
def stop(containers: tuple[str, ...], sig: str | None, timeout: int | None) -> None:
    """Stop one or more running containers"""
    c = client()
    params = {"t": timeout, "signal": sig}
    for_each(containers, lambda n: _post_ok(c, "/containers/{0}/stop", n, params))


@click.command("restart")
@click.option("-s", "--signal", "sig", help="Signal to send to the container")
@click.option("-t", "--time", "timeout", type=int, help="Seconds to wait before killing the container")
@click.argument("containers", nargs=-1, required=True)
def restart(containers: tuple[str, ...], sig: str | None, timeout: int | None) -> None:
    """Restart one or more containers"""
    c = client()
    params = {"t": timeout, "signal": sig}
    for_each(containers, lambda n: _post_ok(c, "/containers/{0}/restart", n, params))


def _post_ok(c: Any, path: str, name: str, params: dict[str, Any]) -> None:
    try:
        c.request("POST", path, name, params={k: v for k, v in params.items() if v is not None}, stream=False)
    except errdefs.NotModified:
        pass  # 304: already stopped/started, which docker treats as success


@click.command("kill")
@click.option("-s", "--signal", "sig", default=None, help="Signal to send to the container")
@click.argument("containers", nargs=-1, required=True)
def kill(containers: tuple[str, ...], sig: str | None) -> None:
    """Kill one or more running containers"""
    c = client()
    for_each(
        containers,
        lambda n: c.request(
            "POST", "/containers/{0}/kill", n, params={"signal": sig} if sig else None, stream=False
        ),
    )


@click.command("rm")
@click.option("-f", "--force", is_flag=True, help="Force the removal of a running container (uses SIGKILL)")
@click.option("-v", "--volumes", is_flag=True, help="Remove anonymous volumes associated with the container")
@click.option("-l", "--link", is_flag=True, help="Remove the specified link")
@click.argument("containers", nargs=-1, required=True)
def rm(containers: tuple[str, ...], force: bool, volumes: bool, link: bool) -> None:
    """Remove one or more containers"""
    c = client()
    for_each(containers, lambda n: c.remove_container(n, v=volumes, link=link, force=force))


@click.command("pause")
@click.argument("containers", nargs=-1, required=True)
def pause(containers: tuple[str, ...]) -> None:
    """Pause all processes within one or more containers"""
    for_each(containers, client().pause)


@click.command("unpause")
@click.argument("containers", nargs=-1, required=True)
def unpause(containers: tuple[str, ...]) -> None:
    """Unpause all processes within one or more containers"""
    for_each(containers, client().unpause)


@click.command("rename")
@click.argument("container")
@click.argument("new_name")
def rename(container: str, new_name: str) -> None:
    """Rename a container"""
    if not new_name.strip():
        raise StatusError(1, "Error: neither old nor new names may be empty")
    client().rename(container, new_name)


@click.command("wait")
@click.argument("containers", nargs=-1, required=True)
def wait(containers: tuple[str, ...]) -> None:
    """Block until one or more containers stop, then print their exit codes"""
    c = client()
    failed = False
    for name in containers:
        try:
            res = c.wait_begin(name, "not-running")()
        except errdefs.DockyardError as err:
            from dockyard.cli._common import error_text

            click.echo(error_text(err), err=True)
            failed = True
            continue
        click.echo(res.get("StatusCode", 0))
    if failed:
        raise StatusError(1)


@click.command("update")
@click.option("--cpus", help="Number of CPUs")
@click.option("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)")
@click.option("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
@click.option("-m", "--memory", help="Memory limit")
@click.option("--memory-swap", help="Swap limit equal to memory plus swap")
@click.option("--memory-reservation", help="Memory soft limit")
@click.option("--pids-limit", type=int, help="Tune container pids limit (set -1 for unlimited)")
@click.option("--restart", help="Restart policy to apply when a container exits")
@click.argument("containers", nargs=-1, required=True)
def update(
    containers: tuple[str, ...],
    cpus: str | None,
    cpu_shares: int | None,
    cpuset_cpus: str | None,
    memory: str | None,
    memory_swap: str | None,
    memory_reservation: str | None,
    pids_limit: int | None,
    restart: str | None,
) -> None:
    """Update configuration of one or more containers"""
    from dockyard.cli.runopts import _restart

    body: dict[str, Any] = {}
    if cpus:
        body["NanoCpus"] = round(float(cpus) * 1e9)
    if cpu_shares is not None:
        body["CpuShares"] = cpu_shares
    if cpuset_cpus:
        body["CpusetCpus"] = cpuset_cpus
    if memory:
        body["Memory"] = parse_bytes(memory, "--memory")
    if memory_swap:
        body["MemorySwap"] = -1 if memory_swap == "-1" else parse_bytes(memory_swap)
    if memory_reservation:
        body["MemoryReservation"] = parse_bytes(memory_reservation)
    if pids_limit is not None:
        body["PidsLimit"] = pids_limit
    if restart:
        body["RestartPolicy"] = _restart(restart)
    if not body:
        raise StatusError(1, "you must provide one or more flags when using this command")
    c = client()

    def one(name: str) -> None:
        res = c.post_json("/containers/{0}/update", name, body=body) or {}
        for w in res.get("Warnings") or []:
            click.echo(w, err=True)

    for_each(containers, one)


@click.command("logs")
@click.option("--details", is_flag=True, help="Show extra details provided to logs")
@click.option("-f", "--follow", is_flag=True, help="Follow log output")
@click.option("--since", help="Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m)")
@click.option("-n", "--tail", default="all", help="Number of lines to show from the end of the logs")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps")
@click.option("--until", help="Show logs before a timestamp or relative (e.g. 42m)")
@click.argument("container")
def logs(
    container: str,
    details: bool,
    follow: bool,
    since: str | None,
    tail: str,
    timestamps: bool,
    until: str | None,
) -> None:
    """Fetch the logs of a container"""
    c = client()
    info = c.inspect_container(container)
    params = {
        "stdout": 1,
        "stderr": 1,
        "follow": int(follow),
        "timestamps": int(timestamps),
        "details": int(details),
        "tail": tail,
        "since": parse_since(since),
        "until": parse_since(until),
    }
    resp = c.request(
        "GET", "/containers/{0}/logs", info["Id"], params={k: v for k, v in params.items() if v is not None}
    )
    tty = bool(info["Config"].get("Tty"))
    multiplexed = not tty or "multiplexed" in resp.headers.get("Content-Type", "")
    dec = FrameDecoder(tty=not multiplexed)
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for chunk in c.iter_bytes(resp):
        for stream, payload in dec.feed(chunk):
            target = err if stream == 2 else out
            target.write(payload)
            target.flush()


@click.command("top")
@click.argument("container")
@click.argument("ps_args", nargs=-1)
def top(container: str, ps_args: tuple[str, ...]) -> None:
    """Display the running processes of a container"""
    res = client().top(container, ps_args=" ".join(ps_args) or None)
    lines = ["\t".join(res.get("Titles") or [])]
    lines += ["\t".join(p) for p in res.get("Processes") or []]
    fmt.tabwrite(lines, sys.stdout, minwidth=20, padding=1)


@click.command("diff")
@click.argument("container")
def diff(container: str) -> None:
    """Inspect changes to files or directories on a container's filesystem"""
    for change in client().diff(container) or []:
        kind = {0: "C", 1: "A", 2: "D"}.get(change.get("Kind"), "?")
        click.echo(f"{kind} {change.get('Path')}")


@click.command("port")
@click.argument("container")
@click.argument("private_port", required=False)
def port(container: str, private_port: str | None) -> None:
    """List port mappings or a specific mapping for the container"""
    info = client().inspect_container(container)
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    want = None
    if private_port:
        want = private_port if "/" in private_port else private_port + "/tcp"
    found = False
    for key in sorted(ports):
        if want and key != want:
            continue
        for b in ports[key] or []:
            found = True
            ip = b.get("HostIp") or "0.0.0.0"
            host = f"[{ip}]" if ":" in ip else ip
            click.echo(f"{host}:{b.get('HostPort')}" if want else f"{key} -> {host}:{b.get('HostPort')}")
    if want and not found:
        raise StatusError(1, f"Error: No public port '{want}' published for {container}")


@click.command("commit")
@click.option("-a", "--author", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
@click.option("-c", "--change", multiple=True, help="Apply Dockerfile instruction to the created image")
@click.option("-m", "--message", help="Commit message")
@click.option("-p/--no-pause", "--pause", "pause_", default=True, help="Pause container during commit")
@click.argument("container")
@click.argument("repository", required=False)
def commit(
    container: str,
    repository: str | None,
    author: str | None,
    change: tuple[str, ...],
    message: str | None,
    pause_: bool,
) -> None:
    """Create a new image from a container's changes"""
    repo, tag = _split_ref(repository) if repository else (None, None)
    params: dict[str, Any] = {
        "container": container,
        "repo": repo,
        "tag": tag,
        "comment": message,
        "author": author,
        "pause": int(pause_),
        "changes": list(change) or None,
    }
    res = client().post_json("/commit", body={}, params={k: v for k, v in params.items() if v is not None})
    click.echo(res["Id"])


def _split_ref(ref: str) -> tuple[str, str | None]:
    if "@" in ref:
        return ref, None
    name, sep, tag = ref.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return ref, None


@click.command("export")
@click.option("-o", "--output", help="Write to a file, instead of STDOUT")
@click.argument("container")
def export(container: str, output: str | None) -> None:
    """Export a container's filesystem as a tar archive"""
    c = client()
    if not output and sys.stdout.isatty():
        raise StatusError(1, "cowardly refusing to save to a terminal. Use the -o flag or redirect")
    resp = c.request("GET", "/containers/{0}/export", container)
    write_binary(c.iter_bytes(resp), output, "container")


@click.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--filter", "filters", multiple=True, help='Provide filter values (e.g. "until=<timestamp>")')
def container_prune(force: bool, filters: tuple[str, ...]) -> None:
    """Remove all stopped containers"""
    if not force and not click.confirm(
        "WARNING! This will remove all stopped containers.\nAre you sure you want to continue?", default=False
    ):
        return
    res = prune_containers(filters)
    reclaimed = res.get("SpaceReclaimed") or 0
    click.echo(f"Total reclaimed space: {fmt.human_size(reclaimed)}")


def prune_containers(filters: tuple[str, ...]) -> dict[str, Any]:
    flt = parse_filters(filters)
    params = {"filters": fmt_json(flt)} if flt else None
    res = client().post_json("/containers/prune", body={}, params=params) or {}
    deleted = res.get("ContainersDeleted") or []
    if deleted:
        click.echo("Deleted Containers:")
        for d in deleted:
            click.echo(d)
        click.echo()
    return dict(res)


STATS_DEFAULT = (
    "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
)


@click.command("stats")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default shows just running)")
@click.option("--format", "format_", help="Format output using a custom template")
@click.option("--no-stream", is_flag=True, help="Disable streaming stats and only pull the first result")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output")
@click.argument("containers", nargs=-1)
def stats(
    all_: bool, format_: str | None, no_stream: bool, no_trunc: bool, containers: tuple[str, ...]
) -> None:
    """Display a live stream of container(s) resource usage statistics"""
    c = client()
    names = list(containers) or [x["Id"] for x in c.containers(all=all_)]
    if no_stream:
        rows = []
        for n in names:
            s = c.stats(n, stream=False)
            rows.append(StatsCtx(n, s))
        fmt.render(rows, format_, default=STATS_DEFAULT, headers=StatsCtx.HEADERS)
        return
    latest: dict[str, dict[str, Any]] = {n: {} for n in names}
    lock = threading.Lock()

    def follow(name: str) -> None:
        try:
            for s in c.stats(name, stream=True, decode=True):
                with lock:
                    latest[name] = s
        except errdefs.DockyardError as err:
            with lock:
                latest[name] = {"name": name, "error": str(err)}

    for n in names:
        threading.Thread(target=follow, args=(n,), daemon=True).start()
    while True:
        time.sleep(1)
        with lock:
            rows = [StatsCtx(n, s) for n, s in latest.items() if s]
        if sys.stdout.isatty():
            sys.stdout.write("\033[2J\033[H")
        fmt.render(rows, format_, default=STATS_DEFAULT, headers=StatsCtx.HEADERS)
        sys.stdout.flush()


CONTAINER_COMMANDS = [
    ps,
    start,
    stop,
    restart,
    kill,
    rm,
    pause,
    unpause,
    rename,
    wait,
    update,
    logs,
    top,
    diff,
    port,
    commit,
    export,
    stats,
]


def register(group: click.Group) -> None:
    for cmd in CONTAINER_COMMANDS:
        group.add_command(cmd)
