"""One module per Docker API object group."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.api.app import Routes

__all__ = ["all_tables"]


def all_tables() -> list[Routes]:
    """Every route table the daemon serves (daemon/wiring.py installs each one as its
    service exists); the OpenAPI document and the fuzz test enumerate them from here."""
    from dockyard.api.routes import (
        absent,
        attach_ws,
        build,
        checkpoints,
        container_fs,
        containers,
        distribution,
        exec,
        images,
        links,
        move,
        networks,
        plugins,
        services,
        swarm,
        system,
        volumes,
    )

    modules = (system, images, containers, exec, container_fs, volumes, networks, plugins, absent, links,
               attach_ws, distribution, build, checkpoints, move, swarm, services)  # fmt: skip
    return [m.routes for m in modules]
