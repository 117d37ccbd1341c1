"""The content-addressed blob store: immutable blobs keyed by digest.

Owns `blobs/` under the data root. A blob is written through a `Writer` into an ingest
file, hashed as it streams, fsynced, verified against the expected digest and size, and
only then renamed into place (containerd's local content writer). It must not know what
a blob means (layer, config, manifest); that is for its callers.

Layout::

    blobs/
      ingest/<random>          a write in progress (removed on abort or commit)
      sha256/<hex>             a committed blob, never modified

Flow::

    w = content.writer()
    w.write(chunk) ...          # streaming, the digest is computed on the fly
    digest = w.commit(expected="sha256:...")   # or w.abort()
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO

from dockyard.errdefs import InvalidArgument, NotFound

__all__ = ["ContentStore", "DigestMismatch", "Writer", "sha256_file"]

CHUNK = 1 << 20


class DigestMismatch(InvalidArgument):
    pass


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _hex(digest: str) -> str:
    alg, _, hexpart = digest.partition(":")
    if alg != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise InvalidArgument(f"invalid digest {digest!r}")
    return hexpart


class Writer:
    """A blob being written. A file-like object with `write`, usable by tarfile."""

    def __init__(self, store: ContentStore) -> None:
        self._store = store
        self.path = store.root / "ingest" / secrets.token_hex(16)
        self._f: BinaryIO | None = open(self.path, "xb")
        self._h = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        assert self._f is not None, "writer is closed"
        self._f.write(data)
        self._h.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    @property
    def digest(self) -> str:
        return "sha256:" + self._h.hexdigest()

    def commit(self, expected: str | None = None, size: int | None = None) -> str:
        """fsync, verify, rename into `blobs/sha256/<hex>`; returns the digest."""
        assert self._f is not None, "writer is closed"
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
        finally:
            self._f.close()
            self._f = None
        digest = self.digest
        if expected is not None and expected != digest:
            self.path.unlink(missing_ok=True)
            raise DigestMismatch(f"digest mismatch: expected {expected}, got {digest}")
        if size is not None and size != self.size:
            self.path.unlink(missing_ok=True)
            raise DigestMismatch(f"size mismatch for {digest}: expected {size}, got {self.size}")
        target = self._store.path(digest)
        if target.exists():
            self.path.unlink(missing_ok=True)  # identical content is already committed
        else:
            os.rename(self.path, target)
            _fsync_dir(target.parent)
        return digest

    def abort(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._f is not None:
            self.abort()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ContentStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "sha256").mkdir(mode=0o700, parents=True, exist_ok=True)
        ingest = root / "ingest"
        ingest.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in ingest.iterdir():  # a crashed write; never committed, so nobody refers to it
            stale.unlink(missing_ok=True)

    def writer(self) -> Writer:
        return Writer(self)

    def path(self, digest: str) -> Path:
        return self.root / "sha256" / _hex(digest)

    def exists(self, digest: str) -> bool:
        return self.path(digest).exists()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def digests(self) -> list[str]:
        return ["sha256:" + p.name for p in (self.root / "sha256").iterdir()]
