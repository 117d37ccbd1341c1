"""The metadata store: one SQLite database under the data root."""

from dockyard.store.db import Collection, Store

__all__ = ["Collection", "Store"]
