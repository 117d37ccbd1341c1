"""`docker save` and `docker load` tarball formats.

Owns the layout of the two archive formats and nothing else: which files go where, how
names are recorded, how layer blobs are compressed. It reads and writes tar streams; the
image service decides what to do with what was read (ingest, verify, register, tag).

What `save` writes (Docker 25+: a docker-archive that is also an OCI image layout)::

    blobs/sha256/<config hex>        image config (its digest is the image ID)
    blobs/sha256/<diff-id hex>       uncompressed layer tars
    blobs/sha256/<manifest hex>      one OCI manifest per image
    index.json                       OCI index: one entry per tag (or one for an untagged image)
    manifest.json                    [{"Config", "RepoTags", "Layers"}]  (docker-archive)
    oci-layout                       {"imageLayoutVersion": "1.0.0"}
    repositories                     {"busybox": {"latest": "<top layer hex>"}}  (legacy)

What `load` reads: a docker-archive (manifest.json; paths may be legacy `<id>/layer.tar`,
possibly symlinks to another layer's tar) or, when there is no manifest.json, an OCI
layout (index.json, nested indexes, `io.containerd.image.name` / ref.name annotations).
Layers may be plain or gzip-compressed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import posixpath
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

from dockyard.errdefs import InvalidArgument, Unsupported

__all__ = [
    "HashingReader",
    "InvalidArchive",
    "LayerSource",
    "LoadItem",
    "SaveItem",
    "decompressed",
    "open_member",
    "read_archive",
    "write_archive",
]

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
_MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
ANN_CONTAINERD_NAME = "io.containerd.image.name"
ANN_REF_NAME = "org.opencontainers.image.ref.name"
_MAX_JSON = 16 << 20
_CHUNK = 1 << 20


class InvalidArchive(InvalidArgument):
    pass


# -- save -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SaveItem:
    image_id: str
    config_bytes: bytes
    diff_ids: tuple[str, ...]
    tags: tuple[str, ...]  # normalised references (docker.io/library/busybox:latest)
    familiar_tags: tuple[str, ...]
    created: float


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = 0o644
    ti.mtime = int(mtime)
    tf.addfile(ti, io.BytesIO(data))


def _add_dir(tf: tarfile.TarFile, name: str, mtime: float) -> None:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = 0o755
    ti.mtime = int(mtime)
    tf.addfile(ti)


def _manifest_bytes(item: SaveItem, layer_size: Callable[[str], int]) -> bytes:
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": {
            "mediaType": MT_OCI_CONFIG,
            "digest": item.image_id,
            "size": len(item.config_bytes),
        },
        "layers": [{"mediaType": MT_OCI_LAYER, "digest": d, "size": layer_size(d)} for d in item.diff_ids],
    }
    return json.dumps(manifest, separators=(",", ":")).encode()


def write_archive(
    out: IO[bytes], items: list[SaveItem], blob_path: Callable[[str], Path], skip: frozenset[str] = frozenset()
) -> None:
    """Stream the save tarball for `items` into `out` (blocking).

    Layers whose diff ID is in `skip` are listed in the manifests but not written: a move
    sends only what its target lacks, and `load` reads a layer's member only when it
    has neither the layer nor its blob."""
    merged: dict[str, SaveItem] = {}
    for it in items:  # one entry per image, with the union of its tags
        prev = merged.get(it.image_id)
        if prev is None:
            merged[it.image_id] = it
        else:
            tags = dict.fromkeys(prev.tags + it.tags)
            fam = dict.fromkeys(prev.familiar_tags + it.familiar_tags)
            merged[it.image_id] = SaveItem(
                prev.image_id, prev.config_bytes, prev.diff_ids, tuple(tags), tuple(fam), prev.created
            )
    items = list(merged.values())
    now = time.time()
    written: set[str] = set()
    manifest_json: list[dict[str, Any]] = []
    index_entries: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        _add_dir(tf, "blobs", now)
        _add_dir(tf, "blobs/sha256", now)
        for item in items:
            cfg_hex = item.image_id.removeprefix("sha256:")
            if item.image_id not in written:
                _add_bytes(tf, f"blobs/sha256/{cfg_hex}", item.config_bytes, item.created)
                written.add(item.image_id)
            for d in item.diff_ids:
                if d in written or d in skip:
                    continue
                path = blob_path(d)
                ti = tarfile.TarInfo(f"blobs/sha256/{d.removeprefix('sha256:')}")
                ti.size = path.stat().st_size
                ti.mode = 0o644
                ti.mtime = int(item.created)
                with open(path, "rb") as f:
                    tf.addfile(ti, f)
                written.add(d)
            mbytes = _manifest_bytes(item, lambda d: blob_path(d).stat().st_size)
            mdigest = "sha256:" + hashlib.sha256(mbytes).hexdigest()
            if mdigest not in written:
                _add_bytes(tf, f"blobs/sha256/{mdigest.removeprefix('sha256:')}", mbytes, item.created)
                written.add(mdigest)
            desc = {"mediaType": MT_OCI_MANIFEST, "digest": mdigest, "size": len(mbytes)}
            if item.tags:
                for full in item.tags:
                    tag = full.rpartition(":")[2]
                    index_entries.append(
                        {**desc, "annotations": {ANN_CONTAINERD_NAME: full, ANN_REF_NAME: tag}}
                    )
            else:
                index_entries.append(desc)
            manifest_json.append(
                {
                    "Config": f"blobs/sha256/{cfg_hex}",
                    "RepoTags": list(item.familiar_tags) or None,
                    "Layers": [f"blobs/sha256/{d.removeprefix('sha256:')}" for d in item.diff_ids],
                }
            )
            if item.diff_ids:
                top = item.diff_ids[-1].removeprefix("sha256:")
                for familiar in item.familiar_tags:
                    repo, _, tag = familiar.rpartition(":")
                    repositories.setdefault(repo, {})[tag] = top
        index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": index_entries}
        _add_bytes(tf, "index.json", json.dumps(index, separators=(",", ":")).encode(), now)
        _add_bytes(tf, "manifest.json", json.dumps(manifest_json, separators=(",", ":")).encode(), now)
        _add_bytes(tf, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}', now)
        if repositories:
            _add_bytes(tf, "repositories", json.dumps(repositories, separators=(",", ":")).encode(), now)


# -- load -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerSource:
    member: str  # path inside the archive
    digest: str | None = None  # descriptor digest of the (possibly compressed) blob, OCI only


@dataclass
class LoadItem:
    config_bytes: bytes
    layers: list[LayerSource]
    tags: list[str] = field(default_factory=list)  # as written in the archive (any spelling)


def _norm(name: str) -> str:
    n = posixpath.normpath(name.lstrip("/"))
    return "" if n == "." else n


def open_member(tf: tarfile.TarFile, name: str, _hops: int = 0) -> BinaryIO:
    """A member's data, following symlinks and hardlinks inside the archive only."""
    path = _norm(name)
    if path.startswith("..") or _hops > 16:
        raise InvalidArchive(f"invalid archive: bad path {name!r}")
    try:
        m = tf.getmember(path)
    except KeyError:
        try:
            m = tf.getmember("./" + path)
        except KeyError:
            raise InvalidArchive(f"invalid archive: {name} not found") from None
    if m.issym():
        target = posixpath.join(posixpath.dirname(path), m.linkname)
        return open_member(tf, target, _hops + 1)
    if m.islnk():
        return open_member(tf, m.linkname, _hops + 1)
    if not m.isreg():
        raise InvalidArchive(f"invalid archive: {name} is not a file")
    f = tf.extractfile(m)
    assert f is not None
    return f  # type: ignore[return-value]


def _read_json(tf: tarfile.TarFile, name: str) -> Any:
    with open_member(tf, name) as f:
        data = f.read(_MAX_JSON + 1)
    if len(data) > _MAX_JSON:
        raise InvalidArchive(f"invalid archive: {name} is too large")
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InvalidArchive(f"invalid archive: {name}: {err}") from None
    except RecursionError:  # a hostile manifest nested thousands deep
        raise InvalidArchive(f"invalid archive: {name} is nested too deeply") from None


def _read_bytes(tf: tarfile.TarFile, name: str) -> bytes:
    with open_member(tf, name) as f:
        data = f.read(_MAX_JSON + 1)
    if len(data) > _MAX_JSON:
        raise InvalidArchive(f"invalid archive: {name} is too large")
    return data


def _has(tf: tarfile.TarFile, name: str) -> bool:
    for cand in (name, "./" + name):
        try:
            tf.getmember(cand)
            return True
        except KeyError:
            pass
    return False


def _blob_path(digest: str) -> str:
    alg, _, hexpart = digest.partition(":")
    if not alg or not hexpart or "/" in digest or ".." in digest:
        raise InvalidArchive(f"invalid archive: bad digest {digest!r}")
    return f"blobs/{alg}/{hexpart}"


def _platform_ok(desc: dict[str, Any]) -> bool:
    p = desc.get("platform")
    if not p:
        return True
    return p.get("os") == "linux" and p.get("architecture") in ("amd64", None)


def _oci_items(tf: tarfile.TarFile, desc: dict[str, Any], names: list[str], depth: int = 0) -> list[LoadItem]:
    if depth > 8:
        raise InvalidArchive("invalid archive: indexes nested too deeply")
    mt = desc.get("mediaType", "")
    data = _read_bytes(tf, _blob_path(desc["digest"]))
    if "sha256:" + hashlib.sha256(data).hexdigest() != desc["digest"]:
        raise InvalidArchive(f"invalid archive: digest mismatch for {desc['digest']}")
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise InvalidArchive(f"invalid archive: blob {desc['digest']} is not a JSON document: {err}") from None
    if not isinstance(doc, dict):
        raise InvalidArchive(f"invalid archive: blob {desc['digest']} is not a JSON object")
    mt = mt or doc.get("mediaType", "")
    if mt in _INDEX_TYPES or "manifests" in doc:
        candidates = [
            d
            for d in doc.get("manifests", [])
            if _platform_ok(d)
            and (d.get("annotations") or {}).get("vnd.docker.reference.type") != "attestation-manifest"
        ]
        if not candidates:
            raise InvalidArchive("invalid archive: no manifest for linux/amd64")
        return _oci_items(tf, candidates[0], names, depth + 1)
    if mt not in _MANIFEST_TYPES and "config" not in doc:
        raise Unsupported(f"unsupported media type {mt!r}")
    config_bytes = _read_bytes(tf, _blob_path(doc["config"]["digest"]))
    if "sha256:" + hashlib.sha256(config_bytes).hexdigest() != doc["config"]["digest"]:
        raise InvalidArchive("invalid archive: config digest mismatch")
    layers = [LayerSource(_blob_path(layer["digest"]), layer["digest"]) for layer in doc.get("layers", [])]
    return [LoadItem(config_bytes, layers, names)]


def read_archive(tf: tarfile.TarFile) -> list[LoadItem]:
    """What images a save tarball holds (reads only JSON; layers stay in the tar)."""
    if _has(tf, "manifest.json"):
        manifest = _read_json(tf, "manifest.json")
        if not isinstance(manifest, list):
            raise InvalidArchive("invalid archive: manifest.json is not a list")
        items = []
        for entry in manifest:
            if not isinstance(entry, dict) or "Config" not in entry:
                raise InvalidArchive("invalid archive: bad manifest.json entry")
            items.append(
                LoadItem(
                    _read_bytes(tf, entry["Config"]),
                    [LayerSource(p) for p in entry.get("Layers") or []],
                    list(entry.get("RepoTags") or []),
                )
            )
        return items
    if _has(tf, "index.json"):
        index = _read_json(tf, "index.json")
        items = []
        by_digest: dict[str, LoadItem] = {}
        for desc in index.get("manifests", []):
            ann = desc.get("annotations") or {}
            name = ann.get(ANN_CONTAINERD_NAME)
            if not name:
                ref = ann.get(ANN_REF_NAME, "")
                name = ref if ("/" in ref or ":" in ref) else None
            if desc["digest"] in by_digest:
                if name and name not in by_digest[desc["digest"]].tags:
                    by_digest[desc["digest"]].tags.append(name)
                continue
            got = _oci_items(tf, desc, [name] if name else [])
            for it in got:
                by_digest[desc["digest"]] = it
                items.append(it)
        return items
    raise InvalidArchive("invalid archive: neither manifest.json nor index.json found")


class HashingReader:
    """Wraps a raw stream and hashes what is read through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._h = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._h.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self._h.hexdigest()


class _Peek:
    def __init__(self, raw: Any, head: bytes) -> None:
        self._raw = raw
        self._head = head

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                data, self._head = self._head + bytes(self._raw.read()), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            return data
        rest: bytes = self._raw.read(n)
        return rest

    def readable(self) -> bool:
        return True


def decompressed(raw: Any) -> Any:
    """A reader of the uncompressed bytes of raw (plain tar, gzip, bzip2 or xz)."""
    head = raw.read(6)
    src = _Peek(raw, head)
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=src, mode="rb")  # type: ignore[call-overload]
    if head[:3] == b"BZh":
        import bz2

        return bz2.BZ2File(src, "rb")  # type: ignore[call-overload]
    if head[:6] == b"\xfd7zXZ\x00":
        import lzma

        return lzma.LZMAFile(src, "rb")  # type: ignore[arg-type]
    if head[:4] == b"\x28\xb5\x2f\xfd":
        raise Unsupported("zstd-compressed layers are not supported")
    return src
