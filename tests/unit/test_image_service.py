"""ImageService driven directly: import, rootfs snapshots, changes, commit, delete, GC."""

from __future__ import annotations

import asyncio
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from dockyard.errdefs import Conflict, InvalidArgument, NotFound
from dockyard.events import EventBus
from dockyard.images.progress import ImageLoaded
from dockyard.images.service import ImageService
from dockyard.store import Store

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="overlay whiteouts need root")


def _rootfs(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data.encode()))
    return buf.getvalue()


@pytest.fixture
def svc(tmp_path: Path) -> ImageService:
    store = Store(tmp_path / "db.sqlite")
    s = ImageService(store, tmp_path / "data", EventBus())
    return s


def _import(svc: ImageService, tmp_path: Path, files: dict[str, str], repo: str | None = "base") -> str:
    src = tmp_path / f"src-{len(list(tmp_path.iterdir()))}.tar"
    src.write_bytes(_rootfs(files))
    img = asyncio.run(svc.import_image(src, repo=repo, changes=['CMD ["sh"]']))
    return img.id


def test_rootfs_changes_and_commit(svc: ImageService, tmp_path: Path) -> None:
    base = _import(svc, tmp_path, {"etc/passwd": "root", "etc/group": "g", "keep": "k"})
    m = svc.prepare_rootfs("c1", base)
    assert m.type == "overlay"
    opts = dict(o.split("=", 1) for o in m.options if "=" in o)
    assert opts["upperdir"] == str(svc.upper_dir("c1"))
    assert svc.prepare_rootfs("c1", base) == m  # idempotent

    # What a container would leave in its upper dir: a new file, a change and a deletion.
    upper = svc.upper_dir("c1")
    (upper / "etc").mkdir()
    (upper / "etc/passwd").write_text("root\nnobody")
    os.mknod(upper / "etc/group", 0o20000, os.makedev(0, 0))
    (upper / "new").write_text("n")
    # runc's mount points exist in the init layer, so they never land in upper.
    assert svc.changes("c1") == [
        {"Path": "/etc", "Kind": 0},
        {"Path": "/etc/group", "Kind": 2},
        {"Path": "/etc/passwd", "Kind": 0},
        {"Path": "/new", "Kind": 1},
    ]

    cfg = {"Cmd": ["sh", "-c", "echo"], "Env": ["A=1"]}
    img = asyncio.run(
        svc.commit(
            "c1", base, cfg, container_id="c1" * 32, repo="committed", tag="v1", comment="snap",
            author="me", changes=["ENV B=2", "LABEL x=y"],
        )
    )  # fmt: skip
    assert img.repo_tags == ("committed:v1",)
    assert img.parent == base
    assert img.config["config"]["Env"] == ["A=1", "B=2"]
    assert img.config["config"]["Labels"] == {"x": "y"}
    assert img.config["history"][-1]["created_by"] == "sh -c echo"
    assert img.config["history"][-1]["comment"] == "snap"
    assert len(img.diff_ids) == 2
    top = svc.lowers(img)[0]
    assert os.stat(top / "etc/group").st_rdev == 0
    assert (top / "new").read_text() == "n"
    j = svc.image_json(img)
    assert j["Parent"] == base and j["Author"] == "me" and j["Container"] == "c1" * 32
    assert [h["Id"] for h in svc.history(img)] == [img.id, base]

    # The parent has a dependent child now.
    with pytest.raises(Conflict, match="image has dependent child images"):
        asyncio.run(svc.delete(base, force=True))

    # A new container from the committed image sees through both layers.
    m2 = svc.prepare_rootfs("c2", img.id)
    lower = dict(o.split("=", 1) for o in m2.options if "=" in o)["lowerdir"].split(":")
    assert [os.path.realpath(p) for p in lower] == [str(svc.snapshots.init_dir("c2"))] + [
        str(p) for p in svc.lowers(img)
    ]
    assert all(len(p) < len(str(svc.lowers(img)[0])) for p in lower[1:])
    assert (svc.snapshots.init_dir("c2") / "etc/hosts").is_file()

    # Deleting the child image keeps layers the c2 snapshot still uses.
    svc.set_usage_check(lambda image_id: [])
    recs = asyncio.run(svc.delete("committed:v1"))
    assert recs[0] == {"Untagged": "committed:v1"}
    assert {"Deleted": img.id} in recs
    assert all(p.is_dir() for p in svc.lowers(img))
    svc.remove_rootfs("c2")
    svc.remove_rootfs("c1")
    asyncio.run(svc.gc())
    assert not svc.lowers(img)[0].exists()


def test_empty_commit_adds_no_layer(svc: ImageService, tmp_path: Path) -> None:
    base = _import(svc, tmp_path, {"a": "1"})
    svc.prepare_rootfs("e", base)
    img = asyncio.run(
        svc.commit("e", base, {"Cmd": ["x"]}, container_id="e", repo=None, tag=None, comment="", author="", changes=[])
    )
    assert img.diff_ids == svc.get(base).diff_ids  # type: ignore[union-attr]
    assert img.config["history"][-1]["empty_layer"] is True


def test_zero_layer_image_rootfs(svc: ImageService, tmp_path: Path) -> None:
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}})
    manifest = json.dumps([{"Config": "c.json", "RepoTags": ["scratchy:latest"], "Layers": []}])
    src = tmp_path / "scratch.tar"
    with tarfile.open(src, "w") as tf:
        for n, d in (("manifest.json", manifest), ("c.json", cfg)):
            ti = tarfile.TarInfo(n)
            ti.size = len(d)
            tf.addfile(ti, io.BytesIO(d.encode()))
    async def load() -> list[object]:
        return [ev async for ev in svc.load(src)]

    assert asyncio.run(load()) == [ImageLoaded(svc.resolve("scratchy").id, "scratchy:latest", None)]
    m = svc.prepare_rootfs("s", svc.resolve("scratchy").id)
    assert any(o.startswith("lowerdir=") and o.endswith("/init") for o in m.options)


def test_resolve_forms(svc: ImageService, tmp_path: Path) -> None:
    image_id = _import(svc, tmp_path, {"a": "1"}, repo="docker.io/library/resolve:7")
    for ref in ("resolve:7", "docker.io/library/resolve:7", image_id, image_id[7:], image_id[7:19], image_id[:19]):
        assert svc.resolve(ref).id == image_id
    with pytest.raises(NotFound, match=r"^No such image: resolve$"):
        svc.resolve("resolve")
    with pytest.raises(InvalidArgument, match="invalid reference format"):
        svc.resolve("Resolve")


def test_running_container_is_a_hard_conflict(svc: ImageService, tmp_path: Path) -> None:
    image_id = _import(svc, tmp_path, {"a": "1"}, repo="busy")

    class Containers:
        def ids_using_image(self, image_id: str) -> list[str]:
            return ["f" * 64]

        def running_ids_using_image(self, image_id: str) -> list[str]:
            return ["f" * 64]

    svc.set_usage_check(Containers().ids_using_image)
    svc.set_running_check(Containers().running_ids_using_image)
    with pytest.raises(Conflict) as exc:
        asyncio.run(svc.delete(image_id, force=True))
    assert str(exc.value) == (
        f"conflict: unable to delete {image_id[7:19]} (cannot be forced) - image is being used by running "
        f"container {'f' * 12}"
    )


def test_prepared_rootfs_mounts(svc: ImageService, tmp_path: Path) -> None:
    from dockyard._sys.mount import mount, unmount

    base = _import(svc, tmp_path, {"etc/passwd": "root", "bin/sh": "x"})
    m = svc.prepare_rootfs("mnt", base)
    target = tmp_path / "rootfs"
    target.mkdir()
    mount(m, target)
    try:
        assert (target / "etc/passwd").read_text() == "root"
        assert (target / "etc/hosts").is_file() and (target / "proc").is_dir()
        (target / "tmp").mkdir()
        (target / "tmp/x").write_text("new")
        (target / "etc/passwd").unlink()
    finally:
        unmount(target, lazy=False)
    assert svc.changes("mnt") == [
        {"Path": "/etc", "Kind": 0},
        {"Path": "/etc/passwd", "Kind": 2},
        {"Path": "/tmp", "Kind": 1},
        {"Path": "/tmp/x", "Kind": 1},
    ]
    svc.remove_rootfs("mnt")
    assert not svc.upper_dir("mnt").exists()
