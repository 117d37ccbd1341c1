"""ContainerService: the lifecycle of containers (create, start, stop, kill, pause, wait,
remove, rename, update), exit handling, and reconcile after a daemon restart.

Each operation reloads the record, checks the state guard, acts, and persists, under the
container's own lock. conmon owns each running container's stdio, log and exit code;
the daemon notices an exit through a pidfd on conmon and then finishes the bookkeeping
(runtime delete, unmount, record, events, waiters, auto-remove). Nothing about a
container lives only in memory: after a restart, `start()` adopts every container.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import shutil
import signal as signals
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from dockyard import errdefs
from dockyard._sys import mount as sysmount
from dockyard._sys.fs import write_atomic
from dockyard._sys.netns import pin_new_netns, set_loopback_up, unpin_netns
from dockyard.containers import checkpoint as checkpoints
from dockyard.containers import health as healthcheck
from dockyard.containers import hostconfig, links, logconfig, movejournal, names, state, subpaths
from dockyard.containers import mounts as mountplan
from dockyard.containers import security as secopts
from dockyard.containers.attach import AttachConnection
from dockyard.containers.files import hosts_file, make_workdir, resolve_user, write_container_files
from dockyard.containers.health import HealthMonitor, Settings
from dockyard.containers.logrotate import LogRotator
from dockyard.containers.model import (
    DEFAULT_PATH,
    ZERO_TIME,
    _validate_host_config,
    build_record,
    inspect_view,
    new_id,
)
from dockyard.containers.restart import Policy, Supervisor
from dockyard.events import EventBus
from dockyard.filters import labels_match
from dockyard.idmap import IdentityMapping
from dockyard.images.reference import familiar as familiar_ref
from dockyard.runtime import spec as ocispec
from dockyard.runtime.monitor import Conmon, Restore
from dockyard.runtime.oci import OCIRuntime, RuntimeFailed, bounding_capabilities
from dockyard.store import Store
from dockyard.timefmt import now_rfc3339, parse_rfc3339, parse_time_param
from dockyard.volumes import VolumeService

log = logging.getLogger(__name__)

Record = dict[str, Any]


class ContainerNotFound(errdefs.NotFound):
    pass


def parse_signal(sig: str | int | None, default: int = signals.SIGKILL) -> int:
    if sig is None or sig == "":
        return default
    if isinstance(sig, int) or str(sig).isdigit():
        n = int(sig)
        if n <= 0 or n > 64:
            raise errdefs.InvalidArgument(f"Invalid signal: {sig}")
        return n
    name = str(sig).upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signals.Signals[name])
    except KeyError:
        raise errdefs.InvalidArgument(f"Invalid signal: {sig}") from None


class ContainerService:
    def __init__(
        self, store: Store, images: Any, events: EventBus, cfg: Any, volumes: VolumeService | None = None
    ) -> None:
        self.store = store
        self.images = images
        self.events = events
        self.cfg = cfg
        self.networks: Any = None  # dockyard.network.service.NetworkService, set by the daemon wiring
        # volumes refer back to us for "in use" (409) and `dangling`
        self.volumes = volumes or VolumeService(store, cfg.data_root / "volumes", events)
        self.volumes.set_usage_check(self.ids_using_volume)
        self.root: Path = cfg.data_root / "containers"
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)  # rootfs mounts: private
        self.conmon = Conmon(cfg.conmon, cfg.exec_root / "exits", cfg.exec_root / "sock")
        self._runtime_root = cfg.exec_root / "runtime"
        # daemon.json's log-driver and log-opts: refused at daemon start when not honoured
        self.log_defaults = logconfig.normalize(
            {"Type": getattr(cfg, "log_driver", ""), "Config": getattr(cfg, "log_opts", None)}
        )
        self._locks: dict[str, asyncio.Lock] = {}
        self._watched: dict[str, int] = {}  # container id -> pidfd of its conmon
        self._exit_waiters: dict[str, list[asyncio.Future[Record]]] = {}
        self._remove_waiters: dict[str, list[asyncio.Future[Record]]] = {}
        # attach sessions waiting for a start: (go: may connect now?, ready: connected)
        self._start_waiters: dict[str, list[tuple[asyncio.Future[bool], asyncio.Future[None]]]] = {}
        self._recently_removed: dict[str, tuple[float, Record]] = {}
        # ids whose start has passed the point where waiting attachers were let in, while
        # their record still says "created"
        self._attachable: set[str] = set()
        # stopped containers' root filesystems mounted for cp/export, by number of users (the
        # last one unmounts, so one request never pulls the mount from under another)
        self._temporary_mounts: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # delayed starts of containers whose restart policy asked for one
        self.supervisor = Supervisor(self._restart_now)
        # probes of containers with a healthcheck; set by the daemon wiring (needs exec)
        self.health: HealthMonitor | None = None
        # keeps the older log files of containers with max-file > 1
        self.log_rotator = LogRotator()

    # ---- wiring -------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Adopt every container: running ones keep running, exits while we were away are recorded."""
        for rec in self.store.containers.all():
            st = state.status(rec)
            if st in (state.RUNNING, state.PAUSED):
                pid = int(rec["Dockyard"].get("ConmonPid") or 0)
                if pid and _alive(pid):
                    self._watch(rec["Id"], pid)
                else:
                    await self._handle_exit(rec["Id"])  # its restart policy applies now
            elif st == state.RESTARTING:
                await self._undo_cut_start(rec)  # first: the restart below starts it afresh
                self.supervisor.schedule(rec["Id"])  # the previous daemon's pending restart
            elif st == state.REMOVING:
                # a removal cut short with the daemon: Docker's Dead, which `rm` finishes
                state.transition(rec, "remove_failed")
                self.save(rec)
                await self._undo_cut_start(rec)  # `rm -f` meant it gone: nothing of it runs on
            else:
                await self._undo_cut_start(rec)

    async def _undo_cut_start(self, rec: Record) -> None:
        """A start the previous daemon did not finish (killed between mounting the rootfs and
        recording the container running): its conmon, runc container, rootfs mount, volume
        users and endpoints are undone, so the container is cleanly not running (found by the
        crash harness, tests/crash/)."""
        cid = rec["Id"]
        conmon = _read_int(self.bundle(cid) / "conmon.pid")
        if not (sysmount.is_mounted(self._rootfs(cid)) or (conmon and _alive(conmon))):
            return
        async with self.lock(cid):  # the record as it is now (never save a stale copy over a start)
            now = self.store.containers.get(cid)
            if now is None or state.status(now) in (state.RUNNING, state.PAUSED):
                return
            log.warning("container %s: undoing a start cut short by the previous daemon", cid[:12])
            await self._cleanup_failed_start(now, self.runtime(now), True)
            if self.networks is not None:
                await self.networks.detach(now)
                self.save(now)

    async def supervise(self) -> None:
        """After every service has reconciled: probe the healthchecks of running containers,
        and start the stopped ones their restart policy brings back with the daemon
        (`always`, `unless-stopped` unless a user stopped it, `on-failure` after a failure)."""
        if self.health is not None:
            self.health.enable()
        for rec in self.store.containers.all():
            st = state.status(rec)
            if st in (state.RUNNING, state.PAUSED):
                self._rotate_logs(rec)
            if st in (state.RUNNING, state.PAUSED) and self.health is not None and rec["State"].get("Health"):
                # Docker resets an adopted container's health to starting (initHealthMonitor)
                async with self.lock(rec["Id"]):
                    current = self.get(rec["Id"])
                    healthcheck.on_start(current["State"], Settings.of(current["Config"]) is not None)
                    self.save(current)
                if st == state.RUNNING:  # a paused one is probed again once unpaused
                    self.health.watch(rec["Id"], current["Config"], current["State"])
            if st != state.EXITED:
                continue
            policy = Policy.of(rec["HostConfig"])
            if policy.should_start_on_boot(
                int(rec["State"]["ExitCode"]), bool(rec["Dockyard"].get("ManuallyStopped")), int(rec["RestartCount"])
            ):
                try:
                    async with self.lock(rec["Id"]):
                        current = self.get(rec["Id"])
                        if state.status(current) == state.EXITED:
                            await self._start_locked(current, user=True)
                except errdefs.DockyardError as err:
                    log.warning("restart of %s with the daemon failed: %s", rec["Id"][:12], err)

    async def close(self) -> None:
        """Daemon shutdown: stop watching; containers and their conmons keep running."""
        loop = asyncio.get_running_loop()
        for cid, fd in list(self._watched.items()):
            loop.remove_reader(fd)
            os.close(fd)
        self._watched.clear()
        await self.supervisor.close()
        await self.log_rotator.close()
        if self.health is not None:
            await self.health.close()
        for t in list(self._tasks):
            t.cancel()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- lookup ---------------------------------------------------------------------------

    def lock(self, cid: str) -> asyncio.Lock:
        return self._locks.setdefault(cid, asyncio.Lock())

    def resolve_id(self, ref: str) -> str:
        """Full id, name (with or without the slash) or unambiguous id prefix."""
        if not ref:
            raise ContainerNotFound("No such container: ")
        if len(ref) == 64 and self.store.containers.exists(ref):
            return ref
        by_name = self.store.containers.ids_by_name(ref if ref.startswith("/") else "/" + ref)
        if by_name:
            return by_name[0]
        matches = self.store.containers.ids_with_prefix(ref) if ref.isalnum() else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise errdefs.InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise ContainerNotFound(f"No such container: {ref}")

    def get(self, ref: str) -> Record:
        cid = self.resolve_id(ref)
        rec = self.store.containers.get(cid)
        if rec is None:
            raise ContainerNotFound(f"No such container: {ref}")
        return rec

    def save(self, rec: Record) -> None:
        self.store.containers.put(rec["Id"], rec, name=rec["Name"])

    def inspect(self, ref: str) -> Record:
        out = inspect_view(self.get(ref))
        out["GraphDriver"]["Data"] = self.images.rootfs_graph_data(out["Id"], self._rootfs(out["Id"]))
        return out

    def all(self) -> list[Record]:
        """Every record, newest first; shared read-only docs (copy before changing one)."""
        return self.store.containers.snapshot()

    def ids_using_volume(self, name: str) -> list[str]:
        return [r["Id"] for r in self.all() if any(m.get("Name") == name for m in r.get("Mounts") or [])]

    def ids_using_image(self, image_id: str) -> list[str]:
        return [r["Id"] for r in self.all() if r["Image"] == image_id]

    def running_ids_using_image(self, image_id: str) -> list[str]:
        return [r["Id"] for r in self.all() if r["Image"] == image_id and r["State"]["Running"]]

    def bundle(self, cid: str) -> Path:
        return self.root / cid

    def runtime(self, rec: Record) -> OCIRuntime:
        name = rec["HostConfig"].get("Runtime") or self.cfg.default_runtime
        return OCIRuntime(self.cfg.runtime_path(name), self._runtime_root / name)

    def _attrs(self, rec: Record, **extra: str) -> dict[str, str]:
        attrs = {"image": rec["Config"]["Image"], "name": rec["Name"].lstrip("/")}
        attrs.update({k: str(v) for k, v in (rec["Config"].get("Labels") or {}).items()})
        attrs.update(extra)
        return attrs

    def publish(self, rec: Record, action: str, **extra: str) -> None:
        self.events.publish("container", action, rec["Id"], self._attrs(rec, **extra))

    # ---- create -----------------------------------------------------------------------------

    async def create(self, body: dict[str, Any], name: str | None, platform: str | None = None) -> tuple[str, list[str]]:
        image_ref = body.get("Image") or ""
        if not image_ref:
            raise errdefs.InvalidArgument("config cannot be empty in order to create a container")
        if platform and not platform.startswith("linux"):
            raise errdefs.InvalidArgument(f"image with platform {platform} is not supported")
        if body.get("StopSignal"):
            parse_signal(body["StopSignal"])  # Docker refuses a bad one at create, not at stop
        image = self.images.resolve(image_ref)
        if platform:
            hostconfig.check_platform(image_ref, platform, image.config)
        hc = body.get("HostConfig") or {}
        self._check_userns(hc)
        if hc.get("Runtime"):
            self.cfg.runtime_path(hc["Runtime"])
        cid = new_id()
        if name:
            full_name = names.validate(name)
            self._check_name_free(full_name)
        else:
            full_name = names.generate()
            for i in range(1, 10):
                if not self.store.containers.ids_by_name(full_name):
                    break
                full_name = names.generate(i)
        cdir = self.bundle(cid)
        rec = build_record(
            cid, full_name, body, image.id, image_ref, image.config, cdir, volumes_from=self._volumes_from(hc),
            log_defaults=self.log_defaults,
        )
        mode = rec["HostConfig"]["NetworkMode"]
        if mode.startswith("container:"):
            self.get(mode.split(":", 1)[1])
        rec["Dockyard"]["Links"] = self._resolve_links(rec)
        if self.networks is not None:
            self.networks.check_create(rec, body)  # unknown network: 404 before anything is written
        warnings: list[str] = hostconfig.validate(rec["HostConfig"])  # devices, blkio, namespaces, ...
        hostconfig.check_peers(rec["HostConfig"], self.get)
        made_volumes = await self._create_volumes(rec)
        cdir.mkdir(parents=True)
        try:
            write_container_files(cdir, rec, getattr(self.cfg, "dns", None))
            if self._remap is not None:  # the container's root may edit them, as under dockerd
                for fname in ("hostname", "hosts", "resolv.conf"):
                    os.chown(cdir / fname, *self._remap.root_pair)
            self.images.prepare_rootfs(cid, image.id)
            try:
                with self.store.transaction():
                    if name:
                        self._check_name_free(full_name)
                    self.save(rec)
            except errdefs.Conflict:
                raise
            except Exception as err:  # the UNIQUE index on names closes the race
                if "UNIQUE" in str(err):
                    self._check_name_free(full_name)
                raise
        except BaseException:
            self.images.remove_rootfs(cid)
            shutil.rmtree(cdir, ignore_errors=True)
            for vol in made_volumes:
                await self.volumes.remove_if_unused(vol)
            raise
        self.publish(rec, "create")
        return cid, warnings

    @property
    def _remap(self) -> IdentityMapping | None:
        return getattr(self.cfg, "id_mapping", None)

    @property
    def id_mapping(self) -> IdentityMapping | None:
        """The daemon's `--userns-remap` mapping (None: containers' ids are the host's)."""
        return self._remap

    def _userns_private(self, rec: Record) -> bool:
        """Does this container get a user namespace? (remapped daemon, not `--userns=host`)"""
        return self._remap is not None and rec["HostConfig"].get("UsernsMode") != "host"

    def _check_userns(self, hc: dict[str, Any]) -> None:
        """dockerd's UsernsMode rules: "" or "host" only, and with remapping, the host
        namespaces that a user namespace cannot have need `--userns=host`."""
        mode = str(hc.get("UsernsMode") or "")
        if mode not in ("", "host"):
            # dockerd accepts anything and treats it as private; the CLI refuses it with
            # "--userns: invalid USER mode". We refuse it at the API, with those words.
            raise errdefs.InvalidArgument(f"invalid USER mode: {mode}: it must be \"host\" or empty")
        if self._remap is None or mode == "host":
            return
        if hc.get("Privileged"):
            raise errdefs.InvalidArgument(
                "privileged mode is incompatible with user namespaces.  "
                "You must run the container in the host namespace when running privileged mode"
            )
        if hc.get("NetworkMode") == "host":
            raise errdefs.InvalidArgument("cannot share the host's network namespace when user namespaces are enabled")
        if hc.get("PidMode") == "host":
            raise errdefs.InvalidArgument("cannot share the host PID namespace when user namespaces are enabled")

    def _volumes_from(self, hc: dict[str, Any]) -> dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]:
        """The Mounts (and private mount options) of each `--volumes-from` container."""
        out = {}
        for spec in hc.get("VolumesFrom") or []:
            ref, _ = mountplan.parse_volumes_from(str(spec))
            src = self.get(ref)
            out[ref] = (src["Mounts"], src["Dockyard"].get("MountOptions") or {})
        return out

    async def _create_volumes(self, rec: Record) -> list[str]:
        """Create the volumes the record's Mounts name (or name anonymous ones) and fill in
        their Mountpoint as Source. Returns the volumes made here, for rollback."""
        made: list[str] = []
        opts = rec["Dockyard"].get("MountOptions") or {}
        try:
            for m in rec["Mounts"]:
                if m["Type"] != "volume":
                    continue
                priv = opts.get(m["Destination"]) or {}
                if m["Name"] and self.store.volumes.get(m["Name"]) is not None:
                    vol = self.volumes.create(m["Name"], m.get("Driver"))  # existing: publishes `create`, as Docker
                else:
                    vol = self.volumes.create(
                        m["Name"] or None, m.get("Driver"), priv.get("DriverOpts"), priv.get("Labels"),
                        anonymous=not m["Name"],
                    )  # fmt: skip
                    made.append(vol["Name"])
                m["Name"], m["Source"] = vol["Name"], vol["Mountpoint"]
        except BaseException:
            for name in made:
                await self.volumes.remove_if_unused(name)
            raise
        return made

    async def _mount_volumes(self, rec: Record, rootfs: Path) -> None:
        """At start: mount volumes with driver options, and copy image content into empty new ones.
        Their `mount` events wait for `_announce_start` (dockerd's order: connect, mount, start)."""
        opts = rec["Dockyard"].get("MountOptions") or {}
        for m in rec["Mounts"]:
            if m["Type"] != "volume":
                continue
            mountpoint = await self.volumes.mount(
                m["Name"], rec["Id"], destination=m["Destination"], rw=m["RW"], propagation=m["Propagation"],
                announce=False,
            )  # fmt: skip
            if sub := (opts.get(m["Destination"]) or {}).get("Subpath"):
                staged = subpaths.staging_point(self.bundle(rec["Id"]), m["Destination"])
                await asyncio.to_thread(subpaths.stage, Path(mountpoint), sub, staged)
                continue  # a subpath is the volume's own content: nothing to copy up
            if not (opts.get(m["Destination"]) or {}).get("NoCopy"):
                await self.volumes.copy_up(m["Name"], rootfs, m["Destination"])

    async def _unmount_volumes(self, rec: Record, *, announce: bool = True) -> list[str]:
        """At stop, failed start and remove: volumes, subpath staging points, a shareable
        /dev/shm. Returns the volumes it held (for a later `unmount` event)."""
        await asyncio.to_thread(hostconfig.release, rec, self.bundle(rec["Id"]))
        opts = rec["Dockyard"].get("MountOptions") or {}
        held = []
        for m in rec["Mounts"]:
            if m["Type"] != "volume":
                continue
            if (opts.get(m["Destination"]) or {}).get("Subpath"):
                staged = subpaths.staging_point(self.bundle(rec["Id"]), m["Destination"])
                await asyncio.to_thread(subpaths.release, staged)
            if await self.volumes.unmount(m["Name"], rec["Id"], announce=announce):
                held.append(m["Name"])
        return held

    def _announce_start(self, rec: Record) -> None:
        """dockerd's events of a start, in its order: network connect, volume mount, start."""
        if self.networks is not None and rec["State"]["Pid"]:
            self.networks.announce("connect", rec)
        for m in rec["Mounts"]:
            if m["Type"] == "volume":
                self.volumes.announce_mount(
                    m["Name"], rec["Id"], destination=m["Destination"], rw=m["RW"], propagation=m["Propagation"]
                )
        self.publish(rec, "start")

    def _announce_exit(self, rec: Record, code: int, oom: bool, volumes: list[str], connected: Record) -> None:
        """dockerd's events of an exit, in its order: oom, die, network disconnect, volume unmount."""
        if oom:
            self.publish(rec, "oom")
        self.publish(rec, "die", exitCode=str(code))
        if self.networks is not None:
            self.networks.announce("disconnect", {**rec, "NetworkSettings": connected})
        for name in volumes:
            self.volumes.announce_unmount(name, rec["Id"])

    def _check_name_free(self, full_name: str) -> None:
        ids = self.store.containers.ids_by_name(full_name)
        if ids:
            raise errdefs.Conflict(
                f'Conflict. The container name "{full_name}" is already in use by container "{ids[0]}". '
                "You have to remove (or rename) that container to be able to reuse that name."
            )

    # ---- start ------------------------------------------------------------------------------

    async def start_container(self, ref: str, checkpoint: str | None = None, checkpoint_dir: str | None = None) -> None:
        """Start the container, or with `checkpoint` restore it from that checkpoint
        (containers/checkpoint.py owns where checkpoints live)."""
        cid = self.resolve_id(ref)
        try:
            async with self.lock(cid):
                rec = self.get(cid)
                state.check("start", rec)
                restore = None
                if checkpoint:
                    restore = checkpoints.restore_for(
                        rec, self.bundle(cid), checkpoint, checkpoint_dir, checkpoints.criu_binary(self.cfg.criu)
                    )
                # the commit point of a move to this daemon, recorded before anything runs
                arriving = movejournal.commit_arrival(rec, self.cfg.data_root)
                if arriving:
                    self.save(rec)
                try:
                    await self._start_locked(rec, restore, user=True)
                except BaseException:
                    if arriving:  # it did not arrive: the source may still take it back
                        movejournal.uncommit_arrival(rec)
                        self.save(rec)
                    raise
        except (errdefs.NotModified, errdefs.Conflict):
            raise
        except BaseException:
            # Docker removes an auto-remove container whose start failed; `run --rm` waits for it
            if rec["HostConfig"].get("AutoRemove"):
                await self.remove(cid, force=True)
            raise

    def _rootfs(self, cid: str) -> Path:
        return self.bundle(cid) / "rootfs"

    def _mount_rootfs(self, rec: Record) -> Path:
        rootfs = self._rootfs(rec["Id"])
        rootfs.mkdir(exist_ok=True)
        if not sysmount.is_mounted(rootfs):
            m = self.images.prepare_rootfs(rec["Id"], rec["Image"])
            sysmount.mount(m, rootfs)
        return rootfs

    def _unmount_rootfs(self, cid: str) -> None:
        sysmount.unmount(self._rootfs(cid))

    def _network_ns(self, rec: Record) -> str | None:
        mode = rec["HostConfig"]["NetworkMode"]
        if mode == "host":
            return None
        if mode.startswith("container:"):
            other = self.get(mode.split(":", 1)[1])
            if not other["State"]["Running"]:
                raise errdefs.Conflict(f"cannot join network of a non running container: {other['Id']}")
            return f"/proc/{other['State']['Pid']}/ns/net"
        return "new"

    def _build_spec(self, rec: Record, user: ocispec.ProcessUser) -> dict[str, Any]:
        cfg, hc = rec["Config"], rec["HostConfig"]
        cdir = self.bundle(rec["Id"])
        args = [rec["Path"], *rec["Args"]]
        mounts: list[ocispec.BindMount] = [
            ocispec.BindMount(str(cdir / "hostname"), "/etc/hostname"),
            ocispec.BindMount(str(cdir / "hosts"), "/etc/hosts"),
            ocispec.BindMount(str(cdir / "resolv.conf"), "/etc/resolv.conf"),
        ]
        if hc.get("Init"):
            init = shutil.which(self.cfg.init_path) or self.cfg.init_path
            mounts.append(ocispec.BindMount(init, "/sbin/docker-init", readonly=True))
            args = ["/sbin/docker-init", "--", *args]
        mount_opts = rec["Dockyard"].get("MountOptions") or {}
        for m in rec["Mounts"]:
            if m["Type"] == "bind":
                if not os.path.exists(m["Source"]):
                    os.makedirs(m["Source"], exist_ok=True)  # Docker creates missing bind sources
                prop = (m["Propagation"],) if m.get("Propagation") else ()
                mounts.append(ocispec.BindMount(m["Source"], m["Destination"], readonly=not m["RW"], options=prop))
            elif m["Type"] == "volume":
                src = m["Source"]
                if (mount_opts.get(m["Destination"]) or {}).get("Subpath"):
                    src = str(subpaths.staging_point(cdir, m["Destination"]))  # see containers/subpaths.py
                mounts.append(ocispec.BindMount(src, m["Destination"], readonly=not m["RW"]))
            elif m["Type"] == "tmpfs":
                t_opts = ("nosuid", "nodev", "noexec", *(mount_opts.get(m["Destination"]) or {}).get("TmpfsOptions", ()))
                mounts.append(ocispec.BindMount("tmpfs", m["Destination"], not m["RW"], t_opts, type="tmpfs"))
        env = list(cfg.get("Env") or [])
        if not any(e.startswith("PATH=") for e in env):
            env.insert(0, DEFAULT_PATH)  # Docker's default when neither image nor user set one
        if not any(e.startswith("HOSTNAME=") for e in env):
            env.insert(1 if env else 0, f"HOSTNAME={cfg.get('Hostname') or ''}")
        if cfg.get("Tty") and not any(e.startswith("TERM=") for e in env):
            env.append("TERM=xterm")
        security = secopts.parse(hc.get("SecurityOpt"))
        nnp = security.no_new_privileges
        masked, readonly = hc.get("MaskedPaths"), hc.get("ReadonlyPaths")
        if security.systempaths_unconfined:
            masked, readonly = [], []
        inp = ocispec.SpecInput(
            args=args,
            env=env,
            cwd=cfg.get("WorkingDir") or "/",
            user=user,
            hostname=cfg.get("Hostname") or "",
            domainname=cfg.get("Domainname") or "",
            terminal=bool(cfg.get("Tty")),
            readonly_rootfs=bool(hc.get("ReadonlyRootfs")),
            privileged=bool(hc.get("Privileged")),
            cap_add=tuple(hc.get("CapAdd") or ()),
            cap_drop=tuple(hc.get("CapDrop") or ()),
            network_ns=self._network_ns(rec),
            ipc_host=hc.get("IpcMode") == "host",
            pid_host=hc.get("PidMode") == "host",
            uts_host=hc.get("UTSMode") == "host" or hc["NetworkMode"] == "host",
            mounts=tuple(mounts),
            tmpfs=dict(hc.get("Tmpfs") or {}),
            shm_size=int(hc.get("ShmSize") or 67108864),
            sysctls=dict(hc.get("Sysctls") or {}),
            ulimits=tuple(hc.get("Ulimits") or ()),
            resources=ocispec.resources(hc),
            cgroups_path=f"/dockyard/{rec['Id']}",
            seccomp=security.seccomp != "unconfined",
            seccomp_profile=security.seccomp_profile,
            no_new_privileges=self.cfg.no_new_privileges if nnp is None else nnp,
            masked_paths=None if masked is None else tuple(masked),
            readonly_paths=None if readonly is None else tuple(readonly),
            host_caps=bounding_capabilities(),
            oom_score_adj=int(hc.get("OomScoreAdj") or 0),
            # the host's nosuid,nodev rootfs mount made suid,dev again in the container's copy
            rootfs_remount=os.path.realpath(self._rootfs(rec["Id"])) if self._remap is None else None,
        )
        spec = ocispec.build(inp)
        hostconfig.apply(spec, rec, self.get, self.bundle)
        # runc hands CRIU this file, which exists only while a live checkpoint is taken
        spec.setdefault("annotations", {})["org.criu.config"] = str(self.bundle(rec["Id"]) / checkpoints.CRIU_CONF)
        if self._userns_private(rec):
            assert self._remap is not None
            join = None
            net = inp.network_ns
            if net and net != "new":
                # joining another container's netns: share its user namespace too, as dockerd
                # does; a netns owned by one user namespace is not manageable from another
                other = self.get(hc["NetworkMode"].split(":", 1)[1])
                if self._userns_private(other):
                    join = net.removesuffix("/net") + "/user"
            ocispec.with_user_namespace(
                spec, self._remap.oci_uid_mappings(), self._remap.oci_gid_mappings(), join=join
            )
        return spec

    async def _start_locked(self, rec: Record, restore: Restore | None = None, *, user: bool) -> None:
        """Start the container's process (`restore`: from a checkpoint). `user`: a start by
        a user (or by the daemon's boot), which begins a fresh restart policy: RestartCount
        0, back-off forgotten."""
        cid = rec["Id"]
        cdir = self.bundle(cid)
        runtime = self.runtime(rec)
        created = False
        link_env, link_hosts = self._link_settings(rec)
        try:
            rootfs = await asyncio.to_thread(self._mount_rootfs, rec)
            await self._mount_volumes(rec, rootfs)
            await asyncio.to_thread(hostconfig.prepare, rec, cdir)  # a shareable /dev/shm
            if cfg_wd := rec["Config"].get("WorkingDir"):
                owner = self._remap.root_pair if self._remap is not None else None
                await asyncio.to_thread(make_workdir, rootfs, cfg_wd, owner)
            # the image's passwd/group are read off the loop (a FIFO there must not stall it)
            process_user = await asyncio.to_thread(
                resolve_user, rootfs, rec["Config"].get("User") or "", rec["HostConfig"].get("GroupAdd") or ()
            )
            spec = self._build_spec(rec, process_user)
            spec["process"]["env"] = links.merge_env(link_env, spec["process"]["env"])
            pinned = None
            if restore is not None and restore.pinned_netns and self.networks is not None:
                # the restored sockets need their address and routes in place: a namespace
                # pinned and plugged before the restore, given to runc by path
                pinned = await self._pin_netns(rec, spec)
            write_atomic(cdir / "config.json", json.dumps(spec).encode())
            logs = logconfig.plan(rec["HostConfig"].get("LogConfig") or {})
            started = await self.conmon.create(
                cid, rec["Name"].lstrip("/"), cdir, Path(rec["LogPath"]), runtime,
                terminal=bool(rec["Config"].get("Tty")),
                stdin=bool(rec["Config"].get("OpenStdin")),
                stdin_once=bool(rec["Config"].get("StdinOnce")),
                restore=restore,
                log_driver=logs.driver, log_size_max=logs.max_size,
            )  # fmt: skip
            created = True
            size = rec["HostConfig"].get("ConsoleSize") or [0, 0]
            if rec["Config"].get("Tty") and size[0] and size[1]:
                # HostConfig.ConsoleSize: the terminal has its size before the process runs
                self.conmon.resize(cdir, int(size[0]), int(size[1]))
            if pinned is not None and self.networks is not None:
                await self.networks.rebind(rec, started.pid)
            elif spec["linux"]["namespaces"] and any(
                ns == {"type": "network"} for ns in spec["linux"]["namespaces"]
            ):
                if self.networks is not None:
                    # endpoints in the created container's netns, before its process runs
                    await self.networks.attach(rec, started.pid)
                    ips = [e["IPAddress"] for e in rec["NetworkSettings"]["Networks"].values() if e.get("IPAddress")]
                    if ips or link_hosts:  # in place: the file is bind-mounted already
                        (cdir / "hosts").write_text(
                            hosts_file(rec["HostConfig"].get("ExtraHosts") or [], ips[0] if ips else "",
                                       rec["Config"].get("Hostname") or "") + "".join(link_hosts)
                        )  # fmt: skip
                else:
                    await asyncio.to_thread(set_loopback_up, started.pid)
            await self._release_attachers(cid, True)
            if restore is None:  # a restored container runs already
                await runtime.start(cid)
        except BaseException as err:
            failure = _restore_failed(err, self.bundle(cid)) if restore is not None else err
            self._attachable.discard(cid)
            await self._release_attachers(cid, False)
            await self._cleanup_failed_start(rec, runtime, created)
            if self.networks is not None:
                await self.networks.detach(rec)
            await asyncio.to_thread(self._unpin_netns, cid)
            msg = str(failure)
            rec["State"]["Error"] = msg
            rec["State"]["ExitCode"] = 127 if _is_not_found(msg) else 126 if "permission denied" in msg else 128
            self.save(rec)
            if isinstance(err, RuntimeFailed | errdefs.Internal) and (_is_not_found(msg) or "permission denied" in msg):
                raise errdefs.InvalidArgument(_runtime_message(msg)) from err
            if failure is not err:
                raise failure from err  # CRIU's words
            raise
        state.transition(
            rec, "start", OOMKilled=False, Pid=started.pid, ExitCode=0, Error="", StartedAt=now_rfc3339(),
            FinishedAt=ZERO_TIME,
        )  # fmt: skip
        healthcheck.on_start(rec["State"], Settings.of(rec["Config"]) is not None)
        rec["Dockyard"]["ConmonPid"] = started.conmon_pid
        rec["Dockyard"]["ManuallyStopped"] = False
        rec["Dockyard"]["RestartCancelled"] = False
        if user:
            rec["RestartCount"] = 0
        self.save(rec)
        self.supervisor.started(cid, reset=user)
        self._attachable.discard(cid)
        self._watch(cid, started.conmon_pid)
        self._rotate_logs(rec)
        self._announce_start(rec)
        if self.health is not None:
            self.health.watch(cid, rec["Config"], rec["State"])

    def _rotate_logs(self, rec: Record) -> None:
        plan = logconfig.plan(rec["HostConfig"].get("LogConfig") or {})
        if plan.driver == "k8s-file" and rec["LogPath"]:
            self.log_rotator.watch(rec["Id"], Path(rec["LogPath"]), plan.max_files)

    def _resolve_links(self, rec: Record) -> list[dict[str, str]]:
        """HostConfig.Links -> [{Id, Alias}]; inspect shows Docker's `/child:/parent/alias`."""
        specs = rec["HostConfig"].get("Links") or []
        if not specs:
            return []
        mode = rec["HostConfig"]["NetworkMode"]
        if mode not in ("", "default", "bridge", "host", "none") and not mode.startswith("container:"):
            # a user-defined network: the links are its endpoint's (DNS aliases, see the
            # network service), and dockerd registers no legacy link for them
            rec["HostConfig"]["Links"] = None
            return []
        if mode == "host":
            raise errdefs.InvalidArgument(
                "conflicting options: host type networking can't be used with links. This would result in undefined behavior"
            )
        out, shown = [], []
        for spec in specs:
            name, alias = links.parse(str(spec))
            try:
                child = self.get(name)
            except errdefs.NotFound as err:  # moby: a bad link is the request's fault, not a missing image
                raise errdefs.InvalidArgument(f"could not get container for {name}: {err}") from None
            out.append({"Id": child["Id"], "Alias": alias})
            shown.append(f"{child['Name']}:{rec['Name']}/{alias}")
        rec["HostConfig"]["Links"] = shown
        return out

    def _link_settings(self, rec: Record) -> tuple[list[str], list[str]]:
        """The environment and hosts lines the container's links give it at start."""
        env: list[str] = []
        hosts: list[str] = []
        own = rec["NetworkSettings"].get("Networks") or {}
        for link in rec["Dockyard"].get("Links") or []:
            child = self.store.containers.get(link["Id"])
            if child is None:
                continue  # removed since: its links went with it, as in Docker
            alias = link["Alias"]
            # 400, not a state conflict: a failed start of a `run --rm` container must remove it
            if not child["State"]["Running"]:
                raise errdefs.InvalidArgument(
                    f"Cannot link to a non running container: {child['Name']} AS {rec['Name']}/{alias}"
                )
            nets = child["NetworkSettings"].get("Networks") or {}
            shared = [n for n in own if nets.get(n, {}).get("IPAddress")]
            if not shared:
                raise errdefs.InvalidArgument(f"cannot link to {child['Name']}: it shares no network with {rec['Name']}")
            ip = nets[shared[0]]["IPAddress"]
            if shared[0] == "bridge":  # the variables are the default bridge's; user networks have DNS
                env += links.environment(alias, rec["Name"], child, ip)
            hosts.append(links.hosts_line(alias, child, ip))
        return env, hosts

    async def remove_link(self, parent: str, alias: str) -> None:
        """`DELETE /containers/{parent}/{alias}?link=1`: the parent forgets one link."""
        cid = self.resolve_id(parent)
        async with self.lock(cid):
            rec = self.get(cid)
            kept = [x for x in rec["Dockyard"].get("Links") or [] if x["Alias"] != alias]
            if len(kept) == len(rec["Dockyard"].get("Links") or []):
                raise errdefs.NotFound(f"No such container: {rec['Name']}/{alias}")
            rec["Dockyard"]["Links"] = kept
            rec["HostConfig"]["Links"] = [x for x in rec["HostConfig"].get("Links") or [] if not x.endswith(f"/{alias}")] or None
            self.save(rec)

    async def _release_attachers(self, cid: str, go: bool) -> None:
        """Attach sessions waiting for this start connect now, before the process runs,
        so they see all of its output."""
        waiters = self._start_waiters.pop(cid, [])
        if go:
            self._attachable.add(cid)  # later attachers connect directly (see open_attach)
        for go_fut, _ in waiters:
            if not go_fut.done():
                go_fut.set_result(go)
        if waiters and go:
            try:
                async with asyncio.timeout(5):
                    await asyncio.gather(*(ready for _, ready in waiters), return_exceptions=True)
            except TimeoutError:
                log.warning("attach to %s did not connect in time", cid[:12])

    async def _pin_netns(self, rec: Record, spec: dict[str, Any]) -> str:
        """A new network namespace at `<bundle>/netns`, plugged into the container's
        networks (same address and MAC as asked by its endpoint settings), and named in
        `spec` by path. It stays pinned while the container runs: runc finds it by that
        path again for a later checkpoint."""
        assert self.networks is not None
        path = str(self.bundle(rec["Id"]) / "netns")
        await asyncio.to_thread(self._unpin_netns, rec["Id"])  # one left by a crash
        await asyncio.to_thread(pin_new_netns, path)
        try:
            await self.networks.attach(rec, 0, netns_path=path)
        except BaseException:
            await asyncio.to_thread(self._unpin_netns, rec["Id"])
            raise
        spec["linux"]["namespaces"] = [
            {"type": "network", "path": path} if ns.get("type") == "network" else ns
            for ns in spec["linux"]["namespaces"]
        ]
        return path

    def _unpin_netns(self, cid: str) -> None:
        path = self.bundle(cid) / "netns"
        if os.path.lexists(path):
            unpin_netns(str(path))

    async def _cleanup_failed_start(self, rec: Record, runtime: OCIRuntime, created: bool) -> None:
        cid = rec["Id"]
        if created:
            try:
                await runtime.delete(cid)
            except errdefs.DockyardError:
                pass
            pid = _read_int(self.bundle(cid) / "conmon.pid")
            if pid and _alive(pid):
                try:
                    os.kill(pid, signals.SIGKILL)
                except ProcessLookupError:
                    pass
        await asyncio.to_thread(self._unmount_rootfs, cid)
        await self._unmount_volumes(rec, announce=False)  # its `mount` was never announced

    # ---- exits -----------------------------------------------------------------------------

    def _watch(self, cid: str, conmon_pid: int) -> None:
        if cid in self._watched:
            return
        try:
            fd = os.pidfd_open(conmon_pid)
        except ProcessLookupError:
            self._spawn(self._handle_exit(cid))
            return
        self._watched[cid] = fd
        asyncio.get_running_loop().add_reader(fd, self._on_conmon_exit, cid)

    def _on_conmon_exit(self, cid: str) -> None:
        fd = self._watched.pop(cid, None)
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)
        self._spawn(self._handle_exit(cid))

    async def _handle_exit(self, cid: str) -> None:
        async with self.lock(cid):
            rec = self.store.containers.get(cid)
            if rec is None or state.status(rec) not in (state.RUNNING, state.PAUSED):
                return
            if self.health is not None:
                self.health.unwatch(cid)
            self.log_rotator.unwatch(cid)  # conmon is gone: a last look at its log
            code = self.conmon.read_exit(cid)
            if code is None:
                code = 137  # conmon died without recording; the container went with it
            oom = (self.bundle(cid) / "oom").exists()
            try:
                await self.runtime(rec).delete(cid)
            except errdefs.DockyardError as err:
                log.debug("runtime delete %s: %s", cid[:12], err)
            connected = copy.deepcopy(rec["NetworkSettings"])  # for the `disconnect` events after `die`
            volumes: list[str] = []

            async def release_volumes() -> None:
                volumes.extend(await self._unmount_volumes(rec, announce=False))

            # The exit is recorded whatever the teardown meets: a step that fails is logged,
            # never left to stall the waiters (`run --rm`, `wait`) of a container that is gone
            teardown: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
                ("unmount the rootfs", lambda: asyncio.to_thread(self._unmount_rootfs, cid)),
                ("unmount volumes", release_volumes),
            ]
            if self.networks is not None:
                networks = self.networks
                teardown.append(("detach networks", lambda: networks.detach(rec)))
            teardown.append(("unpin the network namespace", lambda: asyncio.to_thread(self._unpin_netns, cid)))
            for what, step in teardown:
                try:
                    await step()
                except Exception:
                    log.warning("container %s exited: could not %s", cid[:12], what, exc_info=True)
            restart = Policy.of(rec["HostConfig"]).should_restart(
                code, bool(rec["Dockyard"].get("ManuallyStopped")), int(rec["RestartCount"]),
                bool(rec["Dockyard"].get("RestartCancelled")),
            )  # fmt: skip
            if restart:
                # Docker counts the restart at the exit, and shows the container restarting
                # (still Running) until the back-off has passed
                rec["RestartCount"] = int(rec["RestartCount"]) + 1
            state.transition(
                rec, "schedule_restart" if restart else "exit", Pid=0, ExitCode=code, OOMKilled=oom,
                FinishedAt=now_rfc3339(),
            )  # fmt: skip
            rec["Dockyard"]["ConmonPid"] = 0
            self.save(rec)
            self._announce_exit(rec, code, oom, volumes, connected)
            for fut in self._exit_waiters.pop(cid, []):
                if not fut.done():
                    fut.set_result(rec)
            if restart:
                delay = self.supervisor.schedule(cid)
                log.info("container %s exited %d: restarting in %.1fs", cid[:12], code, delay)
            auto_remove = rec["HostConfig"].get("AutoRemove") and not restart
        if auto_remove:
            try:
                await self.remove(cid, force=True, volumes=True)  # `run --rm` takes anonymous volumes too
            except errdefs.NotFound:
                pass

    async def _restart_now(self, cid: str) -> None:
        """The supervisor's delayed start of a restarting container."""
        async with self.lock(cid):
            rec = self.store.containers.get(cid)
            if rec is None or state.status(rec) != state.RESTARTING:
                return  # stopped, killed or removed while it waited
            try:
                await self._start_locked(rec, user=False)
            except BaseException as err:
                # Docker gives up on a container whose restart fails: it stays exited
                rec = self.store.containers.get(cid) or rec
                state.transition(rec, "cancel_restart", Pid=0, Error=str(err))
                self.save(rec)
                self._wake_exit_waiters(rec)
                if isinstance(err, Exception):
                    log.warning("restart of %s failed: %s", cid[:12], err)
                    return
                raise
            self.publish(rec, "restart")

    def _cancel_restart_locked(self, rec: Record) -> None:
        """A user's stop or kill of a restarting container: no process to signal, the
        pending restart is dropped and the container is exited (moby's ExitOnNext)."""
        self.supervisor.cancel(rec["Id"])
        rec["Dockyard"].update(ManuallyStopped=True, RestartCancelled=True)
        state.transition(rec, "cancel_restart")
        self.save(rec)
        self._wake_exit_waiters(rec)

    def _wake_exit_waiters(self, rec: Record) -> None:
        for fut in self._exit_waiters.pop(rec["Id"], []):
            if not fut.done():
                fut.set_result(rec)

    async def record_health(self, cid: str, started_at: str, settings: Settings, result: healthcheck.Result) -> str:
        """Fold a probe's result into the record, if the container is still in the run the
        probe was for; publishes `health_status: <status>` when the status changes."""
        async with self.lock(cid):
            rec = self.store.containers.get(cid)
            if rec is None or state.status(rec) not in (state.RUNNING, state.PAUSED):
                return healthcheck.STARTING
            if rec["State"]["StartedAt"] != started_at:
                return healthcheck.status_of(rec)
            old = healthcheck.status_of(rec)
            new = healthcheck.apply_result(rec["State"], settings, result)
            self.save(rec)
            if new != old:
                self.publish(rec, f"health_status: {new}")
            return new

    # ---- stop / kill / restart ---------------------------------------------------------------

    def exit_future(self, cid: str) -> asyncio.Future[Record]:
        fut: asyncio.Future[Record] = asyncio.get_running_loop().create_future()
        self._exit_waiters.setdefault(cid, []).append(fut)
        return fut

    async def _signal(self, rec: Record, sig: int) -> None:
        pid = int(rec["State"]["Pid"] or 0)
        if not pid:
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if rec["State"]["Paused"] and sig in (signals.SIGKILL, signals.SIGTERM):
            # a frozen process cannot act on a signal: thaw it (Docker does the same)
            try:
                await self.runtime(rec).resume(rec["Id"])
            except errdefs.DockyardError:
                pass

    async def stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        cid = self.resolve_id(ref)
        async with self.lock(cid):
            rec = self.get(cid)
            state.check("stop", rec)
            if state.status(rec) == state.RESTARTING:
                self._cancel_restart_locked(rec)
                self.publish(rec, "stop")
                return
            rec["Dockyard"].update(ManuallyStopped=True, RestartCancelled=True)
            self.save(rec)
            fut = self.exit_future(cid)
        await self._stop_running(rec, fut, timeout, signal)
        self.publish(rec, "stop")

    async def _stop_running(self, rec: Record, fut: asyncio.Future[Record], timeout: int | None, signal: str | None) -> None:
        cfg = rec["Config"]
        sig = parse_signal(signal or cfg.get("StopSignal"), signals.SIGTERM)
        if timeout is None:
            timeout = cfg.get("StopTimeout")
            timeout = 10 if timeout is None else int(timeout)
        await self._signal(rec, sig)
        self.publish(rec, "kill", signal=str(sig))
        try:
            if timeout < 0:
                await fut
                return
            async with asyncio.timeout(timeout):
                await asyncio.shield(fut)
            return
        except TimeoutError:
            pass
        await self._signal(rec, signals.SIGKILL)
        self.publish(rec, "kill", signal=str(int(signals.SIGKILL)))
        await fut

    async def kill(self, ref: str, signal: str | None = None) -> None:
        cid = self.resolve_id(ref)
        sig = parse_signal(signal, signals.SIGKILL)
        async with self.lock(cid):
            rec = self.get(cid)
            state.check("kill", rec)
            # any kill is a manual stop (unless-stopped ends); SIGKILL or the stop signal
            # also cancels the policy until the next start (moby's killWithSignal)
            stop_sig = rec["Config"].get("StopSignal")
            cancels = sig == signals.SIGKILL or not stop_sig or parse_signal(stop_sig) == sig
            if state.status(rec) == state.RESTARTING:
                # no process to signal: a cancelling kill drops the pending restart, any
                # other only marks the manual stop (Docker sends nothing either)
                if cancels:
                    self._cancel_restart_locked(rec)
                else:
                    rec["Dockyard"]["ManuallyStopped"] = True
                    self.save(rec)
                return
            rec["Dockyard"]["ManuallyStopped"] = True
            rec["Dockyard"]["RestartCancelled"] = bool(rec["Dockyard"].get("RestartCancelled")) or cancels
            self.save(rec)
            if sig == signals.SIGKILL:
                fut = self.exit_future(cid)
            await self._signal(rec, sig)
            self.publish(rec, "kill", signal=str(sig))
        if sig == signals.SIGKILL:
            await fut

    async def restart(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        cid = self.resolve_id(ref)
        rec = self.get(cid)
        if rec["State"]["Running"]:
            try:
                await self.stop(cid, timeout, signal)
            except errdefs.NotModified:
                pass
        async with self.lock(cid):
            rec = self.get(cid)
            if state.status(rec) in (state.CREATED, state.EXITED):
                await self._start_locked(rec, user=True)
        self.publish(self.get(cid), "restart")

    # ---- pause -------------------------------------------------------------------------------

    async def pause(self, ref: str) -> None:
        cid = self.resolve_id(ref)
        async with self.lock(cid):
            rec = self.get(cid)
            state.check("pause", rec)
            await self.runtime(rec).pause(cid)
            state.transition(rec, "pause")
            self.save(rec)
            if self.health is not None:  # Docker probes only running, unpaused containers
                self.health.unwatch(cid)
            self.publish(rec, "pause")

    async def unpause(self, ref: str) -> None:
        cid = self.resolve_id(ref)
        async with self.lock(cid):
            rec = self.get(cid)
            state.check("unpause", rec)
            await self.runtime(rec).resume(cid)
            state.transition(rec, "unpause")
            self.save(rec)
            if self.health is not None:
                self.health.watch(cid, rec["Config"], rec["State"])
            self.publish(rec, "unpause")

    # ---- wait --------------------------------------------------------------------------------

    async def wait(self, ref: str, condition: str = "not-running") -> Record:
        if condition not in ("not-running", "next-exit", "removed", ""):
            raise errdefs.InvalidArgument(f"invalid condition: \"{condition}\"")
        try:
            cid = self.resolve_id(ref)
        except errdefs.NotFound:
            gone = self._recently_removed.get(ref) or self._recently_removed.get("/" + ref)
            if gone and condition == "removed":
                return gone[1]
            raise
        rec = self.get(cid)
        loop = asyncio.get_running_loop()
        if condition == "removed":
            fut: asyncio.Future[Record] = loop.create_future()
            self._remove_waiters.setdefault(cid, []).append(fut)
            return await fut
        if condition in ("not-running", "") and not rec["State"]["Running"] and state.status(rec) != state.RESTARTING:
            return rec
        return await self.exit_future(cid)

    # ---- remove ------------------------------------------------------------------------------

    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        cid = self.resolve_id(ref)
        rec = self.get(cid)
        if state.status(rec) == state.REMOVING or (rec["State"]["Running"] and not force):
            state.check("remove", rec)
        if rec["State"]["Running"]:
            try:
                await self.kill(cid, "SIGKILL")
            except (errdefs.Conflict, errdefs.NotFound):
                pass
        async with self.lock(cid):
            current = self.store.containers.get(cid)
            if current is None:
                return
            rec = current
            state.check("remove", rec)
            # "Removal In Progress" while the files go; a removal that fails (or is cut
            # short with the daemon) leaves the container Dead, for `rm` to finish
            state.transition(rec, "remove")
            self.save(rec)
            self.supervisor.forget(cid)
            self.log_rotator.unwatch(cid, final=False)
            try:
                await asyncio.to_thread(self._unmount_rootfs, cid)
                await self._unmount_volumes(rec)
                await asyncio.to_thread(self.images.remove_rootfs, cid)
                await asyncio.to_thread(shutil.rmtree, self.bundle(cid), True)
                self.conmon.exit_file(cid).unlink(missing_ok=True)
                if self.networks is not None:
                    await self.networks.detach(rec)
            except BaseException:
                state.transition(rec, "remove_failed")
                self.save(rec)
                raise
            self.store.containers.delete(cid)
            for eid in rec["Dockyard"].get("ExecIDs") or []:
                self.store.execs.delete(eid)
            self._locks.pop(cid, None)
        if volumes:  # `rm -v`: anonymous volumes only, and only when no other container uses them
            for m in rec["Mounts"]:
                if m["Type"] == "volume" and self.volumes.is_anonymous(m["Name"]):
                    await self.volumes.remove_if_unused(m["Name"])
        self.publish(rec, "destroy")
        now = time.monotonic()
        self._recently_removed = {k: v for k, v in self._recently_removed.items() if now - v[0] < 60}
        self._recently_removed[cid] = self._recently_removed[rec["Name"]] = (now, rec)
        for fut in self._exit_waiters.pop(cid, []) + self._remove_waiters.pop(cid, []):
            if not fut.done():
                fut.set_result(rec)
        for go, _ in self._start_waiters.pop(cid, []):
            if not go.done():
                go.set_result(False)

    # ---- rename / update ---------------------------------------------------------------------

    async def rename(self, ref: str, new_name: str) -> None:
        if not new_name:
            raise errdefs.InvalidArgument("Neither old nor new names may be empty")
        cid = self.resolve_id(ref)
        full = names.validate(new_name)
        async with self.lock(cid):
            rec = self.get(cid)
            if rec["Name"] == full:
                raise errdefs.InvalidArgument("Renaming a container with the same name as its current name")
            self._check_name_free(full)
            old = rec["Name"]
            rec["Name"] = full
            self.save(rec)
            self.publish(rec, "rename", oldName=old)

    async def update(self, ref: str, body: dict[str, Any]) -> list[str]:
        cid = self.resolve_id(ref)
        allowed = {
            "CpuShares", "Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuPeriod", "CpuQuota",
            "CpusetCpus", "CpusetMems", "PidsLimit", "RestartPolicy", "BlkioWeight", "KernelMemory",
        }  # fmt: skip
        async with self.lock(cid):
            rec = self.get(cid)
            hc = dict(rec["HostConfig"])
            rp = body.get("RestartPolicy") or {}
            # an empty name (what `update` without --restart sends) keeps the policy
            if rp.get("Name") and hc.get("AutoRemove") and rp["Name"] != "no":
                raise errdefs.InvalidArgument(
                    f"Cannot update container {cid}: "
                    "Restart policy cannot be updated because AutoRemove is enabled for the container"
                )
            for k, v in body.items():
                if k == "RestartPolicy" and not rp.get("Name"):
                    continue
                if k in allowed and v is not None and v != "" and not (k != "RestartPolicy" and v == 0):
                    hc[k] = v
            _validate_host_config(hc)
            swap_too_small = (
                hc.get("Memory") and rec["HostConfig"].get("MemorySwap") and "MemorySwap" not in body
                and int(hc["MemorySwap"]) != -1 and int(hc["MemorySwap"]) < int(hc["Memory"])
            )  # fmt: skip
            if swap_too_small:
                hc["MemorySwap"] = 2 * int(hc["Memory"])
            if state.status(rec) in (state.RUNNING, state.PAUSED):  # a restarting one has no process
                res = ocispec.resources(hc)
                if res:
                    await self.runtime(rec).update(cid, res)
            rec["HostConfig"] = hc
            self.save(rec)
            self.publish(rec, "update")
        return []

    # ---- commit ------------------------------------------------------------------------------

    async def commit(
        self, ref: str, *, repo: str | None, tag: str | None, comment: str, author: str,
        changes: list[str], pause: bool, config: dict[str, Any],
    ) -> str:  # fmt: skip
        """A new image from the container's changes; a running container is frozen meanwhile."""
        cid = self.resolve_id(ref)
        rec = self.get(cid)
        merged = {**rec["Config"], **{k: v for k, v in config.items() if v is not None}}
        paused_here = False
        if pause and rec["State"]["Running"] and not rec["State"]["Paused"]:
            try:
                await self.runtime(rec).pause(cid)
                paused_here = True
                self.publish(rec, "pause")  # dockerd's commit shows its freeze as pause/unpause
            except errdefs.DockyardError:
                # a process that just exited (its exit not recorded yet): dockerd commits a
                # stopped container as it is, so only a container runc still runs is an error
                st = await self.runtime(rec).state(cid)
                if st is not None and st.get("status") in ("running", "paused"):
                    raise
        try:
            image = await self.images.commit(
                cid, rec["Image"], merged, container_id=cid, repo=repo, tag=tag,
                comment=comment, author=author, changes=changes,
            )  # fmt: skip
            ref = familiar_ref(f"{repo}:{tag or 'latest'}") if repo else ""
            self.publish(rec, "commit", comment=comment, imageID=image.id, imageRef=ref)
        finally:
            if paused_here:
                await self.runtime(rec).resume(cid)
                self.publish(rec, "unpause")
        return str(image.id)

    # ---- attach ------------------------------------------------------------------------------

    async def open_attach(self, ref: str) -> tuple[Record, AttachConnection | None]:
        """Connects to conmon's attach socket, first waiting for the start of a created container.

        Returns (record, None) when the container is not running and will not start.
        """
        cid = self.resolve_id(ref)
        rec = self.get(cid)
        if state.status(rec) == state.CREATED and cid not in self._attachable:
            loop = asyncio.get_running_loop()
            go: asyncio.Future[bool] = loop.create_future()
            ready: asyncio.Future[None] = loop.create_future()
            self._start_waiters.setdefault(cid, []).append((go, ready))
            try:
                if not await go:
                    return self.get(cid), None
                return self.get(cid), await AttachConnection.open(self.bundle(cid))
            finally:
                if not ready.done():
                    ready.set_result(None)
        if not rec["State"]["Running"] and cid not in self._attachable:
            return rec, None
        try:
            return rec, await AttachConnection.open(self.bundle(cid))
        except (FileNotFoundError, ConnectionRefusedError):
            return self.get(cid), None  # it exited (conmon gone) in the meantime

    def check_logs_readable(self, rec: Record) -> None:
        if not logconfig.readable(rec["HostConfig"].get("LogConfig") or {}):
            raise errdefs.Unsupported("configured logging driver does not support reading")

    def resize(self, ref: str, height: int, width: int) -> None:
        rec = self.get(ref)
        if not rec["State"]["Running"]:
            raise errdefs.Conflict(f"Container {rec['Id']} is not running")
        self.conmon.resize(self.bundle(rec["Id"]), height, width)
        self.publish(rec, "resize", height=str(height), width=str(width))

    # ---- views used by listing, prune and the file-system routes -------------------------

    def image_matches(self, rec: Record, ancestor: str) -> bool:
        try:
            image = self.images.resolve(ancestor)
        except errdefs.NotFound:
            return False
        return bool(rec["Image"] == image.id)

    async def sizes(self, cid: str) -> tuple[int, int]:
        """(SizeRw, SizeRootFs): the container's own writes, and those plus its image."""
        rec = self.get(cid)
        rw = await asyncio.to_thread(_du, self.images.upper_dir(cid))
        try:
            image_size = int(self.images.image_json(self.images.resolve(rec["Image"])).get("Size") or 0)
        except errdefs.NotFound:
            image_size = 0
        return rw, rw + image_size

    async def prune(self, f: dict[str, list[str]]) -> dict[str, Any]:
        for key in f:
            if key not in ("until", "label", "label!"):
                raise errdefs.InvalidArgument(f"invalid filter '{key}'")
        until = parse_time_param(f["until"][0]) if f.get("until") else None
        deleted, reclaimed = [], 0
        for rec in self.all():
            if rec["State"]["Running"] or rec["State"]["Status"] not in (state.EXITED, state.CREATED, state.DEAD):
                continue
            labels = rec["Config"].get("Labels") or {}
            if f.get("label") and not labels_match(labels, f["label"]):
                continue
            if f.get("label!") and labels_match(labels, f["label!"]):
                continue
            if until is not None and parse_rfc3339(rec["Created"]) > until:
                continue
            try:
                size = (await self.sizes(rec["Id"]))[0]
                await self.remove(rec["Id"])
            except errdefs.DockyardError:
                continue
            deleted.append(rec["Id"])
            reclaimed += size
        self.events.publish("container", "prune", "", {"reclaimed": str(reclaimed)})
        return {"ContainersDeleted": deleted, "SpaceReclaimed": reclaimed}

    @contextlib.asynccontextmanager
    async def rootfs_mounted(self, ref: str, *, announce_volumes: bool = False) -> AsyncIterator[tuple[Record, Path]]:
        """The container's merged root filesystem, mounted for the duration (cp, export).
        `announce_volumes`: publish `mount`/`unmount` of its volumes around it, as dockerd's
        archive calls do (a `docker events --filter type=volume` sees every cp)."""
        cid = self.resolve_id(ref)
        async with self.lock(cid):
            rec = self.get(cid)
            if cid in self._temporary_mounts:  # another cp/export is using our mount
                self._temporary_mounts[cid] += 1
                rootfs = self._rootfs(cid)
            else:
                was_mounted = sysmount.is_mounted(self._rootfs(cid))
                rootfs = await asyncio.to_thread(self._mount_rootfs, rec)
                if not was_mounted:
                    self._temporary_mounts[cid] = 1
        vols = [m for m in rec["Mounts"] if m["Type"] == "volume"] if announce_volumes else []
        for m in vols:
            self.volumes.announce_mount(
                m["Name"], cid, destination=m["Destination"], rw=m["RW"], propagation=m["Propagation"]
            )
        try:
            yield rec, rootfs
        finally:
            for m in vols:
                self.volumes.announce_unmount(m["Name"], cid)
            async with self.lock(cid):
                if cid in self._temporary_mounts:
                    self._temporary_mounts[cid] -= 1
                    if not self._temporary_mounts[cid]:
                        del self._temporary_mounts[cid]
                        if not self.get(cid)["State"]["Running"]:
                            await asyncio.to_thread(self._unmount_rootfs, cid)

    def is_running(self, cid: str) -> Callable[[], bool]:
        def check() -> bool:
            rec = self.store.containers.get(cid)
            return bool(rec and rec["State"]["Running"])

        return check


def _du(path: Path) -> int:
    total = 0
    for root, dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return 0


def _restore_failed(err: BaseException, bundle: Path) -> BaseException:
    """A failed restore says what CRIU said (its restore.log is in the bundle)."""
    if not isinstance(err, errdefs.DockyardError):
        return err
    return errdefs.Internal(f"failed to restore container from checkpoint: {err}{checkpoints.restore_log_tail(bundle)}")


def _is_not_found(msg: str) -> bool:
    return "executable file not found" in msg or "no such file or directory" in msg


def _runtime_message(msg: str) -> str:
    return f"failed to create task for container: OCI runtime create failed: {msg}: unknown"
