"""daemon.json reloaded on SIGHUP: owns which keys a running daemon takes over, and the
`reload` event.

As dockerd, only some keys change a running daemon: `log-level` (the root logger's level),
`log-driver`/`log-opts` (the defaults of containers created from now on), `labels` (/info),
and the registry settings `insecure-registries`, `registry-mirrors`, `allowed-registries`
(pulls and pushes started from now on). Everything else in the file (data-root, bridge,
hosts, ...) needs a restart and is left as it is. The file is checked whole before anything
is applied: a file that does not parse, or a key that is refused (an unknown log driver, a
bad label), keeps every old setting, and the daemon logs why. A key present in the file wins
over the command line's flag of the same setting; `--log-level` stays when the file names
none.
"""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

from aiohttp import web

from dockyard import errdefs
from dockyard.api import keys
from dockyard.containers import logconfig
from dockyard.daemon.config import DaemonConfig, apply_file
from dockyard.images.registries import RegistrySettings

log = logging.getLogger(__name__)


def python_level(level: str) -> str:
    return {"warn": "WARNING", "fatal": "CRITICAL"}.get(level, level.upper())


def reload(cfg: DaemonConfig, app: web.Application) -> bool:
    """Re-read cfg.config_file and apply its reloadable keys; False (old settings kept,
    the reason logged) when the file is refused."""
    path = cfg.config_file
    new = DaemonConfig()
    try:
        if path is None or not path.exists():
            data: dict[str, Any] = {}
        else:
            loaded = json.loads(path.read_text())
            if not isinstance(loaded, dict):
                raise TypeError("the file must hold a JSON object")
            data = loaded
        apply_file(new, data)
        log_defaults = logconfig.normalize({"Type": new.log_driver, "Config": new.log_opts})
    except (OSError, ValueError, TypeError, KeyError, errdefs.DockyardError) as err:
        log.error("reload of %s refused, the current settings stay: %s", path, err)
        return False
    cfg.log_level = new.log_level if "log-level" in data else (cfg.flag_log_level or "info")
    logging.getLogger().setLevel(python_level(cfg.log_level))
    cfg.log_driver, cfg.log_opts = new.log_driver, new.log_opts
    app[keys.CONTAINERS].log_defaults = log_defaults
    cfg.labels = new.labels
    cfg.insecure_registries = new.insecure_registries
    cfg.registry_mirrors = new.registry_mirrors
    cfg.allowed_registries = new.allowed_registries
    dist = app.get(keys.DISTRIBUTION)
    if dist is not None:
        dist.settings = RegistrySettings(
            tuple(new.insecure_registries), tuple(new.registry_mirrors), tuple(new.allowed_registries),
            dist.settings.certs_dir,
        )
    attrs = {
        "debug": str(cfg.log_level == "debug").lower(),
        "labels": json.dumps(cfg.labels),
        "insecure-registries": json.dumps(cfg.insecure_registries),
        "registry-mirrors": json.dumps(cfg.registry_mirrors),
        "allowed-registries": json.dumps(cfg.allowed_registries),
        "log-driver": cfg.log_driver,
        "log-opts": json.dumps(cfg.log_opts, sort_keys=True),
        "name": socket.gethostname(),
    }
    app[keys.EVENTS].publish("daemon", "reload", app[keys.SYSTEM].daemon_id(), attrs)
    log.info("reloaded %s: log level %s, %d labels, log driver %s", path, cfg.log_level, len(cfg.labels), cfg.log_driver)
    return True
