"""Daemon configuration: command-line flags merged over daemon.json (Docker's key names)."""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.idmap import IdentityMapping

DEFAULT_HOST = "unix:///run/dockyard.sock"
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
STOCK_RUNTIME = "runc"  # always known, found on PATH unless `runtimes` names its path


@dataclass
class DaemonConfig:
    hosts: list[str] = field(default_factory=lambda: [DEFAULT_HOST])
    data_root: Path = Path("/var/lib/dockyard")
    exec_root: Path = Path("/run/dockyard")
    pidfile: Path | None = None
    log_level: str = "info"
    default_runtime: str = "runc"
    runtimes: dict[str, str] = field(default_factory=dict)  # name -> binary path
    conmon: str = "conmon"
    # CRIU for checkpoint/restore; empty: /usr/local/sbin/criu (scripts/install-criu.sh), else PATH
    criu: str = ""
    init_path: str = "tini-static"
    tlscacert: str | None = None
    tlscert: str | None = None
    tlskey: str | None = None
    tls: bool | None = None  # None: not given (dockerd's rules in daemon/listeners.py)
    tlsverify: bool | None = None
    insecure_registries: list[str] = field(default_factory=list)  # hosts or CIDRs: plain HTTP
    registry_mirrors: list[str] = field(default_factory=list)  # endpoints tried first for docker.io
    allowed_registries: list[str] = field(default_factory=list)  # host globs we may contact; empty: any
    registry_certs_dir: str = "/etc/dockyard/certs.d"  # <host[:port]>/ca.crt per TLS registry
    # networking: the default bridge's device, its address, allocation range, and pools
    bridge_name: str = "dockyard0"
    bip: str | None = None
    fixed_cidr: str | None = None
    default_address_pools: list[dict[str, object]] = field(default_factory=list)
    mtu: int = 1500
    dns: list[str] = field(default_factory=list)  # `--dns`: containers' resolvers, and the embedded one's upstream
    no_new_privileges: bool = False  # `--no-new-privileges`: every container's default
    # `--userns-remap`: "" (off), "default", "user", "user:group", "uid" or "uid:gid"; at
    # startup it resolves to `id_mapping` and data_root moves to `<data-root>/<uid>.<gid>`
    userns_remap: str = ""
    id_mapping: IdentityMapping | None = None
    # containers' log driver and options when their create request names no driver
    log_driver: str = "json-file"
    log_opts: dict[str, str] = field(default_factory=dict)
    # overlay networks: the etcd holding them and their peer tables ("etcd://host:port"), and
    # this node's underlay address (the VXLAN source; default: the one that reaches the store)
    cluster_store: str = ""
    cluster_advertise: str = ""
    # daemon.json "labels" ("key=value"): /info's Labels and swarm placement (engine labels);
    # reloaded on SIGHUP (daemon/reload.py)
    labels: list[str] = field(default_factory=list)
    config_file: Path | None = None  # the daemon.json SIGHUP re-reads
    flag_log_level: str | None = None  # `--log-level`: kept by a reload whose file names none
    # swarm mode: an external etcd cluster's client URLs (and TLS files) to use instead of
    # starting a member at `swarm init` (decisions/cluster.md)
    swarm_store: list[str] = field(default_factory=list)
    swarm_store_tls: dict[str, str] = field(default_factory=dict)  # cacert, cert, key

    def runtime_names(self) -> list[str]:
        """The runtimes a container may name: the stock `runc` and the configured ones."""
        return sorted({STOCK_RUNTIME, *self.runtimes})

    def runtime_path(self, name: str | None) -> str:
        """The binary of a configured runtime. Only configured names resolve: a name is
        never looked up on PATH by itself, or `HostConfig.Runtime: "sh"` would run a shell
        as the OCI runtime (dockerd resolves only its `runtimes` table, too)."""
        from dockyard.errdefs import InvalidArgument

        name = name or self.default_runtime
        path = self.runtimes.get(name)
        if path is None and name == STOCK_RUNTIME:
            path = shutil.which(STOCK_RUNTIME)
        if not path:
            raise InvalidArgument(f"unknown or invalid runtime name: {name}")
        return path


def parse_args(argv: list[str] | None = None) -> DaemonConfig:
    p = argparse.ArgumentParser(prog="dockyardd", description="Dockyard container engine daemon")
    p.add_argument("-H", "--host", action="append", dest="hosts", help="socket to listen on (repeatable)")
    p.add_argument("--data-root", help="root of persistent state (default /var/lib/dockyard)")
    p.add_argument("--exec-root", help="root of runtime state (default /run/dockyard)")
    p.add_argument("--config-file", default=None, help="daemon.json (default /etc/dockyard/daemon.json)")
    p.add_argument("--runtime", "--default-runtime", dest="default_runtime", help="default OCI runtime")
    p.add_argument("--add-runtime", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--log-level", "-l", choices=LOG_LEVELS)
    p.add_argument("--pidfile", "-p")
    p.add_argument("--tlscacert")
    p.add_argument("--tlscert")
    p.add_argument("--tlskey")
    # `--tls`, `--tls=false`, `--tlsverify`, `--tlsverify=false`, as dockerd's booleans
    p.add_argument("--tls", nargs="?", const=True, type=_flag_bool, default=None, metavar="BOOL")
    p.add_argument("--tlsverify", nargs="?", const=True, type=_flag_bool, default=None, metavar="BOOL")
    p.add_argument("-b", "--bridge", "--bridge-name", dest="bridge_name", help="device of the default bridge")
    p.add_argument("--bip", help="address (CIDR) of the default bridge")
    p.add_argument("--fixed-cidr", help="allocation range of the default bridge")
    p.add_argument("--default-address-pool", action="append", default=[], metavar="base=CIDR,size=N")
    p.add_argument("--mtu", type=int)
    p.add_argument("--dns", action="append", default=[], help="DNS server for containers (repeatable)")
    p.add_argument("--no-new-privileges", action="store_true", default=None, help="set no-new-privileges on new containers")
    p.add_argument("--userns-remap", help="user/group for user namespaces (default, user[:group], uid[:gid])")
    p.add_argument("--cluster-store", help="etcd of the overlay networks (etcd://host:port)")
    p.add_argument("--cluster-advertise", help="this node's underlay address for overlay networks")
    args = p.parse_args(argv)

    cfg = DaemonConfig()
    cfg_path = Path(args.config_file or "/etc/dockyard/daemon.json")
    cfg.config_file = cfg_path
    if cfg_path.exists():
        try:
            data = json.loads(cfg_path.read_text())
            if not isinstance(data, dict):
                raise TypeError("the file must hold a JSON object")
            _apply_file(cfg, data)
        except (ValueError, TypeError, KeyError) as err:  # dockerd's wording, and its exit code
            p.exit(1, f"unable to configure the daemon with file {cfg_path}: {err}\n")
    elif args.config_file:
        p.error(f"config file {cfg_path} does not exist")
    if args.hosts:
        cfg.hosts = args.hosts
    if args.data_root:
        cfg.data_root = Path(args.data_root)
    if args.exec_root:
        cfg.exec_root = Path(args.exec_root)
    if args.default_runtime:
        cfg.default_runtime = args.default_runtime
    for item in args.add_runtime:
        name, _, path = item.partition("=")
        cfg.runtimes[name] = path
    if args.log_level:
        cfg.log_level = cfg.flag_log_level = args.log_level
    if args.pidfile:
        cfg.pidfile = Path(args.pidfile)
    for key in ("bridge_name", "bip", "fixed_cidr", "mtu", "cluster_store", "cluster_advertise"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    if args.dns:
        cfg.dns = list(args.dns)
    if args.userns_remap is not None:
        cfg.userns_remap = args.userns_remap
    for item in args.default_address_pool:
        kv = dict(part.split("=", 1) for part in item.split(","))
        cfg.default_address_pools.append({"base": kv["base"], "size": int(kv["size"])})
    if args.no_new_privileges:
        cfg.no_new_privileges = True
    for key in ("tlscacert", "tlscert", "tlskey", "tls", "tlsverify"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    if cfg.default_runtime not in cfg.runtime_names():  # dockerd's check and wording
        p.exit(1, f"dockyardd: specified default runtime '{cfg.default_runtime}' does not exist\n")
    return cfg


def _flag_bool(value: str) -> bool:
    low = value.lower()
    if low in ("1", "t", "true"):
        return True
    if low in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {value!r}")


def _strings(data: dict[str, object], key: str) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise TypeError(f'"{key}" must be a list of strings')
    return value


def apply_file(cfg: DaemonConfig, data: dict[str, object]) -> None:
    """daemon.json's settings onto cfg (at start, and by a SIGHUP reload on a fresh one)."""
    _apply_file(cfg, data)


def _apply_file(cfg: DaemonConfig, data: dict[str, object]) -> None:
    """daemon.json uses Docker's key names."""
    if "hosts" in data:
        cfg.hosts = _strings(data, "hosts")
    if "data-root" in data:
        cfg.data_root = Path(str(data["data-root"]))
    if "exec-root" in data:
        cfg.exec_root = Path(str(data["exec-root"]))
    if "pidfile" in data:
        cfg.pidfile = Path(str(data["pidfile"]))
    if "log-level" in data:
        if data["log-level"] not in LOG_LEVELS:
            raise ValueError(f"invalid log level: {data['log-level']}")
        cfg.log_level = str(data["log-level"])
    if "labels" in data:
        cfg.labels = _strings(data, "labels")
        for label in cfg.labels:
            if "=" not in label or not label.split("=", 1)[0]:
                raise ValueError(f"bad attribute format: {label}")  # dockerd's wording
    if "criu-path" in data:
        cfg.criu = str(data["criu-path"])
    if "default-runtime" in data:
        cfg.default_runtime = str(data["default-runtime"])
    cfg.insecure_registries = _strings(data, "insecure-registries")
    cfg.registry_mirrors = _strings(data, "registry-mirrors")
    cfg.allowed_registries = _strings(data, "allowed-registries")
    cfg.registry_certs_dir = str(data.get("registry-certs-dir") or cfg.registry_certs_dir)
    runtimes = data.get("runtimes") or {}
    if not isinstance(runtimes, dict):
        raise TypeError('"runtimes" must be an object of {"name": {"path": ...}}')
    for name, spec in runtimes.items():
        cfg.runtimes[name] = str(spec["path"]) if isinstance(spec, dict) else str(spec)
    if "bridge" in data:
        cfg.bridge_name = str(data["bridge"])
    for key in ("bip", "fixed-cidr"):
        if key in data:
            setattr(cfg, key.replace("-", "_"), str(data[key]))
    for key in ("cluster-store", "cluster-advertise"):
        if key in data:
            if not isinstance(data[key], str):
                raise TypeError(f'"{key}" must be a string')
            setattr(cfg, key.replace("-", "_"), data[key])
    if "mtu" in data:
        cfg.mtu = int(str(data["mtu"]))
    if "dns" in data:
        cfg.dns = _strings(data, "dns")
    if "userns-remap" in data:
        if not isinstance(data["userns-remap"], str):
            raise TypeError('"userns-remap" must be a string')
        cfg.userns_remap = data["userns-remap"]
    if "log-driver" in data:
        cfg.log_driver = str(data["log-driver"])
    if "log-opts" in data:
        opts = data["log-opts"]
        if not isinstance(opts, dict):
            raise TypeError('"log-opts" must be an object of strings')
        cfg.log_opts = {str(k): str(v) for k, v in opts.items()}
    if "default-address-pools" in data:
        pools = data["default-address-pools"]
        if not isinstance(pools, list) or not all(isinstance(x, dict) for x in pools):
            raise TypeError('"default-address-pools" must be a list of {"base": ..., "size": ...}')
        cfg.default_address_pools = pools
    if "labels" in data:
        cfg.labels = _strings(data, "labels")
    if "swarm-store" in data:
        cfg.swarm_store = _strings(data, "swarm-store")
    if "swarm-store-tls" in data:
        tls = data["swarm-store-tls"]
        if not isinstance(tls, dict) or not set(tls) <= {"cacert", "cert", "key"}:
            raise TypeError('"swarm-store-tls" must be an object of cacert, cert and key paths')
        cfg.swarm_store_tls = {str(k): str(v) for k, v in tls.items()}
    if "no-new-privileges" in data:
        if not isinstance(data["no-new-privileges"], bool):
            raise TypeError('"no-new-privileges" must be true or false')
        cfg.no_new_privileges = data["no-new-privileges"]
    for key in ("tlscacert", "tlscert", "tlskey"):
        if key in data:
            if not isinstance(data[key], str):
                raise TypeError(f'"{key}" must be a string')
            setattr(cfg, key, data[key])
    for key in ("tls", "tlsverify"):
        if key in data:
            if not isinstance(data[key], bool):
                raise TypeError(f'"{key}" must be true or false')
            setattr(cfg, key, data[key])
