"""`run`/`create` flags and the pure translation of parsed flags into a container-create body.

Nothing here talks to the daemon: `build_config` takes click's parsed values and returns the
JSON body for `POST /containers/create`, as docker's `opts.parse` does.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from typing import Any

import click

from dockyard.cli._common import parse_bytes, parse_duration_ns

F = Callable[..., Any]

_OPTS: list[Callable[[F], F]] = [
    click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached"),
    click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY"),
    click.option("-a", "--attach", "attach_streams", multiple=True, help="Attach to STDIN, STDOUT or STDERR"),
    click.option(
        "--rm", "auto_remove", is_flag=True, help="Automatically remove the container when it exits"
    ),
    click.option("--name", help="Assign a name to the container"),
    click.option("-e", "--env", multiple=True, help="Set environment variables"),
    click.option("--env-file", multiple=True, help="Read in a file of environment variables"),
    click.option("-w", "--workdir", help="Working directory inside the container"),
    click.option("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])"),
    click.option("--entrypoint", help="Overwrite the default ENTRYPOINT of the image"),
    click.option("-l", "--label", multiple=True, help="Set meta data on a container"),
    click.option("--label-file", multiple=True, help="Read in a line delimited file of labels"),
    click.option("-m", "--memory", help="Memory limit"),
    click.option("--memory-swap", help="Swap limit equal to memory plus swap: '-1' to enable unlimited swap"),
    click.option("--memory-reservation", help="Memory soft limit"),
    click.option("--cpus", help="Number of CPUs"),
    click.option("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)"),
    click.option("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)"),
    click.option("--pids-limit", type=int, help="Tune container pids limit (set -1 for unlimited)"),
    click.option("--init", is_flag=True, default=None, help="Run an init inside the container"),
    click.option("--restart", default="no", help="Restart policy to apply when a container exits"),
    click.option("--read-only", is_flag=True, help="Mount the container's root filesystem as read only"),
    click.option("--cap-add", multiple=True, help="Add Linux capabilities"),
    click.option("--cap-drop", multiple=True, help="Drop Linux capabilities"),
    click.option("--privileged", is_flag=True, help="Give extended privileges to this container"),
    click.option("-h", "--hostname", help="Container host name"),
    click.option("--domainname", help="Container NIS domain name"),
    click.option("--add-host", multiple=True, help="Add a custom host-to-IP mapping (host:ip)"),
    click.option("--dns", multiple=True, help="Set custom DNS servers"),
    click.option("--dns-search", multiple=True, help="Set custom DNS search domains"),
    click.option("--dns-option", multiple=True, help="Set DNS options"),
    click.option("--tmpfs", multiple=True, help="Mount a tmpfs directory"),
    click.option("-v", "--volume", multiple=True, help="Bind mount a volume"),
    click.option("--mount", "mounts", multiple=True, help="Attach a filesystem mount to the container"),
    click.option("--volumes-from", multiple=True, help="Mount volumes from the specified container(s)"),
    click.option("--network", "--net", "network", help="Connect a container to a network"),
    click.option("--network-alias", multiple=True, help="Add network-scoped alias for the container"),
    click.option("--ip", help="IPv4 address"),
    click.option("--detach-keys", help="Override the key sequence for detaching a container"),
    click.option("-p", "--publish", multiple=True, help="Publish a container's port(s) to the host"),
    click.option("-P", "--publish-all", is_flag=True, help="Publish all exposed ports to random ports"),
    click.option("--expose", multiple=True, help="Expose a port or a range of ports"),
    click.option("--stop-signal", help="Signal to stop the container"),
    click.option("--stop-timeout", type=int, help="Timeout (in seconds) to stop a container"),
    click.option("--ulimit", multiple=True, help="Ulimit options"),
    click.option("--shm-size", help="Size of /dev/shm"),
    click.option("--sysctl", multiple=True, help="Sysctl options"),
    click.option("--security-opt", multiple=True, help="Security Options"),
    click.option("--group-add", multiple=True, help="Add additional groups to join"),
    click.option("--device", multiple=True, help="Add a host device to the container"),
    click.option("--log-driver", help="Logging driver for the container"),
    click.option("--log-opt", multiple=True, help="Log driver options"),
    click.option("--ipc", help="IPC mode to use"),
    click.option("--pid", help="PID namespace to use"),
    click.option("--uts", help="UTS namespace to use"),
    click.option("--userns", help="User namespace to use"),
    click.option("--cgroupns", help="Cgroup namespace to use (host|private)"),
    click.option("--oom-kill-disable", is_flag=True, default=None, help="Disable OOM Killer"),
    click.option("--health-cmd", help="Command to run to check health"),
    click.option("--health-interval", help="Time between running the check"),
    click.option("--health-timeout", help="Maximum time to allow one check to run"),
    click.option("--health-retries", type=int, help="Consecutive failures needed to report unhealthy"),
    click.option("--health-start-period", help="Start period for the container to initialize"),
    click.option("--health-start-interval", help="Time between running the check during the start period"),
    click.option("--no-healthcheck", is_flag=True, help="Disable any container-specified HEALTHCHECK"),
    click.option("--platform", help="Set platform if server is multi-platform capable"),
    click.option(
        "--pull", default="missing", help='Pull image before running ("always", "missing", "never")'
    ),
    click.option("-q", "--quiet", is_flag=True, help="Suppress the pull output"),
    click.option("--runtime", help="Runtime to use for this container"),
]


def container_options(f: F) -> F:
    for opt in reversed(_OPTS):
        f = opt(f)
    f = click.argument("command", nargs=-1, type=click.UNPROCESSED)(f)
    f = click.argument("image")(f)
    return f


def _env_list(values: tuple[str, ...], files: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for path in files:
        with open(path, encoding="utf-8") as fh:
            for raw in fh:
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                out.extend(_env_item(line.lstrip()))
    for v in values:
        out.extend(_env_item(v))
    return out


def _env_item(v: str) -> list[str]:
    if "=" in v:
        if v.startswith("="):
            raise click.BadParameter(f"invalid environment variable: {v}")
        return [v]
    # `-e NAME` copies NAME from the client's environment, and is dropped when unset.
    return [f"{v}={os.environ[v]}"] if v in os.environ else []


def _labels(values: tuple[str, ...], files: tuple[str, ...]) -> dict[str, str]:
    items: list[str] = []
    for path in files:
        with open(path, encoding="utf-8") as fh:
            items += [line.strip() for line in fh if line.strip() and not line.startswith("#")]
    items += list(values)
    out = {}
    for item in items:
        k, _, v = item.partition("=")
        out[k] = v
    return out


_PORT_RE = re.compile(
    r"^(?:(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+))?:)?(?:(\d*(?:-\d+)?):)?(\d+(?:-\d+)?)(?:/(\w+))?$"
)


def _port_range(s: str) -> list[int]:
    if "-" in s:
        a, b = s.split("-", 1)
        return list(range(int(a), int(b) + 1))
    return [int(s)]


def parse_ports(specs: tuple[str, ...]) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, str]]]]:
    """`-p [ip:][hostPort:]containerPort[/proto]` → (ExposedPorts, PortBindings)."""
    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in specs:
        m = _PORT_RE.match(spec)
        if not m:
            raise click.BadParameter(f"invalid port format: {spec}", param_hint="'-p'")
        ip = m.group(1) or m.group(2) or ""
        host, ctr, proto = m.group(3) or "", m.group(4), (m.group(5) or "tcp").lower()
        ctr_ports = _port_range(ctr)
        host_ports: list[str] = [str(p) for p in _port_range(host)] if host else [""] * len(ctr_ports)
        if len(host_ports) != len(ctr_ports):
            if len(host_ports) > 1 and len(ctr_ports) == 1:
                host_ports = [host] * 1
            else:
                raise click.BadParameter(f"invalid ranges specified for container and host Ports: {spec}")
        for cp, hp in zip(ctr_ports, host_ports, strict=True):
            key = f"{cp}/{proto}"
            exposed[key] = {}
            bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": hp})
    return exposed, bindings


def _ulimits(values: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for v in values:
        name, _, lim = v.partition("=")
        if not lim:
            raise click.BadParameter(f"invalid ulimit argument: {v}", param_hint="'--ulimit'")
        soft, _, hard = lim.partition(":")
        out.append({"Name": name, "Soft": int(soft), "Hard": int(hard or soft)})
    return out


def _restart(value: str) -> dict[str, Any]:
    name, _, count = (value or "no").partition(":")
    if not name and count:
        raise click.BadParameter("invalid restart policy format: no policy provided before colon")
    if count and not count.lstrip("-").isdigit():
        raise click.BadParameter(f"invalid restart policy format: maximum retry count must be an integer: {count}")
    # the name and count go to the daemon as given: it owns the policies' validation
    return {"Name": name, "MaximumRetryCount": int(count or 0)}


def _mount(spec: str) -> dict[str, Any]:
    m: dict[str, Any] = {"Type": "volume"}
    for part in spec.split(","):
        k, _, v = part.partition("=")
        k = k.strip().lower()
        if k == "type":
            m["Type"] = v
        elif k in ("source", "src"):
            m["Source"] = v
        elif k in ("target", "destination", "dst"):
            m["Target"] = v
        elif k in ("readonly", "ro"):
            m["ReadOnly"] = v in ("", "1", "true")
        elif k == "tmpfs-size":
            m.setdefault("TmpfsOptions", {})["SizeBytes"] = parse_bytes(v)
        elif k == "tmpfs-mode":
            try:
                m.setdefault("TmpfsOptions", {})["Mode"] = int(v, 8)
            except ValueError:
                raise click.BadParameter(f"invalid value for {k}: {v}", param_hint="'--mount'") from None
        elif k == "bind-propagation":
            m.setdefault("BindOptions", {})["Propagation"] = v
        elif k == "bind-nonrecursive":
            m.setdefault("BindOptions", {})["NonRecursive"] = v in ("", "1", "true")
        elif k == "volume-nocopy":
            m.setdefault("VolumeOptions", {})["NoCopy"] = v in ("", "1", "true")
        elif k == "volume-driver":
            m.setdefault("VolumeOptions", {}).setdefault("DriverConfig", {})["Name"] = v
        elif k == "volume-opt":
            opt_k, _, opt_v = v.partition("=")
            dc = m.setdefault("VolumeOptions", {}).setdefault("DriverConfig", {})
            dc.setdefault("Options", {})[opt_k] = opt_v
        elif k == "volume-label":
            lk, _, lv = v.partition("=")
            m.setdefault("VolumeOptions", {}).setdefault("Labels", {})[lk] = lv
        elif k == "consistency":
            m["Consistency"] = v
        else:
            raise click.BadParameter(f"unexpected key '{k}' in '{spec}'", param_hint="'--mount'")
    return m


def _volumes(specs: tuple[str, ...]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    binds: list[str] = []
    anon: dict[str, dict[str, Any]] = {}
    for spec in specs:
        parts = spec.split(":")
        if len(parts) == 1:
            anon[parts[0]] = {}
            continue
        if not parts[1].startswith("/"):
            raise click.BadParameter(f"invalid volume specification: '{spec}'", param_hint="'-v'")
        src = parts[0]
        if src.startswith(".") or (src.startswith("/") is False and "/" in src):
            src = os.path.abspath(src)
        binds.append(":".join([src, *parts[1:]]))
    return binds, anon


def _security_opts(opts: tuple[str, ...]) -> list[str]:
    """As docker's CLI: `seccomp=<file>` becomes `seccomp=<the file's JSON, compacted>`, since
    the daemon never opens a path the client names."""
    import json

    out = []
    for opt in opts:
        key, sep, value = opt.partition("=") if "=" in opt else opt.partition(":")
        if key == "seccomp" and sep and value not in ("unconfined", "builtin", "default"):
            try:
                with open(value) as f:
                    doc = json.load(f)
            except OSError as err:
                raise click.BadParameter(f"opening seccomp profile ({value}) failed: {err}") from None
            except ValueError as err:
                raise click.BadParameter(f"compacting json for seccomp profile ({value}) failed: {err}") from None
            opt = "seccomp=" + json.dumps(doc, separators=(",", ":"))
        out.append(opt)
    return out


def build_config(image: str, command: tuple[str, ...], o: dict[str, Any], *, detach: bool) -> dict[str, Any]:
    """Translate parsed run/create flags into a create body (Config + HostConfig + NetworkingConfig)."""
    attach = {s.lower() for s in o.get("attach_streams") or ()}
    stdin_attached = o["interactive"] and (not attach or "stdin" in attach) and not detach
    exposed, bindings = parse_ports(o["publish"])
    for e in o["expose"]:
        port, _, proto = e.partition("/")
        for p in _port_range(port):
            exposed[f"{p}/{proto or 'tcp'}"] = {}
    binds, anon = _volumes(o["volume"])
    host: dict[str, Any] = {
        "Binds": binds or None,
        "PortBindings": bindings or None,
        "PublishAllPorts": o["publish_all"],
        "RestartPolicy": _restart(o["restart"]),
        "AutoRemove": o["auto_remove"],
        "Privileged": o["privileged"],
        "ReadonlyRootfs": o["read_only"],
        "CapAdd": list(o["cap_add"]) or None,
        "CapDrop": list(o["cap_drop"]) or None,
        "ExtraHosts": list(o["add_host"]) or None,
        "Dns": list(o["dns"]) or None,
        "DnsSearch": list(o["dns_search"]) or None,
        "DnsOptions": list(o["dns_option"]) or None,
        "Tmpfs": {t.split(":", 1)[0]: (t.split(":", 1)[1] if ":" in t else "") for t in o["tmpfs"]} or None,
        "Mounts": [_mount(m) for m in o["mounts"]] or None,
        "VolumesFrom": list(o["volumes_from"]) or None,
        "Ulimits": _ulimits(o["ulimit"]) or None,
        "Sysctls": dict(s.split("=", 1) for s in o["sysctl"]) or None,
        "SecurityOpt": _security_opts(o["security_opt"]) or None,
        "GroupAdd": list(o["group_add"]) or None,
        "Init": o["init"],
        "OomKillDisable": o["oom_kill_disable"],
    }
    if o["memory"]:
        host["Memory"] = parse_bytes(o["memory"], "--memory")
    if o["memory_swap"]:
        host["MemorySwap"] = -1 if o["memory_swap"] == "-1" else parse_bytes(o["memory_swap"])
    if o["memory_reservation"]:
        host["MemoryReservation"] = parse_bytes(o["memory_reservation"])
    if o["cpus"]:
        try:
            host["NanoCpus"] = round(float(o["cpus"]) * 1e9)
        except ValueError:
            raise click.BadParameter(f'invalid argument "{o["cpus"]}"', param_hint="'--cpus'") from None
    if o["cpu_shares"] is not None:
        host["CpuShares"] = o["cpu_shares"]
    if o["cpuset_cpus"]:
        host["CpusetCpus"] = o["cpuset_cpus"]
    if o["pids_limit"] is not None:
        host["PidsLimit"] = o["pids_limit"]
    if o["shm_size"]:
        host["ShmSize"] = parse_bytes(o["shm_size"], "--shm-size")
    if o["network"]:
        host["NetworkMode"] = o["network"]
    for key, flag in (
        ("IpcMode", "ipc"),
        ("PidMode", "pid"),
        ("UTSMode", "uts"),
        ("UsernsMode", "userns"),
        ("CgroupnsMode", "cgroupns"),
        ("Runtime", "runtime"),
    ):
        if o[flag]:
            host[key] = o[flag]
    if o["log_driver"] or o["log_opt"]:
        host["LogConfig"] = {
            "Type": o["log_driver"] or "",
            "Config": dict(x.split("=", 1) for x in o["log_opt"]),
        }
    if o["device"]:
        host["Devices"] = []
        for d in o["device"]:
            parts = d.split(":")
            host["Devices"].append(
                {
                    "PathOnHost": parts[0],
                    "PathInContainer": parts[1] if len(parts) > 1 else parts[0],
                    "CgroupPermissions": parts[2] if len(parts) > 2 else "rwm",
                }
            )
    cfg: dict[str, Any] = {
        "Hostname": o["hostname"] or "",
        "Domainname": o["domainname"] or "",
        "User": o["user"] or "",
        "AttachStdin": stdin_attached,
        "AttachStdout": not detach and (not attach or "stdout" in attach),
        "AttachStderr": not detach and (not attach or "stderr" in attach),
        "Tty": o["tty"],
        "OpenStdin": o["interactive"],
        "StdinOnce": stdin_attached,
        "Env": _env_list(o["env"], o["env_file"]),
        "Cmd": list(command) or None,
        "Image": image,
        "Labels": _labels(o["label"], o["label_file"]),
        "WorkingDir": o["workdir"] or "",
        "HostConfig": {k: v for k, v in host.items() if v is not None},
    }
    if o["entrypoint"] is not None:
        cfg["Entrypoint"] = shlex.split(o["entrypoint"]) if o["entrypoint"] else [""]
    if exposed:
        cfg["ExposedPorts"] = exposed
    if anon:
        cfg["Volumes"] = anon
    if o["stop_signal"]:
        cfg["StopSignal"] = o["stop_signal"]
    if o["stop_timeout"] is not None:
        cfg["StopTimeout"] = o["stop_timeout"]
    hc = _healthcheck(o)
    if hc is not None:
        cfg["Healthcheck"] = hc
    if o["network"] and (o["network_alias"] or o["ip"]):
        ep: dict[str, Any] = {"Aliases": list(o["network_alias"]) or None}
        if o["ip"]:
            ep["IPAMConfig"] = {"IPv4Address": o["ip"]}
        cfg["NetworkingConfig"] = {"EndpointsConfig": {o["network"]: ep}}
    return cfg


def _healthcheck(o: dict[str, Any]) -> dict[str, Any] | None:
    if o["no_healthcheck"]:
        return {"Test": ["NONE"]}
    hc: dict[str, Any] = {}
    if o["health_cmd"]:
        hc["Test"] = ["CMD-SHELL", o["health_cmd"]]
    for key, flag in (
        ("Interval", "health_interval"),
        ("Timeout", "health_timeout"),
        ("StartPeriod", "health_start_period"),
        ("StartInterval", "health_start_interval"),
    ):
        if o[flag]:
            hc[key] = parse_duration_ns(o[flag])
    if o["health_retries"] is not None:
        hc["Retries"] = o["health_retries"]
    return hc or None
