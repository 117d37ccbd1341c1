"""Docker's `filters` rules shared by every object kind (bottom layer, like errdefs)."""

from __future__ import annotations

from collections.abc import Iterable


def labels_match(labels: dict[str, str], wanted: Iterable[str], *, any_of: bool = False) -> bool:
    """`label=k` (the key is set) and `label=k=v` (set to v); all must hold, or any with any_of."""
    results = []
    for w in wanted:
        k, sep, v = w.partition("=")
        results.append(k in labels and (not sep or labels[k] == v))
    return any(results) if any_of else all(results)
