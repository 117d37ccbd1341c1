"""Builds the object graph: store, event bus, services, and the aiohttp app over them."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from dockyard.api import keys, versions
from dockyard.api.app import create_app
from dockyard.api.routes import build as build_routes
from dockyard.api.routes import container_fs
from dockyard.api.routes import containers as container_routes
from dockyard.api.routes import distribution as distribution_routes
from dockyard.api.routes import exec as exec_routes
from dockyard.api.routes import images as image_routes
from dockyard.api.routes import networks as network_routes
from dockyard.api.routes import services as service_routes
from dockyard.api.routes import swarm as swarm_routes
from dockyard.api.routes import system as system_routes
from dockyard.api.routes import volumes as volume_routes
from dockyard.build.service import BuildService
from dockyard.cluster.services import ServiceManager
from dockyard.cluster.swarm import SwarmService
from dockyard.containers.exec import ExecService
from dockyard.containers.service import ContainerService
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

    async def start(self) -> None:
        if self.networks is not None:
            await self.networks.start()  # bridges and rules before containers are adopted
        await self.containers.reconcile()
        if self.execs is not None:
            await self.execs.reconcile()
        if self.builds is not None:
            await self.builds.recover()
        if self.swarm is not None:
            await self.swarm.start()  # after containers are adopted: the agent converges them

    async def stop(self) -> None:
        if self.swarm is not None:
            await self.swarm.close()
        if self.execs is not None:
            await self.execs.close()
        await self.containers.close()
        if self.networks is not None:
            await self.networks.close()
        self.store.close()


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
    system = SystemService(cfg, images, containers, volumes)
    app = create_app(
        {keys.EVENTS: events, keys.IMAGES: images, keys.CONTAINERS: containers, keys.EXECS: execs, keys.SYSTEM: system,
         keys.VOLUMES: volumes, keys.NETWORKS: networks},
        [system_routes.routes, image_routes.routes, container_routes.routes, exec_routes.routes, container_fs.routes,
         volume_routes.routes, network_routes.routes],
    )
    settings = RegistrySettings(
        tuple(cfg.insecure_registries), tuple(cfg.registry_mirrors), tuple(cfg.allowed_registries),
        cfg.registry_certs_dir,
    )
    distribution = app[keys.DISTRIBUTION] = DistributionService(images, settings)
    distribution_routes.routes.install(app)
    builds = app[keys.BUILDS] = system.builds = BuildService(
        store, images, containers, cfg.data_root, distribution.pull_for_build
    )
    build_routes.routes.install(app)
    swarm = app[keys.SWARM] = SwarmService(cfg, versions.ENGINE_VERSION, containers, events, networks)
    app[keys.CLUSTER] = ServiceManager(swarm)
    swarm_routes.routes.install(app)
    service_routes.routes.install(app)
    return Graph(app, store, containers, networks, execs, builds, swarm)
