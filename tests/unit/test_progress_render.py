"""api/progress.py renders the typed events of pull, push and load as Docker's JSON lines,
byte for byte as the daemon wrote them before the events existed (key order included:
the CLI does not care, but clients that compare streams do)."""

from __future__ import annotations

import json

from dockyard.api.progress import render
from dockyard.images.progress import (
    ImageLoaded,
    LayerEvent,
    LayerPhase,
    PullDone,
    PullStarted,
    PushDone,
    PushStarted,
    RepoDigest,
)

D = "sha256:" + "ab" * 32
IMG = "sha256:" + "cd" * 32


def _wire(ev: object) -> list[str]:
    return [json.dumps(m) for m in render(ev)]  # type: ignore[arg-type]


def test_pull_lines() -> None:
    assert _wire(PullStarted("library/busybox", "latest")) == [
        '{"status": "Pulling from library/busybox", "id": "latest"}'
    ]
    assert _wire(LayerEvent(LayerPhase.PULLING, D)) == [
        '{"status": "Pulling fs layer", "id": "abababababab", "progressDetail": {}}'
    ]
    assert _wire(LayerEvent(LayerPhase.DOWNLOADING, D, 5, 9)) == [
        '{"status": "Downloading", "id": "abababababab", "progressDetail": {"current": 5, "total": 9}}'
    ]
    assert _wire(LayerEvent(LayerPhase.EXTRACTING, D, 9, 9)) == [
        '{"status": "Extracting", "id": "abababababab", "progressDetail": {"current": 9, "total": 9}}'
    ]
    assert _wire(RepoDigest(D)) == [f'{{"status": "Digest: {D}"}}']
    assert _wire(PullDone("bb:1", False)) == ['{"status": "Status: Downloaded newer image for bb:1"}']
    assert _wire(PullDone("bb:1", True)) == ['{"status": "Status: Image is up to date for bb:1"}']


def test_push_lines() -> None:
    assert _wire(PushStarted("127.0.0.1:5000/bb")) == [
        '{"status": "The push refers to repository [127.0.0.1:5000/bb]"}'
    ]
    assert _wire(LayerEvent(LayerPhase.PREPARING, D)) == [
        '{"status": "Preparing", "progressDetail": {}, "id": "abababababab"}'
    ]
    assert _wire(LayerEvent(LayerPhase.PUSHING, D, 1, 2)) == [
        '{"status": "Pushing", "progressDetail": {"current": 1, "total": 2}, "id": "abababababab"}'
    ]
    assert _wire(LayerEvent(LayerPhase.MOUNTED, D, source="lib/x")) == [
        '{"status": "Mounted from lib/x", "progressDetail": {}, "id": "abababababab"}'
    ]
    assert _wire(PushDone("1", D, 527)) == [
        f'{{"status": "1: digest: {D} size: 527"}}',
        f'{{"progressDetail": {{}}, "aux": {{"Tag": "1", "Digest": "{D}", "Size": 527}}}}',
    ]


def test_load_lines() -> None:
    assert _wire(LayerEvent(LayerPhase.LOADING, D, 7, 7)) == [
        '{"status": "Loading layer", "id": "abababababab", "progressDetail": {"current": 7, "total": 7}}'
    ]
    assert _wire(ImageLoaded(IMG)) == [json.dumps({"stream": f"Loaded image ID: {IMG}\n"})]
    assert _wire(ImageLoaded(IMG, "bb:1", D)) == [
        json.dumps(
            {"stream": f"The image bb:1 already exists, renaming the old one with ID {D} to empty string\n"}
        ),
        json.dumps({"stream": "Loaded image: bb:1\n"}),
    ]
