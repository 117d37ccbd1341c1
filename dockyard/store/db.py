"""The one SQLite database (WAL mode) that holds every persistent object's metadata.

Schema (version 4)::

    meta        key TEXT PK, value TEXT             schema version
    containers  id PK, name UNIQUE, created, doc    doc = the container record (JSON)
    images      id PK, name NULL, created, doc      id = sha256 of the image config
    refs        id PK (e.g. "busybox:latest"), name = image id, created, doc
    layers      id PK (chain id), name NULL, created, doc (diff id, parent, cache id, size)
    execs       id PK, name = container id, created, doc
    volumes     id PK = name = volume name, created, doc   (version 2)
    build_cache id PK = cache key (sha256 of parent + instruction + sources), name = image id,
                created, doc = {"image", "config", "parent", "created_by", "last_used"}   (version 3)
    networks    id PK (64 hex), name UNIQUE = network name, created, doc  (version 4)
                doc = Docker's network inspect shape plus a private `Dockyard` section:
                bridge device, and the endpoints (one per attached running container)

Every object table has the same four columns, so one `Collection` class serves them all.
Blobs and layer contents live in files; only their metadata is here. A row is committed
before the operation that wrote it returns, so `kill -9` of the daemon loses nothing that
a client was told about.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 4
_V1_TABLES = ("containers", "images", "refs", "layers", "execs")
TABLES = (*_V1_TABLES, "volumes", "build_cache", "networks")

_MIGRATIONS: dict[int, list[str]] = {
    1: [
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        *(
            f"CREATE TABLE IF NOT EXISTS {t} (id TEXT PRIMARY KEY, name TEXT, "
            "created REAL NOT NULL, doc TEXT NOT NULL)"
            for t in _V1_TABLES
        ),
        "CREATE UNIQUE INDEX IF NOT EXISTS containers_name ON containers(name)",
        "CREATE INDEX IF NOT EXISTS refs_name ON refs(name)",
        "CREATE INDEX IF NOT EXISTS execs_name ON execs(name)",
    ],
    2: [
        (
            "CREATE TABLE IF NOT EXISTS volumes (id TEXT PRIMARY KEY, name TEXT, "
            "created REAL NOT NULL, doc TEXT NOT NULL)"
        ),
    ],
    3: [
        (
            "CREATE TABLE IF NOT EXISTS build_cache (id TEXT PRIMARY KEY, name TEXT, "
            "created REAL NOT NULL, doc TEXT NOT NULL)"
        ),
        "CREATE INDEX IF NOT EXISTS build_cache_name ON build_cache(name)",
    ],
    4: [
        (
            "CREATE TABLE IF NOT EXISTS networks (id TEXT PRIMARY KEY, name TEXT, "
            "created REAL NOT NULL, doc TEXT NOT NULL)"
        ),
        "CREATE UNIQUE INDEX IF NOT EXISTS networks_name ON networks(name)",
    ],
}


class Collection:
    """One object table: rows of (id, name, created, doc)."""

    def __init__(self, store: Store, table: str) -> None:
        assert table in TABLES
        self._store = store
        self._table = table
        # id -> (created, rowid order, decoded doc): a read-only mirror of the table kept by
        # this process's writes (the daemon is the database's only writer); filled lazily
        self._mirror: dict[str, tuple[float, int, dict[str, Any]]] | None = None
        self._seq = 0

    def get(self, id: str) -> dict[str, Any] | None:
        row = self._store._query_one(f"SELECT doc FROM {self._table} WHERE id=?", (id,))
        return json.loads(row[0]) if row else None

    def exists(self, id: str) -> bool:
        return self._store._query_one(f"SELECT 1 FROM {self._table} WHERE id=?", (id,)) is not None

    def get_by_name(self, name: str) -> dict[str, Any] | None:
        row = self._store._query_one(f"SELECT doc FROM {self._table} WHERE name=?", (name,))
        return json.loads(row[0]) if row else None

    def ids_with_prefix(self, prefix: str) -> list[str]:
        rows = self._store._query(
            f"SELECT id FROM {self._table} WHERE id >= ? AND id < ?", (prefix, prefix + "\uffff")
        )
        return [r[0] for r in rows]

    def ids_by_name(self, name: str) -> list[str]:
        return [r[0] for r in self._store._query(f"SELECT id FROM {self._table} WHERE name=?", (name,))]

    def put(self, id: str, doc: dict[str, Any], *, name: str | None = None, created: float | None = None) -> None:
        raw = json.dumps(doc)
        when = created if created is not None else time.time()
        self._store._execute(
            f"INSERT INTO {self._table}(id, name, created, doc) VALUES (?,?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET name=excluded.name, doc=excluded.doc",
            (id, name, when, raw),
        )
        if self._mirror is not None:
            old = self._mirror.get(id)
            self._seq += 1
            entry = (old[0], old[1], json.loads(raw)) if old else (when, self._seq, json.loads(raw))
            self._mirror[id] = entry

    def delete(self, id: str) -> bool:
        if self._mirror is not None:
            self._mirror.pop(id, None)
        return self._store._execute(f"DELETE FROM {self._table} WHERE id=?", (id,)) > 0

    def snapshot(self) -> list[dict[str, Any]]:
        """Every doc, newest first, WITHOUT copying: callers must not modify them.

        For hot read-only views (`ps -a` over hundreds of containers) where decoding each
        row's JSON again would dominate.
        """
        with self._store._lock:
            entries = sorted(self._loaded().values(), key=lambda e: (e[0], e[1]), reverse=True)
        return [e[2] for e in entries]

    def snapshot_by_id(self) -> dict[str, dict[str, Any]]:
        """`snapshot`'s docs by id, in no order (same rule: do not modify them)."""
        with self._store._lock:
            return {id: e[2] for id, e in self._loaded().items()}

    def _loaded(self) -> dict[str, tuple[float, int, dict[str, Any]]]:
        if self._mirror is None:
            rows = self._store._query(f"SELECT id, created, rowid, doc FROM {self._table}")
            self._mirror = {r[0]: (r[1], r[2], json.loads(r[3])) for r in rows}
            self._seq = max((r[2] for r in rows), default=0)
        return self._mirror

    def all(self) -> list[dict[str, Any]]:
        rows = self._store._query(f"SELECT doc FROM {self._table} ORDER BY created DESC, rowid DESC")
        return [json.loads(r[0]) for r in rows]

    def rows(self) -> list[tuple[str, str | None, float]]:
        return list(self._store._query(f"SELECT id, name, created FROM {self._table} ORDER BY created DESC"))


class Store:
    def __init__(self, path: Path) -> None:
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._depth = 0
        self._migrate()
        self.containers = Collection(self, "containers")
        self.images = Collection(self, "images")
        self.refs = Collection(self, "refs")
        self.layers = Collection(self, "layers")
        self.execs = Collection(self, "execs")
        self.volumes = Collection(self, "volumes")
        self.build_cache = Collection(self, "build_cache")
        self.networks = Collection(self, "networks")

    def _migrate(self) -> None:
        self._conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        current = int(row[0]) if row else 0
        for version in sorted(v for v in _MIGRATIONS if v > current):
            with self.transaction():
                for stmt in _MIGRATIONS[version]:
                    self._conn.execute(stmt)
                self._conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(version),)
                )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes so they commit together (nestable; the outermost one commits)."""
        with self._lock:
            if self._depth == 0:
                self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if self._depth == 0:
                    self._conn.execute("ROLLBACK")
                    for c in vars(self).values():  # the mirrors may hold rolled-back writes
                        if isinstance(c, Collection):
                            c._mirror = None
                raise
            self._depth -= 1
            if self._depth == 0:
                self._conn.execute("COMMIT")

    def _execute(self, sql: str, args: tuple[Any, ...]) -> int:
        with self._lock:
            return self._conn.execute(sql, args).rowcount

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _query_one(self, sql: str, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        with self._lock:
            row: tuple[Any, ...] | None = self._conn.execute(sql, args).fetchone()
            return row

    def close(self) -> None:
        self._conn.close()
