"""Daemon configuration: command-line flags merged over daemon.json (Docker's key names)."""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOST = "unix:///run/dockyard.sock"


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
    init_path: str = "tini-static"
    tlscacert: str | None = None
    tlscert: str | None = None
    tlskey: str | None = None
    tlsverify: bool = False
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
    # containers' log driver and options when their create request names no driver
    log_driver: str = "json-file"
    log_opts: dict[str, str] = field(default_factory=dict)

    def runtime_path(self, name: str | None) -> str:
        name = name or self.default_runtime
        path = self.runtimes.get(name) or shutil.which(name)
        if not path:
            from dockyard.errdefs import InvalidArgument

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
    p.add_argument("--log-level", "-l", choices=["debug", "info", "warn", "error", "fatal"])
    p.add_argument("--pidfile", "-p")
    p.add_argument("--tlscacert")
    p.add_argument("--tlscert")
    p.add_argument("--tlskey")
    p.add_argument("--tlsverify", action="store_true", default=None)
    p.add_argument("-b", "--bridge", "--bridge-name", dest="bridge_name", help="device of the default bridge")
    p.add_argument("--bip", help="address (CIDR) of the default bridge")
    p.add_argument("--fixed-cidr", help="allocation range of the default bridge")
    p.add_argument("--default-address-pool", action="append", default=[], metavar="base=CIDR,size=N")
    p.add_argument("--mtu", type=int)
    p.add_argument("--dns", action="append", default=[], help="DNS server for containers (repeatable)")
    args = p.parse_args(argv)

    cfg = DaemonConfig()
    cfg_path = Path(args.config_file or "/etc/dockyard/daemon.json")
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
        cfg.log_level = args.log_level
    if args.pidfile:
        cfg.pidfile = Path(args.pidfile)
    for key in ("bridge_name", "bip", "fixed_cidr", "mtu"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    if args.dns:
        cfg.dns = list(args.dns)
    for item in args.default_address_pool:
        kv = dict(part.split("=", 1) for part in item.split(","))
        cfg.default_address_pools.append({"base": kv["base"], "size": int(kv["size"])})
    for key in ("tlscacert", "tlscert", "tlskey", "tlsverify"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    return cfg


def _strings(data: dict[str, object], key: str) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise TypeError(f'"{key}" must be a list of strings')
    return value


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
        cfg.log_level = str(data["log-level"])
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
    if "mtu" in data:
        cfg.mtu = int(str(data["mtu"]))
    if "dns" in data:
        cfg.dns = _strings(data, "dns")
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
    for key in ("tlscacert", "tlscert", "tlskey", "tlsverify"):
        if key in data:
            setattr(cfg, key, data[key])
