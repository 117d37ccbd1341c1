"""Service specs: validation, defaults, the task-template hash, placement constraints, and
the container a task becomes. Pure: no I/O.

Owns the meaning of a `ServiceSpec` (moby's swagger shape). Every field is honoured or
refused at the edge (`validate`): a spec this engine cannot run is a 400 naming the field,
never stored and ignored.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from dockyard import errdefs

NAME_RE = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9_.-]{0,62})$")

# ContainerSpec fields the agent turns into a container; anything else is refused
_CONTAINER_FIELDS = {
    "Image", "Labels", "Command", "Args", "Hostname", "Env", "Dir", "User", "Groups", "TTY", "OpenStdin",
    "ReadOnly", "Mounts", "StopSignal", "StopGracePeriod", "Healthcheck", "Hosts", "DNSConfig", "Secrets",
    "Configs", "Isolation", "Init", "Sysctls", "CapabilityAdd", "CapabilityDrop", "Ulimits", "Privileges",
}  # fmt: skip
_TEMPLATE_FIELDS = {"ContainerSpec", "Resources", "RestartPolicy", "Placement", "ForceUpdate", "Runtime",
                    "Networks", "LogDriver"}  # fmt: skip

LOCAL_NETWORKS = ("bridge", "host", "none")  # each node's own: no overlay needed
DEFAULT_UPDATE: dict[str, Any] = {"Parallelism": 1, "Delay": 0, "FailureAction": "pause", "Monitor": 5_000_000_000,
                  "MaxFailureRatio": 0, "Order": "stop-first"}  # fmt: skip
DEFAULT_RESTART: dict[str, Any] = {"Condition": "any", "Delay": 5_000_000_000, "MaxAttempts": 0, "Window": 0}


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise errdefs.InvalidArgument(msg)


def _update_config(cfg: Any, what: str) -> dict[str, Any]:
    if cfg is None:
        return dict(DEFAULT_UPDATE)
    _check(isinstance(cfg, dict), f"invalid {what}: expected an object")
    out = {**DEFAULT_UPDATE, **{k: v for k, v in cfg.items() if v is not None}}
    _check(out["FailureAction"] in ("pause", "continue", "rollback"),
           f"invalid {what}.FailureAction {out['FailureAction']!r}: must be pause, continue or rollback")  # fmt: skip
    _check(out["Order"] in ("stop-first", "start-first"),
           f"invalid {what}.Order {out['Order']!r}: must be stop-first or start-first")  # fmt: skip
    _check(int(out["Parallelism"]) >= 0, f"invalid {what}.Parallelism: must not be negative")
    return out


def validate(spec: Any, secrets_known: set[str] | None = None) -> dict[str, Any]:
    """A normalized copy of spec, or InvalidArgument/Unsupported naming what is wrong."""
    _check(isinstance(spec, dict), "invalid service spec: expected an object")
    spec = json.loads(json.dumps(spec))
    name = spec.get("Name") or ""
    _check(bool(NAME_RE.match(name)), f"invalid name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    tt = spec.get("TaskTemplate") or {}
    _check(isinstance(tt, dict), "invalid TaskTemplate: expected an object")
    for k in tt:
        if k not in _TEMPLATE_FIELDS and tt[k]:
            raise errdefs.Unsupported(f"TaskTemplate.{k} is not supported by this engine")
    cs = tt.get("ContainerSpec")
    _check(isinstance(cs, dict) and bool(cs.get("Image")), "ContainerSpec: image reference must be provided")
    assert isinstance(cs, dict)
    for k, v in cs.items():
        if k not in _CONTAINER_FIELDS and v:
            raise errdefs.Unsupported(f"ContainerSpec.{k} is not supported by this engine")
    if cs.get("Isolation") not in (None, "", "default"):
        raise errdefs.Unsupported(f"ContainerSpec.Isolation {cs['Isolation']!r} is not supported")
    if tt.get("Runtime") not in (None, "", "container"):
        raise errdefs.Unsupported(f"TaskTemplate.Runtime {tt['Runtime']!r} is not supported")
    ld = tt.get("LogDriver")
    if ld and (ld.get("Name") or "json-file") not in ("json-file", "local"):
        raise errdefs.Unsupported(f"log driver {ld.get('Name')!r} is not supported for services")
    nets = tt.get("Networks") or spec.get("Networks") or []
    if len(nets) > 1:
        raise errdefs.Unsupported("a service attaches to one network here (an overlay, or bridge/host/none)")
    for n in nets:
        _check(isinstance(n, dict) and bool(n.get("Target")), "invalid service network: Target is required")
    if nets:
        tt["Networks"] = nets
        spec.pop("Networks", None)
    rp = {**DEFAULT_RESTART, **{k: v for k, v in (tt.get("RestartPolicy") or {}).items() if v is not None}}
    _check(rp["Condition"] in ("none", "on-failure", "any"),
           f"invalid restart condition {rp['Condition']!r}: must be none, on-failure or any")  # fmt: skip
    tt["RestartPolicy"] = rp
    placement = tt.get("Placement") or {}
    for c in placement.get("Constraints") or []:
        parse_constraint(c)
    for p in placement.get("Preferences") or []:
        _check(isinstance(p, dict) and isinstance(p.get("Spread"), dict) and bool(p["Spread"].get("SpreadDescriptor")),
               "invalid placement preference: only spread=<descriptor> is supported")  # fmt: skip
    for s in cs.get("Secrets") or []:
        _check(
            bool(s.get("SecretID") or s.get("SecretName")), "invalid secret reference: SecretID is required"
        )
    # Go's JSON decoding matches keys case-insensitively; docker-py sends {"replicated": ...}
    mode = {str(k).capitalize(): v for k, v in (spec.get("Mode") or {"Replicated": {"Replicas": 1}}).items()}
    if "Replicated" in mode and isinstance(mode["Replicated"], dict):
        mode["Replicated"] = {str(k).capitalize(): v for k, v in mode["Replicated"].items()}
    if "Replicated" in mode:
        r = (mode["Replicated"] or {}).get("Replicas")
        mode = {"Replicated": {"Replicas": 1 if r is None else int(r)}}
        _check(mode["Replicated"]["Replicas"] >= 0, "invalid replicas: must not be negative")
    elif "Global" in mode:
        mode = {"Global": {}}
    else:
        raise errdefs.Unsupported(f"service mode {sorted(mode)} is not supported (replicated or global)")
    spec["Mode"] = mode
    spec["TaskTemplate"] = tt
    spec["UpdateConfig"] = _update_config(spec.get("UpdateConfig"), "UpdateConfig")
    spec["RollbackConfig"] = _update_config(spec.get("RollbackConfig"), "RollbackConfig")
    ep = spec.get("EndpointSpec") or {}
    for port in ep.get("Ports") or []:
        if (port.get("PublishMode") or "ingress") != "host":
            raise errdefs.Unsupported(
                "published ports in ingress mode need the routing mesh, which this engine does not have yet; "
                "use mode=host"
            )
        _check(port.get("TargetPort") is not None, "invalid published port: TargetPort is required")
    spec.setdefault("Labels", {})
    out: dict[str, Any] = spec
    return out


def template_hash(tt: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(tt, sort_keys=True).encode()).hexdigest()[:16]


def parse_constraint(expr: str) -> tuple[str, str, str]:
    m = re.match(r"^\s*([\w.\-]+)\s*(==|!=)\s*(.*?)\s*$", str(expr))
    if not m:
        raise errdefs.InvalidArgument(
            f"invalid constraint {expr!r}: expected <key>==<value> or <key>!=<value>"
        )
    key, op, value = m.groups()
    ok = (
        key in ("node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch")
        or key.startswith("node.labels.")
        or key.startswith("engine.labels.")
    )
    if not ok:
        raise errdefs.InvalidArgument(f"invalid constraint key {key!r}")
    return key, op, value


def node_attr(node: dict[str, Any], key: str) -> str | None:
    desc = node.get("Description") or {}
    if key == "node.id":
        return str(node["ID"])
    if key == "node.hostname":
        return str(desc.get("Hostname", ""))
    if key == "node.role":
        return str(node["Spec"]["Role"])
    if key == "node.platform.os":
        return str((desc.get("Platform") or {}).get("OS", ""))
    if key == "node.platform.arch":
        return str((desc.get("Platform") or {}).get("Architecture", ""))
    if key.startswith("node.labels."):
        v = (node["Spec"].get("Labels") or {}).get(key[len("node.labels.") :])
        return None if v is None else str(v)
    if key.startswith("engine.labels."):
        v = ((desc.get("Engine") or {}).get("Labels") or {}).get(key[len("engine.labels.") :])
        return None if v is None else str(v)
    return None


def satisfies(node: dict[str, Any], constraints: list[str]) -> bool:
    for c in constraints:
        key, op, value = parse_constraint(c)
        have = node_attr(node, key)
        if key == "node.role" or key == "node.hostname":
            eq = have is not None and have.lower() == value.lower()
        else:
            eq = have == value
        if (op == "==") != eq:
            return False
    return True


def container_body(task: dict[str, Any], service_name: str, node_id: str,
                   mounts_extra: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:  # fmt: skip
    """The container create body and name for a task (moby's container adapter, in short)."""
    tt = task["Spec"]
    cs = tt["ContainerSpec"]
    slot = task.get("Slot") or task["NodeID"]
    name = f"{service_name}.{slot}.{task['ID']}"
    labels = {**(cs.get("Labels") or {}),
              "com.docker.swarm.service.id": task["ServiceID"], "com.docker.swarm.service.name": service_name,
              "com.docker.swarm.task": "", "com.docker.swarm.task.id": task["ID"],
              "com.docker.swarm.task.name": f"{service_name}.{slot}", "com.docker.swarm.node.id": node_id}  # fmt: skip
    limits = (tt.get("Resources") or {}).get("Limits") or {}
    hc: dict[str, Any] = {
        "Mounts": [*(cs.get("Mounts") or []), *mounts_extra],
        "NanoCpus": int(limits.get("NanoCPUs") or 0), "Memory": int(limits.get("MemoryBytes") or 0),
        "Init": cs.get("Init"), "ReadonlyRootfs": bool(cs.get("ReadOnly")),
        "CapAdd": cs.get("CapabilityAdd"), "CapDrop": cs.get("CapabilityDrop"), "Sysctls": cs.get("Sysctls"),
        "ExtraHosts": [" ".join(reversed(h.split(None, 1))) if " " in h else h for h in cs.get("Hosts") or []] or None,
        "GroupAdd": cs.get("Groups"), "Ulimits": cs.get("Ulimits"),
        "NetworkMode": next((n["Target"] for n in tt.get("Networks") or []), None),
    }  # fmt: skip
    net = next(iter(tt.get("Networks") or []), None)
    networking: dict[str, Any] = {}
    if net is not None and net["Target"] not in LOCAL_NETWORKS:
        # on an overlay the service's name (and tasks.<name>) resolves to its tasks
        aliases = [service_name, f"tasks.{service_name}", *(net.get("Aliases") or [])]
        networking = {"EndpointsConfig": {net["Target"]: {"Aliases": aliases}}}
    if limits.get("Pids"):
        hc["PidsLimit"] = int(limits["Pids"])
    dns = cs.get("DNSConfig") or {}
    if dns:
        hc.update(
            {"Dns": dns.get("Nameservers"), "DnsSearch": dns.get("Search"), "DnsOptions": dns.get("Options")}
        )
    ports = [p for p in (task.get("Endpoint") or {}).get("Ports") or [] if p.get("PublishMode") == "host"]
    if ports:
        hc["PortBindings"] = {
            f"{p['TargetPort']}/{p.get('Protocol') or 'tcp'}": [
                {"HostPort": str(p.get("PublishedPort") or "")}
            ]
            for p in ports
        }
    body: dict[str, Any] = {
        "Image": cs["Image"], "Entrypoint": cs.get("Command") or None, "Cmd": cs.get("Args") or None,
        "Env": cs.get("Env"), "Labels": labels, "WorkingDir": cs.get("Dir") or "", "User": cs.get("User") or "",
        "Hostname": cs.get("Hostname") or "", "Tty": bool(cs.get("TTY")), "OpenStdin": bool(cs.get("OpenStdin")),
        "HostConfig": {k: v for k, v in hc.items() if v not in (None, [], {})},
    }  # fmt: skip
    if ports:
        body["ExposedPorts"] = {k: {} for k in hc["PortBindings"]}
    if networking:
        body["NetworkingConfig"] = networking
    if cs.get("StopSignal"):
        body["StopSignal"] = cs["StopSignal"]
    if cs.get("StopGracePeriod") is not None:
        body["StopTimeout"] = int(cs["StopGracePeriod"]) // 1_000_000_000
    if cs.get("Healthcheck"):
        body["Healthcheck"] = cs["Healthcheck"]
    return body, name
