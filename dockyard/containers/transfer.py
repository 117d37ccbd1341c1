"""The daemon's side of a cold move: what a move reads from a source daemon and writes
into a target daemon, each step one request (the CLI orchestrates, see cli/move.py).

Owns: which image layers a daemon lacks (by diff ID), an image archive without the layers
the target has, a stopped container's writable layer as a layer tar (overlay whiteouts as
`.wh.` entries), and the reverse of both: applying a layer tar to a created, never started
container's empty upper directory, and filling an empty volume; a finished checkpoint
(live move) read from a container that no longer runs and received by one that does not.

Rules that keep it safe and consistent:
- a layer is read only from a container that is not running, a volume only when no
  running container uses it (nothing changes under the reader);
- a layer or volume is written only when empty, by the layer extractor of
  images/unpack.py (never follows a symlink, never leaves its directory, no devices);
- volumes with driver options (tmpfs, nfs, ...) are refused: their content is not ours.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tarfile
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

from dockyard import errdefs
from dockyard.containers import state
from dockyard.containers.checkpoint import check_name, checkpoint_dir, checkpoints_root, criu_problem
from dockyard.images.archive import SaveItem, write_archive
from dockyard.images.layers import chain_ids
from dockyard.images.unpack import Extractor
from dockyard.snapshots.diff import write_layer_tar

__all__ = ["TransferService"]

_CHUNK = 1 << 20


class TransferService:
    def __init__(self, containers: Any, images: Any, volumes: Any, tmp_root: Path) -> None:
        self.containers = containers
        self.images = images
        self.volumes = volumes
        self.tmp_root = tmp_root

    # ---- images ------------------------------------------------------------------------

    def missing_layers(self, diff_ids: list[str]) -> list[str]:
        """The diff IDs whose layer tar a `load` here would need (neither layer nor blob)."""
        out = []
        for diff_id, chain in zip(diff_ids, chain_ids(diff_ids), strict=True):
            if not self.images.layers.exists(chain) and not self.images.content.exists(diff_id):
                out.append(diff_id)
        return out

    def image_item(self, ref: str) -> SaveItem:
        """The image as an untagged save item: a move must not retag the target's images."""
        img = self.images.resolve(ref)
        return SaveItem(img.id, img.config_bytes, tuple(img.diff_ids), (), (), img.created or 0.0)

    def write_image(self, item: SaveItem, skip: frozenset[str], out: IO[bytes]) -> None:
        """Blocking: the archive of `item` without the layers in `skip`."""
        write_archive(out, [item], self.images.content.path, skip)

    # ---- a container's writable layer ---------------------------------------------------

    def layer_source(self, ref: str) -> Path:
        rec = self.containers.get(ref)
        if rec["State"]["Running"] or state.status(rec) not in (state.CREATED, state.EXITED):
            raise errdefs.Conflict(f"container {rec['Id'][:12]} must be stopped to read its writable layer")
        return Path(self.images.upper_dir(rec["Id"]))

    @staticmethod
    def write_layer(upper: Path, out: IO[bytes]) -> None:
        write_layer_tar(upper, out)  # type: ignore[arg-type]

    async def apply_layer(self, ref: str, body: AsyncIterator[bytes]) -> None:
        rec = self.containers.get(ref)
        if state.status(rec) != state.CREATED:
            raise errdefs.Conflict(
                f"container {rec['Id'][:12]} must be created and never started to receive a layer"
            )
        upper = Path(self.images.upper_dir(rec["Id"]))
        await self._extract_into(upper, body, f"container {rec['Id'][:12]}")

    # ---- a checkpoint (live move) ------------------------------------------------------

    async def capabilities(self) -> dict[str, Any]:
        """What kinds of move this daemon can take part in: a live one needs a working criu."""
        problem = await asyncio.to_thread(criu_problem, self.containers.cfg.criu)
        return {"Cold": True, "Live": not problem, "LiveProblem": problem}

    def checkpoint_source(self, ref: str, name: str) -> Path:
        """A complete checkpoint of a container that no longer runs (its dump is final)."""
        rec = self.containers.get(ref)
        if rec["State"]["Running"]:
            raise errdefs.Conflict(f"container {rec['Id'][:12]} must be stopped to send its checkpoint")
        return checkpoint_dir(rec, self.containers.bundle(rec["Id"]), name, None)

    async def receive_checkpoint(self, ref: str, name: str, body: AsyncIterator[bytes]) -> None:
        """Fill checkpoint `name` of a container that does not run from a tar of its
        directory; it counts (is listed, can be restored) only once complete, by rename."""
        rec = self.containers.get(ref)
        if rec["State"]["Running"] or state.status(rec) not in (state.CREATED, state.EXITED):
            raise errdefs.Conflict(f"container {rec['Id'][:12]} must not run to receive a checkpoint")
        check_name(name)
        root = checkpoints_root(self.containers.bundle(rec["Id"]), None)
        final = root / name
        if final.exists():
            raise errdefs.Conflict(f"checkpoint with name {name} already exists for container {rec['Id'][:12]}")
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        incoming = root / f".{name}.incoming"
        await asyncio.to_thread(shutil.rmtree, incoming, True)  # a transfer cut short before
        incoming.mkdir(mode=0o700)
        try:
            await self._extract_into(incoming, body, f"checkpoint {name}")
            if not (incoming / "config.json").is_file() or not (incoming / "criu").is_dir():
                raise errdefs.InvalidArgument(f"checkpoint {name}: the archive is not a checkpoint")
            os.rename(incoming, final)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, incoming, True)
            raise

    # ---- volumes ------------------------------------------------------------------------

    def _volume_dir(self, name: str) -> Path:
        doc = self.volumes.inspect(name)
        if doc.get("Options"):
            raise errdefs.InvalidArgument(f"volume {name} has driver options; its content cannot be moved")
        running = [
            cid for cid in self.containers.ids_using_volume(name)
            if (self.containers.store.containers.get(cid) or {}).get("State", {}).get("Running")
        ]  # fmt: skip
        if running:
            raise errdefs.Conflict(f"volume {name} is in use by running container {running[0][:12]}")
        return Path(doc["Mountpoint"])

    def volume_source(self, name: str) -> Path:
        return self._volume_dir(name)

    async def fill_volume(self, name: str, body: AsyncIterator[bytes]) -> None:
        await self._extract_into(self._volume_dir(name), body, f"volume {name}")

    # ---- shared -------------------------------------------------------------------------

    async def _extract_into(self, root: Path, body: AsyncIterator[bytes], what: str) -> None:
        """Spool the tar, then extract it into `root`, which must be an empty directory."""
        if not root.is_dir() or root.is_symlink():
            raise errdefs.NotFound(f"{what} has no directory to fill")
        if any(os.scandir(root)):
            raise errdefs.Conflict(f"{what} is not empty")
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=self.tmp_root) as spool:
            async for chunk in body:
                await asyncio.to_thread(spool.write, chunk)
            spool.seek(0)
            try:
                result = await asyncio.to_thread(Extractor(root).extract, spool)
            except (tarfile.TarError, EOFError) as err:  # the sender's archive, not our fault
                raise errdefs.InvalidArgument(f"{what}: not a valid tar archive: {err}") from None
        if result.skipped:
            raise errdefs.InvalidArgument(
                f"{what}: unsafe entries refused: " + ", ".join(n for n, _ in result.skipped[:5])
            )
