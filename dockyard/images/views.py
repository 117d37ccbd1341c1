"""Read-only views of the image store in Docker's shapes: inspect, list (with its
filters), history and the image part of /system/df. Owns no state and writes nothing."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from dockyard.errdefs import InvalidArgument
from dockyard.filters import labels_match
from dockyard.images.config import full_container_config
from dockyard.images.model import Image, parse_created
from dockyard.images.store import ImageStore
from dockyard.timefmt import format_ts, parse_time_param

__all__ = ["disk_usage", "history", "image_json", "image_summary", "list_images", "until_filter"]

_LIST_FILTERS = ("dangling", "label", "reference", "before", "since", "until")


def image_json(store: ImageStore, image: Image) -> dict[str, Any]:
    cfg = image.config
    lowers = [store.layers.diff_dir(c) for c in reversed(image.chain_ids)]  # top first
    graph: dict[str, str] = {}
    if lowers:
        top = lowers[0].parent
        graph = {"MergedDir": str(top / "merged"), "UpperDir": str(lowers[0]), "WorkDir": str(top / "work")}
        if len(lowers) > 1:
            graph["LowerDir"] = ":".join(str(p) for p in lowers[1:])
    out: dict[str, Any] = {
        "Id": image.id,
        "RepoTags": list(image.repo_tags),
        "RepoDigests": list(image.repo_digests),
        "Parent": image.parent,
        "Comment": cfg.get("comment", ""),
        "Created": cfg.get("created") or "0001-01-01T00:00:00Z",
        "Container": cfg.get("container", ""),
        "ContainerConfig": full_container_config(cfg.get("container_config")),
        "DockerVersion": cfg.get("docker_version", ""),
        "Author": cfg.get("author", ""),
        "Config": full_container_config(cfg.get("config")),
        "Architecture": cfg.get("architecture", "amd64"),
        "Os": cfg.get("os", "linux"),
        "Size": image.size,
        "VirtualSize": image.size,
        "GraphDriver": {"Name": "overlay2", "Data": graph},
        "RootFS": {"Type": "layers", "Layers": image.diff_ids},
        "Metadata": {
            "LastTagTime": format_ts(image.last_tag_time) if image.last_tag_time else "0001-01-01T00:00:00Z"
        },
    }
    if cfg.get("variant"):
        out["Variant"] = cfg["variant"]
    return out


def image_summary(image: Image, *, containers: int = -1) -> dict[str, Any]:
    return {
        "Id": image.id,
        "ParentId": image.parent,
        "RepoTags": list(image.repo_tags),
        "RepoDigests": list(image.repo_digests),
        "Created": int(image.created),
        "Size": image.size,
        "SharedSize": -1,
        "VirtualSize": image.size,
        "Labels": image.labels or None,
        "Containers": containers,
    }


def list_images(
    store: ImageStore,
    users: Callable[[str], list[str]],
    *,
    all: bool = False,
    filters: dict[str, list[str]] | None = None,
    container_counts: bool = False,
) -> list[dict[str, Any]]:
    f = filters or {}
    for key in f:
        if key not in _LIST_FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'")
    images = store.all()
    parents = {img.parent for img in images if img.parent}
    dangling_filter: bool | None = None
    if "dangling" in f:
        vals = {v.lower() for v in f["dangling"]}
        if not vals <= {"true", "false", "1", "0"}:
            raise InvalidArgument(f"invalid filter 'dangling={','.join(f['dangling'])}'")
        dangling_filter = bool(vals & {"true", "1"})
    before = _filter_time(store, f, "before")
    since = _filter_time(store, f, "since")
    until = until_filter(f)
    out = []
    for img in images:
        dangling = not img.repo_tags and not img.repo_digests
        if not all and dangling and img.id in parents:
            continue  # intermediate images are hidden unless all=1, also from dangling=true (moby)
        if dangling_filter is not None and dangling != dangling_filter:
            continue
        if before is not None and not img.created < before:
            continue
        if since is not None and not img.created > since:
            continue
        if until is not None and not img.created < until:
            continue
        if "label" in f and not labels_match(img.labels, f["label"]):
            continue
        tags, digests = list(img.repo_tags), list(img.repo_digests)
        if "reference" in f:  # dockerd lists only the references that match
            tags = [t for t in tags if any(_ref_match(p, t) for p in f["reference"])]
            digests = [d for d in digests if any(_ref_match(p, d) for p in f["reference"])]
            if not tags and not digests:
                continue
        summary = image_summary(img, containers=len(users(img.id) or []) if container_counts else -1)
        summary["RepoTags"] = tags
        summary["RepoDigests"] = digests
        out.append(summary)
    out.sort(key=lambda s: s["Created"], reverse=True)
    return out


def _filter_time(store: ImageStore, f: dict[str, list[str]], key: str) -> float | None:
    if key not in f:
        return None
    created = [store.resolve(v).created for v in f[key]]
    return min(created) if key == "before" else max(created)


def until_filter(f: dict[str, list[str]]) -> float | None:
    if "until" not in f:
        return None
    try:
        return min(parse_time_param(v) for v in f["until"])
    except ValueError:
        raise InvalidArgument(f"invalid filter 'until={f['until'][0]}'") from None


def _ref_match(pattern: str, familiar_ref: str) -> bool:
    """Docker's reference filter (FamiliarMatch): a glob against the familiar name:tag or
    name@digest, or against the name alone."""
    name = familiar_ref.partition("@")[0] if "@" in familiar_ref else familiar_ref.rpartition(":")[0]
    return fnmatch.fnmatchcase(familiar_ref, pattern) or fnmatch.fnmatchcase(name, pattern)


def history(store: ImageStore, image: Image) -> list[dict[str, Any]]:
    hist = list(image.config.get("history") or [])
    diff_ids = image.diff_ids
    chains = image.chain_ids
    # The image IDs of local ancestors, by the number of layers they have.
    ancestors: dict[int, Image] = {}
    cur: Image | None = image
    while cur is not None:
        ancestors.setdefault(len(cur.config.get("history") or []), cur)
        cur = store.get(cur.parent) if cur.parent else None
    rows = []
    layer_i = 0
    for i, h in enumerate(hist):
        size = 0
        if not h.get("empty_layer") and layer_i < len(diff_ids):
            layer = store.layers.get(chains[layer_i])
            size = layer.size if layer else 0
            layer_i += 1
        anc = ancestors.get(i + 1)
        rows.append(
            {
                "Id": anc.id if anc else "<missing>",
                "Created": int(parse_created(h.get("created"))),
                "CreatedBy": h.get("created_by", ""),
                "Tags": list(anc.repo_tags) if anc and anc.repo_tags else None,
                "Size": size,
                "Comment": h.get("comment", ""),
            }
        )
    if not rows:
        rows.append(
            {
                "Id": image.id,
                "Created": int(image.created),
                "CreatedBy": "",
                "Tags": list(image.repo_tags) or None,
                "Size": image.size,
                "Comment": image.config.get("comment", ""),
            }
        )
    rows.reverse()
    return rows


def disk_usage(store: ImageStore, users: Callable[[str], list[str]]) -> dict[str, Any]:
    """For /system/df: image summaries (with container counts and SharedSize, the bytes
    of layers other images use too: the CLI counts an image in use as size - shared)."""
    images = list_images(store, users, all=True, container_counts=True)
    chains = {img.id: img.chain_ids for img in store.all()}
    counts: dict[str, int] = {}
    for ids in chains.values():
        for c in set(ids):
            counts[c] = counts.get(c, 0) + 1
    sizes: dict[str, int] = {}
    for c in counts:
        layer = store.layers.get(c)
        sizes[c] = layer.size if layer else 0
    for summary in images:
        summary["SharedSize"] = sum(sizes[c] for c in set(chains.get(summary["Id"], [])) if counts[c] > 1)
    return {"LayersSize": store.layer_bytes(), "Images": images}
