"""Typed application keys under which the daemon's wiring places each service."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dockyard.build.service import BuildService
from dockyard.events import EventBus

EVENTS = web.AppKey("events", EventBus)
IMAGES: web.AppKey[Any] = web.AppKey("images")  # dockyard.images.service.ImageService
CONTAINERS: web.AppKey[Any] = web.AppKey("containers")  # dockyard.containers.service.ContainerService
SYSTEM: web.AppKey[Any] = web.AppKey("system")  # dockyard.daemon.wiring.SystemInfo
EXECS: web.AppKey[Any] = web.AppKey("execs")  # dockyard.containers.exec.ExecService
DISTRIBUTION: web.AppKey[Any] = web.AppKey("distribution")  # dockyard.images.registries.DistributionService
VOLUMES: web.AppKey[Any] = web.AppKey("volumes")  # dockyard.volumes.service.VolumeService
NETWORKS: web.AppKey[Any] = web.AppKey("networks")  # dockyard.network.service.NetworkService
BUILDS = web.AppKey("builds", BuildService)
CHECKPOINTS: web.AppKey[Any] = web.AppKey("checkpoints")  # dockyard.containers.checkpoint.CheckpointService
TRANSFERS: web.AppKey[Any] = web.AppKey("transfers")  # dockyard.containers.transfer.TransferService
SWARM: web.AppKey[Any] = web.AppKey("swarm")  # dockyard.cluster.swarm.SwarmService
CLUSTER: web.AppKey[Any] = web.AppKey("cluster")  # dockyard.cluster.services.ServiceManager
MOVES: web.AppKey[Any] = web.AppKey("moves")  # dockyard.containers.movejournal.MoveJournal
