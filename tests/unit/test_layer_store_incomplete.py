"""LayerStore readers: a layer row still marked incomplete is absent to all of them.

`create` writes the row marked incomplete before any file (so a crash leaves a row that
says so) and clears the mark only once the files are durable. Until then no reader may
hand the layer out: not `get` (sizes, commits, the build cache), not `compressed` (push).
Driven through a real ImageService on a temporary data root (real SQLite, real files)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from dockyard.errdefs import InvalidArgument
from dockyard.events import EventBus
from dockyard.images.service import ImageService
from dockyard.store import Store

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="layer extraction chowns: needs root")


def _tar(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data.encode()))
    return buf.getvalue()


def test_an_incomplete_layer_is_absent_to_every_reader(tmp_path: Path) -> None:
    db = Store(tmp_path / "db.sqlite")
    svc = ImageService(db, tmp_path / "data", EventBus())
    src = tmp_path / "rootfs.tar"
    src.write_bytes(_tar({"etc/hostname": "x\n", "bin/tool": "#!/bin/sh\n"}))
    img = asyncio.run(svc.import_image(src, repo="base", changes=[]))
    (chain,) = img.chain_ids
    assert svc.layers.get(chain) is not None
    svc.layers.set_compressed(chain, img.config["rootfs"]["diff_ids"][0], 1)  # any committed blob
    assert svc.layers.compressed(chain) is not None

    # the state `create` is in while it extracts (or a crash left): the row is marked
    row = db.layers.get(chain)
    assert row is not None
    db.layers.put(chain, {**row, "incomplete": True}, name=row["diff_id"])

    assert svc.layers.get(chain) is None
    assert not svc.layers.exists(chain)
    assert svc.layers.compressed(chain) is None
    # an image may not be committed on top of it (the builder's and commit's path)
    config = json.loads(img.config_bytes)
    config["config"] = {**(config.get("config") or {}), "Env": ["NEW=1"]}
    with pytest.raises(InvalidArgument, match="is missing"):
        asyncio.run(svc.create_image(config, parent=img.id))
    # `create` completes it again: then it is a layer like any other
    layer, created = svc.layers.create(None, row["diff_id"])
    assert created and svc.layers.get(chain) == layer
    assert svc.layers.exists(chain)
