"""Builds the object graph: store, event bus, services, and the aiohttp app over them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from dockyard.api import keys, progress, versions
from dockyard.api.app import create_app
from dockyard.api.routes import absent as absent_routes
from dockyard.api.routes import attach_ws, container_fs
from dockyard.api.routes import build as build_routes
from dockyard.api.routes import checkpoints as checkpoint_routes
from dockyard.api.routes import containers as container_routes
from dockyard.api.routes import distribution as distribution_routes
from dockyard.api.routes import exec as exec_routes
from dockyard.api.routes import images as image_routes
from dockyard.api.routes import links as link_routes
from dockyard.api.routes import move as move_routes
from dockyard.api.routes import networks as network_routes
from dockyard.api.routes import plugins as plugin_routes
from dockyard.api.routes import services as service_routes
from dockyard.api.routes import swarm as swarm_routes
from dockyard.api.routes import system as system_routes
from dockyard.api.routes import volumes as volume_routes
from dockyard.build.service import BuildService
from dockyard.client import Client
from dockyard.cluster.services import ServiceManager
from dockyard.cluster.swarm import SwarmService
from dockyard.containers.checkpoint import CheckpointService
from dockyard.containers.exec import ExecService
from dockyard.containers.health import HealthMonitor
from dockyard.containers.movejournal import MoveJournal
from dockyard.containers.service import ContainerService
from dockyard.containers.transfer import TransferService
from dockyard.daemon.config import DaemonConfig
from dockyard.events import EventBus
from dockyard.images.registries import DistributionService, RegistrySettings
from dockyard.images.service import ImageService
from dockyard.network.service import NetworkService
from dockyard.store import Store
from dockyard.system.service import SystemService
from dockyard.volumes import VolumeService


@dataclass
class Graph:
    app: web.Application
    store: Store
    containers: ContainerService
    networks: NetworkService | None = None
    execs: ExecService | None = None
    builds: BuildService | None = None
    swarm: SwarmService | None = None
    moves: MoveJournal | None = None

    async def start(self) -> None:
        if self.networks is not None:
            await self.networks.start()  # bridges and rules before containers are adopted
        await self.containers.reconcile()
        if self.execs is not None:
            await self.execs.reconcile()
        await self.containers.supervise()  # restart policies and healthchecks, once all is adopted
        if self.moves is not None:
            self.moves.start_recovery()  # moves the previous daemon left half done
        if self.builds is not None:
            await self.builds.recover()
        if self.swarm is not None:
            await self.swarm.start()  # after containers are adopted: the agent converges them

    async def stop(self) -> None:
        if self.swarm is not None:
            await self.swarm.close()
        if self.moves is not None:
            await self.moves.close()
        if self.containers.health is not None:
            await self.containers.health.close()  # no probe may outlive us unwatched
        if self.execs is not None:
            await self.execs.close()
        await self.containers.close()
        if self.networks is not None:
            await self.networks.close()
        self.store.close()



@dataclass(frozen=True)
class RenderedPulls:
    """The distribution service as the builder takes it: the builder streams Docker's
    messages, so its pull events go through the API layer's renderer."""

    distribution: DistributionService

    def pull_for_build(self, image: str, registry_config: str | None) -> AsyncIterator[Mapping[str, Any]]:
        return progress.messages(self.distribution.pull_for_build(image, registry_config))

def build(cfg: DaemonConfig) -> Graph:
    store = Store(cfg.data_root / "db.sqlite")
    events = EventBus()
    remap = cfg.id_mapping  # `--userns-remap`: files the containers see as root's are the range base's
    images = ImageService(store, cfg.data_root, events, remap)
    volumes = VolumeService(store, cfg.data_root / "volumes", events, remap.root_pair if remap else None)
    containers = ContainerService(store, images, events, cfg, volumes)
    networks = NetworkService(store, events, cfg)
    containers.networks = networks
    networks.bind_containers(containers)
    images.set_usage_check(containers.ids_using_image)
    images.set_running_check(containers.running_ids_using_image)
    execs = ExecService(containers, cfg.exec_root / "execs")
    containers.health = HealthMonitor(execs.probe, containers.record_health)
    system = SystemService(cfg, images, containers, volumes)
    app = create_app(
        {keys.EVENTS: events, keys.IMAGES: images, keys.CONTAINERS: containers, keys.EXECS: execs, keys.SYSTEM: system,
         keys.VOLUMES: volumes, keys.NETWORKS: networks},
        [system_routes.routes, image_routes.routes, container_routes.routes, exec_routes.routes, container_fs.routes,
         volume_routes.routes, network_routes.routes, plugin_routes.routes, absent_routes.routes,
         link_routes.routes, attach_ws.routes],
    )
    settings = RegistrySettings(
        tuple(cfg.insecure_registries), tuple(cfg.registry_mirrors), tuple(cfg.allowed_registries),
        cfg.registry_certs_dir,
    )
    distribution = app[keys.DISTRIBUTION] = DistributionService(images.store, settings)
    distribution_routes.routes.install(app)
    builds = app[keys.BUILDS] = system.builds = BuildService(
        store, images, containers, cfg.data_root,
        RenderedPulls(distribution),
    )
    build_routes.routes.install(app)
    app[keys.CHECKPOINTS] = CheckpointService(containers)
    checkpoint_routes.routes.install(app)
    app[keys.TRANSFERS] = TransferService(containers, images, volumes, cfg.data_root / "tmp")
    moves = app[keys.MOVES] = MoveJournal(containers, _ask_move_target)
    move_routes.routes.install(app)
    swarm = app[keys.SWARM] = SwarmService(cfg, versions.ENGINE_VERSION, containers, events, networks)
    app[keys.CLUSTER] = ServiceManager(swarm)
    swarm_routes.routes.install(app)
    service_routes.routes.install(app)
    return Graph(app, store, containers, networks, execs, builds, swarm, moves)


def _ask_move_target(address: str, move_id: str) -> str:
    """Blocking: the target's decision on a move this daemon was the source of (the
    target's address as the CLI gave it; a TLS target needs the daemon's DOCKER_CERT_PATH)."""
    answer = Client(address).post_json("/dockyard/moves/{0}/abort", move_id, body={})
    return str(answer["Outcome"])
