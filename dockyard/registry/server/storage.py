"""Registry storage: the `Storage` protocol and its filesystem driver.

Owns everything the registry keeps on disk; the HTTP layer (`server/app.py`) only calls
these methods. Blobs are content-addressed and shared by every repository; a repository
sees a blob only through a link, so a blob is visible in a repository only after its
digest was verified (uploads are hashed, then renamed into place). Writes that finish
the same blob concurrently are safe: the rename of identical content is idempotent.

Layout (like distribution's `paths.go`)::

    <root>/
      blobs/sha256/<hex>                               verified content, never modified
      uploads/<uuid>/data                              an upload in progress
      uploads/<uuid>/repo                              the repository it was started in
      repositories/<name>/_layers/sha256/<hex>         link: the blob is in this repository
      repositories/<name>/_manifests/revisions/sha256/<hex>   link: a manifest of this repository
      repositories/<name>/_manifests/tags/<tag>        the digest the tag points at
      repositories/<name>/_referrers/<subject hex>/<hex>      descriptor JSON of a referrer

Every path is built by `_under()` from names this module checked itself (repository and
tag grammar, digests of a registered algorithm, upload ids) and, independently of those
checks, refused unless it resolves (symlinks included) to a place under the root: the
HTTP layer validates first, this is the second line, so a missed check there cannot
write outside the root.

Flow::

    uid = st.start_upload("lib/bb")
    st.append_upload(uid, offset=0, data=b"...")       # PATCH; returns the new size
    st.commit_upload(uid, "sha256:...")                 # PUT; verifies, renames, links
    st.put_manifest("lib/bb", "latest", body, media_type, blobs=[...], subject=None)
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from dockyard._sys.fs import write_atomic
from dockyard.registry import spec
from dockyard.registry.spec import RegistryError

__all__ = ["FilesystemStorage", "Storage", "UploadState"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class UploadState:
    uuid: str
    repo: str
    size: int


class Storage(Protocol):
    """The registry's storage lifecycle: upload → commit → link; manifest put → tag; delete; gc."""

    def blob_size(self, digest: str) -> int | None: ...
    def repo_has_blob(self, repo: str, digest: str) -> bool: ...
    def open_blob(self, digest: str) -> BinaryIO: ...
    def link_blob(self, repo: str, digest: str) -> None: ...
    def unlink_blob(self, repo: str, digest: str) -> bool: ...
    def start_upload(self, repo: str) -> str: ...
    def upload_state(self, repo: str, uuid: str) -> UploadState: ...
    def append_upload(self, repo: str, uuid: str, offset: int, data: bytes) -> int: ...
    def commit_upload(self, repo: str, uuid: str, digest: str) -> int: ...
    def cancel_upload(self, repo: str, uuid: str) -> None: ...
    def get_manifest(self, repo: str, ref: str) -> tuple[str, bytes] | None: ...
    def put_manifest(
        self,
        repo: str,
        digest: str,
        body: bytes,
        tags: list[str],
        subject: dict[str, object] | None,
        descriptor: dict[str, object],
    ) -> None: ...
    def delete_manifest(self, repo: str, ref: str) -> bool: ...
    def tags(self, repo: str) -> list[str] | None: ...
    def repositories(self) -> list[str]: ...
    def referrers(self, repo: str, digest: str) -> list[dict[str, object]]: ...
    def gc(self, *, dry_run: bool = False) -> list[str]: ...


def _hex(digest: str) -> tuple[str, str]:
    """(algorithm, hex) of a digest that passes the spec's grammar; DIGEST_INVALID otherwise."""
    problem = spec.digest_problem(digest)
    if problem is not None:
        raise RegistryError("DIGEST_INVALID", problem, detail={"digest": digest})
    alg, _, hexpart = digest.partition(":")
    return alg, hexpart


def _repo_parts(repo: str) -> list[str]:
    if not spec.is_name(repo):
        raise RegistryError("NAME_INVALID", detail={"name": repo})
    return repo.split("/")


def _tag(tag: str) -> str:
    if not spec.is_tag(tag):
        raise RegistryError("TAG_INVALID", detail={"tag": tag})
    return tag


class FilesystemStorage:
    def __init__(self, root: Path) -> None:
        self.root = root
        for d in ("blobs", "uploads", "repositories"):
            (root / d).mkdir(parents=True, exist_ok=True)
        self._real_root = os.path.realpath(root)
        self._hashers: dict[str, tuple[int, hashlib._Hash]] = {}  # uuid -> (offset hashed, state)

    def __repr__(self) -> str:
        return f"<FilesystemStorage {self.root}>"

    def _under(self, *parts: str) -> Path:
        """root/parts, refused unless each part is one plain name and the result, with
        symlinks resolved, lies under the root. Independent of the grammar checks above."""
        for p in parts:
            if not p or p in (".", "..") or "/" in p or "\0" in p:
                raise RegistryError("NAME_INVALID", f"path component {p!r} is not allowed in the root")
        path = self.root.joinpath(*parts)
        real = os.path.realpath(path)
        if os.path.commonpath([real, self._real_root]) != self._real_root:
            raise RegistryError("NAME_INVALID", f"path {'/'.join(parts)!r} escapes the registry root")
        return path

    # -- blobs ----------------------------------------------------------------------------

    def _blob(self, digest: str) -> Path:
        return self._under("blobs", *_hex(digest))

    def _repo(self, repo: str, *rest: str) -> Path:
        return self._under("repositories", *_repo_parts(repo), *rest)

    def _layer_link(self, repo: str, digest: str) -> Path:
        return self._repo(repo, "_layers", *_hex(digest))

    def _rev_link(self, repo: str, digest: str) -> Path:
        return self._repo(repo, "_manifests", "revisions", *_hex(digest))

    def _tag_link(self, repo: str, tag: str) -> Path:
        return self._repo(repo, "_manifests", "tags", _tag(tag))

    def blob_size(self, digest: str) -> int | None:
        try:
            return self._blob(digest).stat().st_size
        except FileNotFoundError:
            return None

    def repo_has_blob(self, repo: str, digest: str) -> bool:
        return self._layer_link(repo, digest).exists() and self._blob(digest).exists()

    def open_blob(self, digest: str) -> BinaryIO:
        try:
            return open(self._blob(digest), "rb")
        except FileNotFoundError:
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": digest}) from None

    def link_blob(self, repo: str, digest: str) -> None:
        write_atomic(self._layer_link(repo, digest), digest.encode())

    def unlink_blob(self, repo: str, digest: str) -> bool:
        link = self._layer_link(repo, digest)
        if not link.exists():
            return False
        link.unlink()
        return True

    def _put_blob(self, digest: str, data: bytes) -> None:
        target = self._blob(digest)
        if not target.exists():
            write_atomic(target, data)

    # -- uploads --------------------------------------------------------------------------

    def _upload(self, uuid: str) -> Path:
        if not spec.is_upload_id(uuid):
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": uuid})
        return self._under("uploads", uuid)

    def start_upload(self, repo: str) -> str:
        uuid = secrets.token_hex(16)
        d = self._upload(uuid)
        d.mkdir(parents=True)
        (d / "repo").write_text(repo)
        (d / "data").touch()
        self._hashers[uuid] = (0, hashlib.sha256())
        return uuid

    def upload_state(self, repo: str, uuid: str) -> UploadState:
        d = self._upload(uuid)
        try:
            owner = (d / "repo").read_text()
            size = (d / "data").stat().st_size
        except FileNotFoundError:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN") from None
        if owner != repo:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN")
        return UploadState(uuid, repo, size)

    def append_upload(self, repo: str, uuid: str, offset: int, data: bytes) -> int:
        """Write `data` at `offset`, which must be the current size (416 otherwise)."""
        st = self.upload_state(repo, uuid)
        if offset != st.size:
            raise RegistryError(
                "RANGE_INVALID", f"expected chunk at offset {st.size}, got {offset}", detail={"size": st.size}
            )
        with open(self._upload(uuid) / "data", "ab") as f:
            f.write(data)
        hashed = self._hashers.get(uuid)
        if hashed is not None and hashed[0] == offset:
            hashed[1].update(data)
            self._hashers[uuid] = (offset + len(data), hashed[1])
        return st.size + len(data)

    def commit_upload(self, repo: str, uuid: str, digest: str) -> int:
        """Verify the upload against `digest`, move it into the blob store and link it to repo."""
        st = self.upload_state(repo, uuid)
        data = self._upload(uuid) / "data"
        alg, _ = _hex(digest)
        hashed = self._hashers.get(uuid)
        if alg == "sha256" and hashed is not None and hashed[0] == st.size:
            actual = "sha256:" + hashed[1].hexdigest()
        else:
            actual = _hash_file(data, alg)
        if actual != digest:
            self.cancel_upload(repo, uuid)
            raise RegistryError("DIGEST_INVALID", detail={"expected": digest, "actual": actual})
        target = self._blob(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(data, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(data, target)  # identical content may already be there: same bytes either way
        self.link_blob(repo, digest)
        self.cancel_upload(repo, uuid)
        return st.size

    def cancel_upload(self, repo: str, uuid: str) -> None:
        self._hashers.pop(uuid, None)
        shutil.rmtree(self._upload(uuid), ignore_errors=True)

    # -- manifests and tags ---------------------------------------------------------------

    def get_manifest(self, repo: str, ref: str) -> tuple[str, bytes] | None:
        if ":" in ref:
            digest = ref
        else:
            try:
                digest = self._tag_link(repo, ref).read_text().strip()
            except (FileNotFoundError, NotADirectoryError):
                return None
            if not spec.is_digest(digest):  # a damaged tag file is no manifest
                return None
        if not self._rev_link(repo, digest).exists():
            return None
        try:
            return digest, self._blob(digest).read_bytes()
        except FileNotFoundError:
            return None

    def put_manifest(
        self,
        repo: str,
        digest: str,
        body: bytes,
        tags: list[str],
        subject: dict[str, object] | None,
        descriptor: dict[str, object],
    ) -> None:
        # every path first, so a refused name writes nothing at all
        tag_links = [self._tag_link(repo, tag) for tag in tags]
        referrer = None
        if subject is not None:
            _, shex = _hex(str(subject.get("digest", "")))
            _, mhex = _hex(digest)
            referrer = self._repo(repo, "_referrers", shex, mhex)
        rev_link = self._rev_link(repo, digest)
        self._put_blob(digest, body)
        write_atomic(rev_link, digest.encode())
        self.link_blob(repo, digest)
        for link in tag_links:
            write_atomic(link, digest.encode())
        if referrer is not None:
            write_atomic(referrer, json.dumps(descriptor).encode())

    def delete_manifest(self, repo: str, ref: str) -> bool:
        tags_dir = self._repo(repo, "_manifests", "tags")
        if ":" not in ref:  # a tag: drop the tag only (distribution deletes tags the same way)
            try:
                self._tag_link(repo, ref).unlink()
                return True
            except (FileNotFoundError, NotADirectoryError):
                return False
        rev = self._rev_link(repo, ref)
        if not rev.exists():
            return False
        rev.unlink()
        if tags_dir.is_dir():
            for t in tags_dir.iterdir():
                if t.read_text().strip() == ref:
                    t.unlink(missing_ok=True)
        _, mhex = _hex(ref)
        refd = self._repo(repo, "_referrers")
        if refd.is_dir():
            for sub in refd.iterdir():
                (sub / mhex).unlink(missing_ok=True)
        return True

    def tags(self, repo: str) -> list[str] | None:
        d = self._repo(repo)
        if not (d / "_manifests").is_dir() and not (d / "_layers").is_dir():
            return None
        tags_dir = d / "_manifests" / "tags"
        return sorted(p.name for p in tags_dir.iterdir()) if tags_dir.is_dir() else []

    def repositories(self) -> list[str]:
        base = self.root / "repositories"
        out = []
        for dirpath, dirnames, _ in os.walk(base):
            if "_manifests" in dirnames or "_layers" in dirnames:
                out.append(os.path.relpath(dirpath, base))
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        return sorted(r for r in out if spec.is_name(r))

    def referrers(self, repo: str, digest: str) -> list[dict[str, object]]:
        _, shex = _hex(digest)
        d = self._repo(repo, "_referrers", shex)
        if not d.is_dir():
            return []
        return [json.loads(p.read_bytes()) for p in sorted(d.iterdir())]

    # -- garbage collection ---------------------------------------------------------------

    def gc(self, *, dry_run: bool = False, upload_age: float = 24 * 3600) -> list[str]:
        """Mark every blob a live manifest references (recursively through indexes); sweep the rest."""
        keep: set[str] = set()
        for repo in self.repositories():
            revs = self._repo(repo, "_manifests", "revisions", "sha256")
            live = ["sha256:" + p.name for p in revs.iterdir()] if revs.is_dir() else []
            stack = list(live)
            while stack:
                dg = stack.pop()
                if dg in keep:
                    continue
                keep.add(dg)
                try:
                    doc = json.loads(self._blob(dg).read_bytes())
                except (FileNotFoundError, ValueError, RegistryError):
                    continue
                for desc in [doc.get("config") or {}, *(doc.get("layers") or [])]:
                    if desc.get("digest"):
                        keep.add(desc["digest"])
                for desc in doc.get("manifests") or []:
                    if desc.get("digest"):
                        stack.append(desc["digest"])
        removed = []
        blobs = self.root / "blobs" / "sha256"
        if blobs.is_dir():
            for p in blobs.iterdir():
                dg = "sha256:" + p.name
                if dg not in keep:
                    removed.append(dg)
                    if not dry_run:
                        p.unlink(missing_ok=True)
        if not dry_run:
            gone = set(removed)
            for repo in self.repositories():
                layers = self._repo(repo, "_layers", "sha256")
                if layers.is_dir():
                    for p in layers.iterdir():
                        if "sha256:" + p.name in gone:
                            p.unlink(missing_ok=True)
            now = time.time()
            for up in (self.root / "uploads").iterdir():
                if now - up.stat().st_mtime > upload_age:
                    shutil.rmtree(up, ignore_errors=True)
        return sorted(removed)


def _hash_file(path: Path, alg: str) -> str:
    h = hashlib.new(alg)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return f"{alg}:{h.hexdigest()}"
