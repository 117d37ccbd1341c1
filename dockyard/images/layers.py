"""The layer store: extracted layers keyed by chain ID, shared by every image and container.

Owns `layers/` under the data root and the `layers` table. A layer is created from an
uncompressed layer tar already committed to the content store (keyed by its diff ID, so
`docker save` can hand out the exact bytes again), extracted by `unpack.Extractor` into a
temporary directory and renamed into place. It must not decide when a layer is garbage:
the image service counts references (every image's chain IDs) and calls `remove`.

Layout::

    layers/
      tmp-<random>/diff        an extraction in progress (swept at startup)
      <chain-id hex>/diff      the extracted layer: an overlay lowerdir, never modified
      l/<chain-id hex[:16]>    a short symlink to ../<chain-id hex>/diff: mount options
                               are limited to one page, so lowerdir lists use these

Rows (`store.layers`)::

    id = chain id  ->  {"chain_id", "diff_id", "parent" (chain id or null), "size",
                        "compressed": {"digest", "size", "repos": ["host/path", ...]},
                        "incomplete": true (only while its files may not be on disk)}

Durability (power loss, not only `kill -9`): a row is first written `incomplete`, then
the layer is extracted, its filesystem synced once (syncfs: one flush for thousands of
files), renamed into place and the rename synced, and only then is the row rewritten
without the mark. An image row is committed after its layers' rows, and SQLite's WAL
keeps commits in order, so a committed image never points at files the disk lost. At
start every row still marked incomplete is redone from its blob (the content store's
blobs are fsynced and verified by digest), or dropped when the blob is gone; the image
service's startup collection then removes the layers nothing refers to. Rows written
before this mark existed count as complete.

`compressed` (optional) is the layer's compressed-blob cache, dockerd's v2 metadata plus
the blob itself: the gzip blob a push produced or a pull downloaded, kept in the content
store under its digest, and the registry repositories known to hold it. A push HEADs or
mounts that digest instead of recompressing, and uploads the kept blob where it must. The
blob goes when the last layer row naming it goes.

    chain_id(L0) = diff_id(L0)
    chain_id(Ln) = sha256(chain_id(Ln-1) + " " + diff_id(Ln))
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import shutil
import threading
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard._sys.fs import fsync_dir, syncfs
from dockyard.errdefs import NotFound
from dockyard.idmap import IdentityMapping
from dockyard.images.content import ContentStore
from dockyard.images.unpack import Extractor
from dockyard.store import Store

__all__ = ["Layer", "LayerStore", "chain_id", "chain_ids"]

log = logging.getLogger(__name__)

_MAX_REPOS = 16  # repositories remembered per compressed blob (mount sources)


def chain_id(parent: str | None, diff_id: str) -> str:
    if parent is None:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest()


def chain_ids(diff_ids: list[str]) -> list[str]:
    out: list[str] = []
    parent: str | None = None
    for d in diff_ids:
        parent = chain_id(parent, d)
        out.append(parent)
    return out


@dataclass(frozen=True)
class Layer:
    chain_id: str
    diff_id: str
    parent: str | None
    size: int


class LayerStore:
    def __init__(
        self, store: Store, root: Path, content: ContentStore, id_mapping: IdentityMapping | None = None
    ) -> None:
        self._store = store
        self._idmap = id_mapping  # remapped daemon: owners shifted at extraction (unpack.py)
        self.root = root
        self._content = content
        # Writers extract outside the image store's lock (images/store.py): two pulls of
        # the same layer must not both extract it and replace each other's directory.
        self._creating: dict[str, tuple[threading.Lock, list[int]]] = {}  # chain -> (lock, [users])
        self._creating_guard = threading.Lock()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)  # content: private (daemon/roots.py)
        (root / "l").mkdir(mode=0o700, exist_ok=True)
        for stale in root.glob("tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        self._recover_incomplete()

    def _recover_incomplete(self) -> None:
        """Redo (from the blob) or drop each layer whose files were not known durable."""
        for doc in [d for d in self._store.layers.all() if d.get("incomplete")]:
            chain, diff_id = doc["chain_id"], doc["diff_id"]
            shutil.rmtree(self.diff_dir(chain).parent, ignore_errors=True)
            if self._content.exists(diff_id):
                log.warning("layer %s was not complete when the last daemon stopped: extracting it again", chain[:19])
                try:
                    self.create(doc.get("parent"), diff_id)
                    continue
                except Exception as err:  # noqa: BLE001 - a start must not fail on one bad layer
                    log.warning("layer %s could not be extracted again (%s): removing it", chain[:19], err)
            else:
                log.warning("layer %s was not complete and its blob is gone: removing it", chain[:19])
            self._store.layers.delete(chain)
            shutil.rmtree(self.diff_dir(chain).parent, ignore_errors=True)

    def _complete(self, chain: str) -> dict[str, Any] | None:
        """The layer's row when its files are known durable: a row still marked incomplete
        (a `create` under way, or one a crash interrupted) is absent to every reader."""
        doc = self._store.layers.get(chain)
        if doc is None or doc.get("incomplete"):
            return None
        return doc

    def get(self, chain: str) -> Layer | None:
        doc = self._complete(chain)
        return None if doc is None else self._layer(doc)

    def diff_dir(self, chain: str) -> Path:
        return self.root / chain.removeprefix("sha256:") / "diff"

    def link(self, chain: str) -> Path:
        """The short path of the layer's diff dir for overlay lowerdir lists."""
        hexpart = chain.removeprefix("sha256:")
        link = self.root / "l" / hexpart[:16]
        if not link.is_symlink():
            link.parent.mkdir(exist_ok=True)
            tmp = link.with_name(f".{link.name}.{secrets.token_hex(4)}")
            tmp.symlink_to(f"../{hexpart}/diff")
            tmp.rename(link)
        return link

    def exists(self, chain: str) -> bool:
        return self._complete(chain) is not None and self.diff_dir(chain).is_dir()

    def create(self, parent: str | None, diff_id: str) -> tuple[Layer, bool]:
        """Extract the committed blob `diff_id` on top of `parent` (blocking).

        Returns the layer and whether it was created now (False: it already existed).
        Safe to call from several threads: one extracts a given layer, the others wait."""
        chain = chain_id(parent, diff_id)
        with self._creating_guard:
            lock, users = self._creating.setdefault(chain, (threading.Lock(), [0]))
            users[0] += 1
        try:
            with lock:
                return self._create(parent, diff_id, chain)
        finally:
            with self._creating_guard:
                users[0] -= 1
                if not users[0]:
                    del self._creating[chain]

    def _create(self, parent: str | None, diff_id: str, chain: str) -> tuple[Layer, bool]:
        done = self._complete(chain)
        if done is not None and self.diff_dir(chain).is_dir():
            return self._layer(done), False
        doc = self._store.layers.get(chain)
        row = {"chain_id": chain, "diff_id": diff_id, "parent": parent, "size": 0, **(doc or {})}
        # The mark goes in before any file: a crash from here on leaves a row that says so.
        self._store.layers.put(chain, {**row, "incomplete": True}, name=diff_id)
        tmp = self.root / f"tmp-{secrets.token_hex(8)}"
        (tmp / "diff").mkdir(parents=True)
        try:
            with self._content.open(diff_id) as f:
                res = Extractor(tmp / "diff", id_mapping=self._idmap).extract(f)
            syncfs(tmp)  # every extracted file and folder on disk, before the rename names them
            final = self.diff_dir(chain).parent
            if final.exists():  # a row went missing (or was incomplete) while files stayed: replace them
                shutil.rmtree(final)
            tmp.rename(final)
            fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if doc is None:
                self._store.layers.delete(chain)
            raise
        row = {**row, "size": res.size}
        row.pop("incomplete", None)
        self._store.layers.put(chain, row, name=diff_id)
        log.info("layer %s created (diff %s, %d bytes)", chain[:19], diff_id[:19], res.size)
        return self._layer(row), True

    @staticmethod
    def _layer(doc: dict[str, Any]) -> Layer:
        return Layer(doc["chain_id"], doc["diff_id"], doc.get("parent"), int(doc.get("size", 0)))

    def remove(self, chain: str, keep_blobs: Container[str] = ()) -> int:
        """Delete the layer's files, its row and (when no other layer has it and it is not
        in `keep_blobs`: a writer is about to use it) its blob. The collector may remove an
        incomplete row too: nothing can refer to it."""
        doc = self._store.layers.get(chain)
        if doc is None:
            raise NotFound(f"layer {chain} not found")
        layer = self._layer(doc)
        self._store.layers.delete(chain)
        (self.root / "l" / chain.removeprefix("sha256:")[:16]).unlink(missing_ok=True)
        shutil.rmtree(self.diff_dir(chain).parent, ignore_errors=True)
        if not self._store.layers.ids_by_name(layer.diff_id) and layer.diff_id not in keep_blobs:
            self._content.delete(layer.diff_id)
        rec = (doc or {}).get("compressed")
        if rec:
            self._drop_compressed(rec["digest"])
        return layer.size

    def compressed(self, chain: str) -> dict[str, Any] | None:
        """The layer's cached compressed blob, if it is still in the content store."""
        doc = self._complete(chain)
        rec = (doc or {}).get("compressed")
        if not rec or not self._content.exists(rec["digest"]):
            return None
        return dict(rec)

    def set_compressed(self, chain: str, digest: str, size: int, repo: str | None = None) -> None:
        """Record `digest` (a committed blob) as the layer's compressed form; `repo` holds it."""
        doc = self._complete(chain)
        if doc is None:
            if not self._names_compressed(digest):
                self._content.delete(digest)
            return
        old = doc.get("compressed") or {}
        repos: list[str] = list(old.get("repos") or []) if old.get("digest") == digest else []
        if repo and repo not in repos:
            repos = [*repos, repo][-_MAX_REPOS:]
        if old == {"digest": digest, "size": size, "repos": repos}:
            return
        doc = {**doc, "compressed": {"digest": digest, "size": size, "repos": repos}}
        self._store.layers.put(chain, doc, name=doc["diff_id"])
        if old.get("digest") and old["digest"] != digest:
            self._drop_compressed(old["digest"])

    def _names_compressed(self, digest: str) -> bool:
        # the in-memory mirror: no JSON decoding per row (called once per removed layer)
        return any((d.get("compressed") or {}).get("digest") == digest for d in self._store.layers.snapshot())

    def _drop_compressed(self, digest: str) -> None:
        if self._names_compressed(digest) or self._store.layers.ids_by_name(digest):
            return
        self._content.delete(digest)

    def ids(self) -> list[str]:
        """Every layer row's chain id, incomplete ones included (the collector's list)."""
        return [r[0] for r in self._store.layers.rows()]
