"""Images through the real clients: import, tag, rmi, inspect, history, save/load, prune,
filters, events, and archive interop with Debian's real dockerd."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from tests.conftest import Daemon, RealDocker, Runner, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")

# -- helpers ----------------------------------------------------------------------------


def rootfs_tar(files: dict[str, bytes | str] | None = None, *, gz: bool = False) -> bytes:
    """A tiny root filesystem: directories plus the given files."""
    files = {"etc/hostname": "dockyard\n", "bin/tool": b"\x7fELF-not-really", **(files or {})}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        dirs = sorted({str(Path(n).parent) for n in files if str(Path(n).parent) != "."})
        for dname in dirs:
            ti = tarfile.TarInfo(dname)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            tf.addfile(ti)
        for name, data in sorted(files.items()):
            raw = data.encode() if isinstance(data, str) else data
            ti = tarfile.TarInfo(name)
            ti.size = len(raw)
            ti.mode = 0o755 if name.startswith("bin/") else 0o644
            tf.addfile(ti, io.BytesIO(raw))
    data = buf.getvalue()
    return gzip.compress(data) if gz else data


def import_tar(docker_py: docker.DockerClient, data: bytes, repo: str | None, changes: list[str] | None = None) -> str:
    out = docker_py.api.import_image_from_data(data, repository=repo, changes=changes)
    status = json.loads(out.strip().splitlines()[-1])["status"]
    assert status.startswith("sha256:")
    return status


def state_of(d: Daemon) -> tuple[list[str], list[str], list[str]]:
    """Layer dirs, blobs and leftovers under the image part of the data root."""
    root = d.data_root
    layers = sorted(p.name for p in (root / "layers").iterdir()) if (root / "layers").exists() else []
    blobs = sorted(p.name for p in (root / "blobs/sha256").iterdir()) if (root / "blobs/sha256").exists() else []
    ingest = sorted(p.name for p in (root / "blobs/ingest").iterdir()) if (root / "blobs/ingest").exists() else []
    return layers, blobs, ingest


def api_error(fn: Callable[[], object]) -> docker.errors.APIError:
    with pytest.raises(docker.errors.APIError) as exc:
        fn()
    return exc.value


# -- import, list, inspect, history -----------------------------------------------------


def test_import_with_changes_and_inspect(docker_cli: Runner, docker_py: docker.DockerClient, unique, tmp_path: Path) -> None:
    repo = unique("imp")
    tar = tmp_path / "rootfs.tar"
    tar.write_bytes(rootfs_tar({"srv/app/data.txt": "hello"}))
    res = docker_cli(
        "import",
        "-c", 'CMD ["/bin/tool", "--serve"]',
        "-c", "ENV GREETING=hi PATH=/bin",
        "-c", "LABEL org.example.team=ships",
        "-c", "EXPOSE 8080/tcp 53/udp",
        "-c", "WORKDIR /srv/app",
        "-c", "USER 1000:1000",
        "-c", "VOLUME /data",
        "-c", "STOPSIGNAL SIGINT",
        "-c", "ENTRYPOINT [\"/bin/tool\"]",
        "-m", "made by the test",
        str(tar), f"{repo}:v1",
    )  # fmt: skip
    image_id = res.stdout.strip()
    assert image_id.startswith("sha256:")

    attrs = docker_py.images.get(f"{repo}:v1").attrs
    assert attrs["Id"] == image_id
    assert attrs["RepoTags"] == [f"{repo}:v1"]
    cfg = attrs["Config"]
    assert cfg["Cmd"] == ["/bin/tool", "--serve"]
    assert cfg["Entrypoint"] == ["/bin/tool"]
    assert cfg["Env"] == ["GREETING=hi", "PATH=/bin"]
    assert cfg["Labels"] == {"org.example.team": "ships"}
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert cfg["WorkingDir"] == "/srv/app"
    assert cfg["User"] == "1000:1000"
    assert cfg["Volumes"] == {"/data": {}}
    assert cfg["StopSignal"] == "SIGINT"
    assert attrs["Comment"] == "made by the test"
    assert attrs["Os"] == "linux" and attrs["Architecture"] == "amd64"
    assert attrs["RootFS"]["Type"] == "layers" and len(attrs["RootFS"]["Layers"]) == 1
    assert attrs["GraphDriver"]["Name"] == "overlay2"
    assert attrs["Size"] > 0
    assert attrs["Metadata"]["LastTagTime"] != "0001-01-01T00:00:00Z"
    assert "VirtualSize" not in attrs  # gone since API 1.44
    for key in ("Parent", "Created", "DockerVersion", "Author", "RepoDigests"):
        assert key in attrs

    # The layer on disk is the tar's content, and the image ID is the config's digest.
    upper = Path(attrs["GraphDriver"]["Data"]["UpperDir"])
    assert (upper / "srv/app/data.txt").read_text() == "hello"
    fmt = docker_cli("image", "inspect", "--format", "{{.Id}} {{json .RootFS.Layers}}", f"{repo}:v1").stdout
    assert fmt.split()[0] == image_id

    hist = docker_py.images.get(image_id).history()
    assert len(hist) == 1 and hist[0]["Comment"] == "made by the test" and hist[0]["Id"] == image_id
    out = docker_cli("history", "--format", "{{.ID}}|{{.Comment}}", f"{repo}:v1").stdout
    assert out.strip() == f"{image_id[7:19]}|made by the test"

    listed = docker_cli("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.splitlines()
    assert f"{repo}:v1 {image_id[7:19]}" in listed
    docker_cli("rmi", f"{repo}:v1")


def test_import_gzip_and_untagged(docker_py: docker.DockerClient, daemon: Daemon) -> None:
    image_id = import_tar(docker_py, rootfs_tar({"gz/file": "zipped"}, gz=True), None)
    img = docker_py.images.get(image_id)
    assert img.tags == []
    upper = Path(img.attrs["GraphDriver"]["Data"]["UpperDir"])
    assert (upper / "gz/file").read_text() == "zipped"
    assert image_id in [i["Id"] for i in docker_py.api.images(filters={"dangling": True})]
    assert docker_py.api.remove_image(image_id)[-1] == {"Deleted": image_id}
    assert not upper.exists()


def test_import_rejects_bad_input_and_leaves_nothing(docker_py: docker.DockerClient, daemon: Daemon, unique) -> None:
    before = state_of(daemon)
    err = api_error(lambda: docker_py.api.import_image_from_data(rootfs_tar(), repository="Bad/Name"))
    assert err.status_code == 400 and "invalid reference format" in str(err.explanation)
    err = api_error(lambda: docker_py.api.import_image_from_data(b"this is not a tar" * 100, repository=unique("x")))
    assert err.status_code == 400
    err = api_error(
        lambda: docker_py.api.import_image_from_data(rootfs_tar(), repository=unique("x"), changes=["RUN rm -rf /"])
    )
    assert err.status_code == 400
    assert state_of(daemon) == before


def test_images_are_created_by_the_busybox_fixture(docker_cli: Runner, busybox: str) -> None:
    out = docker_cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert busybox in out
    assert docker_cli("image", "inspect", "--format", "{{json .Config.Cmd}}", busybox).stdout.strip() == '["sh"]'


# -- tag, untag, rmi --------------------------------------------------------------------


def test_tag_untag_rmi_semantics(docker_cli: Runner, docker_py: docker.DockerClient, daemon: Daemon, unique) -> None:
    a, b = unique("tag-a"), unique("tag-b")
    image_id = import_tar(docker_py, rootfs_tar({"t": "1"}), f"{a}:1")
    short = image_id[7:19]
    docker_cli("tag", f"{a}:1", f"{b}:2")
    docker_cli("tag", image_id, f"localhost:5000/{b}/deep:3")
    assert sorted(docker_py.images.get(image_id).tags) == sorted([f"{a}:1", f"{b}:2", f"localhost:5000/{b}/deep:3"])
    # names with slashes resolve on every suffix route
    assert docker_py.api.inspect_image(f"localhost:5000/{b}/deep:3")["Id"] == image_id
    assert docker_py.api.history(f"localhost:5000/{b}/deep:3")[0]["Id"] == image_id

    # Deleting by ID while several repositories refer to it needs force.
    err = api_error(lambda: docker_py.api.remove_image(short))
    assert err.status_code == 409
    assert str(err.explanation) == (
        f"conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories"
    )
    # Removing one of several tags only untags.
    assert docker_py.api.remove_image(f"{b}:2") == [{"Untagged": f"{b}:2"}]
    out = docker_cli("rmi", f"localhost:5000/{b}/deep:3").stdout
    assert out.strip() == f"Untagged: localhost:5000/{b}/deep:3"
    assert docker_py.images.get(image_id).tags == [f"{a}:1"]
    # Tagging moves a tag; the last tag's removal deletes the image.
    docker_py.api.tag(image_id, a, "2")
    res = docker_py.api.remove_image(image_id, force=True)
    assert {"Untagged": f"{a}:1"} in res and {"Untagged": f"{a}:2"} in res and res[-1] == {"Deleted": image_id}
    err = api_error(lambda: docker_py.images.get(image_id))
    assert err.status_code == 404 and str(err.explanation) == f"No such image: {image_id}"


def test_rmi_errors(docker_py: docker.DockerClient, unique) -> None:
    missing = unique("missing")
    err = api_error(lambda: docker_py.api.remove_image(missing))
    assert err.status_code == 404 and str(err.explanation) == f"No such image: {missing}"
    err = api_error(lambda: docker_py.api.inspect_image("UpperCase"))
    assert err.status_code == 400 and "invalid reference format" in str(err.explanation)
    err = api_error(lambda: docker_py.api.tag("nonexistent-image-xyz", "x", "y"))
    assert err.status_code == 404
    image_id = import_tar(docker_py, rootfs_tar({"e": "1"}), None)
    err = api_error(lambda: docker_py.api.tag(image_id, "bad repo", "x"))
    assert err.status_code == 400
    err = api_error(lambda: docker_py.api.tag(image_id, "ok", "bad:tag"))
    assert err.status_code == 400
    docker_py.api.remove_image(image_id)


def test_rmi_conflicts_with_containers(docker_py: docker.DockerClient, unique) -> None:
    repo = unique("used")
    image_id = import_tar(
        docker_py, rootfs_tar(), f"{repo}:latest", changes=['CMD ["/bin/tool"]', f"LABEL used-by={repo}"]
    )
    try:
        cid = docker_py.api.create_container(f"{repo}:latest")["Id"]
    except docker.errors.APIError:
        docker_py.api.remove_image(image_id, force=True)
        raise
    try:
        err = api_error(lambda: docker_py.api.remove_image(image_id))
        assert err.status_code == 409
        assert str(err.explanation) == (
            f"conflict: unable to delete {image_id[7:19]} (must be forced) - image is being used by stopped "
            f"container {cid[:12]}"
        )
        err = api_error(lambda: docker_py.api.remove_image(f"{repo}:latest"))
        assert err.status_code == 409 and "(must force) - container" in str(err.explanation)
        # An image in use is never pruned, even with dangling=false.
        res = docker_py.api.prune_images(filters={"dangling": False, "label": [f"used-by={repo}"]})
        assert res["ImagesDeleted"] is None
    finally:
        docker_py.api.remove_container(cid, force=True)
    docker_py.api.remove_image(image_id)


# -- save / load ------------------------------------------------------------------------


def test_save_load_round_trip_several_images(
    docker_cli: Runner, docker_py: docker.DockerClient, daemon: Daemon, unique, tmp_path: Path
) -> None:
    a, b = unique("save-a"), unique("save-b")
    id_a = import_tar(docker_py, rootfs_tar({"a": "A"}), f"{a}:1", changes=['CMD ["/bin/tool", "a"]'])
    id_b = import_tar(docker_py, rootfs_tar({"b": "B"}), f"{b}:latest")
    docker_cli("tag", f"{a}:1", f"{a}:2")
    out = tmp_path / "two.tar"
    docker_cli("save", "-o", str(out), a, f"{b}:latest")  # a bare repository saves all its tags

    with tarfile.open(out) as tf:
        names = set(tf.getnames())
        assert {"manifest.json", "index.json", "oci-layout", "repositories"} <= names
        manifest = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
        index = json.loads(tf.extractfile("index.json").read())  # type: ignore[union-attr]
        for entry in manifest:
            config = tf.extractfile(entry["Config"]).read()  # type: ignore[union-attr]
            digest = "sha256:" + hashlib.sha256(config).hexdigest()
            assert digest in (id_a, id_b)
            for layer in entry["Layers"]:
                data = tf.extractfile(layer).read()  # type: ignore[union-attr]
                assert "sha256:" + hashlib.sha256(data).hexdigest() in json.loads(config)["rootfs"]["diff_ids"]
    tags = sorted(t for e in manifest for t in e["RepoTags"])
    assert tags == sorted([f"{a}:1", f"{a}:2", f"{b}:latest"])
    assert sorted(m["annotations"]["io.containerd.image.name"] for m in index["manifests"]) == sorted(
        [f"docker.io/library/{a}:1", f"docker.io/library/{a}:2", f"docker.io/library/{b}:latest"]
    )

    docker_py.api.remove_image(id_a, force=True)
    docker_py.api.remove_image(id_b, force=True)
    res = docker_cli("load", "-i", str(out)).stdout
    assert sorted(res.strip().splitlines()) == sorted(
        [f"Loaded image: {a}:1", f"Loaded image: {a}:2", f"Loaded image: {b}:latest"]
    )
    assert docker_py.images.get(f"{a}:2").id == id_a
    assert docker_py.images.get(f"{b}:latest").id == id_b
    assert docker_py.images.get(f"{a}:1").attrs["Config"]["Cmd"] == ["/bin/tool", "a"]

    # docker-py: save one image through /images/{name}/get and load it back by ID.
    data = b"".join(docker_py.images.get(id_b).save(named=False))
    docker_py.api.remove_image(id_b, force=True)
    loaded = docker_py.images.load(data)
    assert [i.id for i in loaded] == [id_b]
    docker_py.api.remove_image(id_b, force=True)
    docker_py.api.remove_image(id_a, force=True)


def test_save_unknown_image_is_404(docker_py: docker.DockerClient, docker_cli: Runner, unique, tmp_path: Path) -> None:
    missing = unique("nope")
    err = api_error(lambda: b"".join(docker_py.api.get_image(missing)))
    assert err.status_code == 404
    res = docker_cli("save", "-o", str(tmp_path / "x.tar"), missing, check=False)
    assert res.returncode != 0 and f"No such image: {missing}" in res.stderr


def _oci_layout_tar(tags: list[str | None], layer_files: dict[str, str]) -> tuple[bytes, str]:
    """An OCI image layout tarball (no manifest.json) with a gzip'd layer."""
    layer = rootfs_tar(layer_files)
    layer_gz = gzip.compress(layer)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-01-02T03:04:05Z",
            "config": {"Cmd": ["/bin/tool"], "Labels": {"from": "oci"}},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
            "history": [{"created": "2024-01-02T03:04:05Z", "created_by": "test"}],
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": "sha256:" + hashlib.sha256(layer_gz).hexdigest(),
                    "size": len(layer_gz),
                }
            ],
        }
    ).encode()
    mdesc = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": "sha256:" + hashlib.sha256(manifest).hexdigest(),
        "size": len(manifest),
    }
    entries = []
    for t in tags:
        entries.append({**mdesc, "annotations": {"io.containerd.image.name": t}} if t else dict(mdesc))
    index = json.dumps({"schemaVersion": 2, "manifests": entries}).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in [
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            ("index.json", index),
            *[
                (f"blobs/sha256/{hashlib.sha256(x).hexdigest()}", x)
                for x in (config, manifest, layer_gz)
            ],
        ]:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue(), "sha256:" + hashlib.sha256(config).hexdigest()


def test_load_oci_layout(docker_py: docker.DockerClient, daemon: Daemon, unique) -> None:
    name = unique("oci")
    data, image_id = _oci_layout_tar([f"docker.io/library/{name}:7"], {"oci/hello": "from an OCI layout"})
    lines = list(docker_py.api.load_image(data))
    assert {"stream": f"Loaded image: {name}:7\n"} in lines
    img = docker_py.images.get(f"{name}:7")
    assert img.id == image_id and img.labels == {"from": "oci"}
    upper = Path(img.attrs["GraphDriver"]["Data"]["UpperDir"])
    assert (upper / "oci/hello").read_text() == "from an OCI layout"
    docker_py.api.remove_image(image_id, force=True)

    data, image_id = _oci_layout_tar([None], {"oci/x": "untagged"})
    lines = list(docker_py.api.load_image(data))
    assert {"stream": f"Loaded image ID: {image_id}\n"} in lines
    docker_py.api.remove_image(image_id, force=True)


def test_failed_load_leaves_nothing_behind(docker_py: docker.DockerClient, daemon: Daemon, unique) -> None:
    before = state_of(daemon)
    images_before = {i["Id"] for i in docker_py.api.images(all=True)}
    # A docker-archive whose second layer does not match the config's diff ID.
    good = rootfs_tar({"good": "1"})
    bad = rootfs_tar({"bad": "2"})
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(good).hexdigest(), "sha256:" + "0" * 64],
            },
        }
    ).encode()
    manifest = json.dumps([{"Config": "c.json", "RepoTags": [f"{unique('broken')}:1"], "Layers": ["l1.tar", "l2.tar"]}])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for n, dat in [("manifest.json", manifest.encode()), ("c.json", config), ("l1.tar", good), ("l2.tar", bad)]:
            ti = tarfile.TarInfo(n)
            ti.size = len(dat)
            tf.addfile(ti, io.BytesIO(dat))
    # The first layer loads (and reports progress), so the error arrives in the stream, as dockerd's does.
    out = list(docker_py.api.load_image(buf.getvalue()))
    assert any(m.get("status") == "Loading layer" for m in out)
    assert "digest mismatch" in out[-1]["error"]
    # a broken archive too: 200 and the error inside the stream, as dockerd answers it
    out = list(docker_py.api.load_image(b"garbage" * 1000))
    assert out[-1].get("errorDetail", {}).get("message")
    assert state_of(daemon) == before
    assert {i["Id"] for i in docker_py.api.images(all=True)} == images_before


# -- prune and filters ------------------------------------------------------------------


def test_prune(docker_py: docker.DockerClient, unique) -> None:
    dangling = import_tar(docker_py, rootfs_tar({"p": "dangling"}), None)
    repo = unique("prune")
    tagged = import_tar(docker_py, rootfs_tar({"p": "tagged"}), f"{repo}:1", changes=[f"LABEL prune-test={repo}"])
    res = docker_py.api.prune_images()
    assert {"Deleted": dangling} in res["ImagesDeleted"]
    assert res["SpaceReclaimed"] > 0
    assert docker_py.images.get(tagged)
    # dangling=false prunes unused tagged images too, restricted here by label.
    res = docker_py.api.prune_images(filters={"dangling": False, "label": [f"prune-test={repo}"]})
    assert res["ImagesDeleted"] == [{"Untagged": f"{repo}:1"}, {"Deleted": tagged}]
    res = docker_py.api.prune_images(filters={"dangling": False, "label": ["prune-test=no-such-value"]})
    assert res["ImagesDeleted"] is None and res["SpaceReclaimed"] == 0


def test_list_filters(docker_cli: Runner, docker_py: docker.DockerClient, unique) -> None:
    repo = unique("filt")
    first = import_tar(docker_py, rootfs_tar({"f": "1"}), f"{repo}:old", changes=["LABEL tier=db"])
    # Created has one-second resolution in the list: the next image must be a second newer
    made = docker_py.api.inspect_image(first)["Created"]
    wait_for(lambda: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) > made[:19], what="the next second")
    second = import_tar(docker_py, rootfs_tar({"f": "2"}), f"{repo}:new", changes=["LABEL tier=web"])
    untagged = import_tar(docker_py, rootfs_tar({"f": "3"}), None)

    def ids(**filters: object) -> set[str]:
        return {i["Id"] for i in docker_py.api.images(filters=filters)}

    assert ids(reference=repo) == {first, second}
    assert ids(reference=f"{repo}:n*") == {second}
    assert ids(label="tier=web") == {second}
    assert first in ids(label="tier") and second in ids(label="tier")
    assert untagged in ids(dangling=True) and first not in ids(dangling=True)
    assert ids(before=f"{repo}:new") >= {first} and second not in ids(before=f"{repo}:new")
    assert second in ids(since=f"{repo}:old") and first not in ids(since=f"{repo}:old")
    out = docker_cli("images", "--filter", f"reference={repo}", "--format", "{{.Tag}}").stdout.split()
    assert sorted(out) == ["new", "old"]
    summary = next(i for i in docker_py.api.images() if i["Id"] == second)
    assert {"Id", "ParentId", "RepoTags", "RepoDigests", "Created", "Size", "SharedSize", "Labels", "Containers"} <= set(
        summary
    )
    assert summary["Labels"] == {"tier": "web"}
    err = api_error(lambda: docker_py.api.images(filters={"bogus": "x"}))
    assert err.status_code == 400
    for image_id in (first, second, untagged):
        docker_py.api.remove_image(image_id, force=True)


def test_image_events(docker_py: docker.DockerClient, unique) -> None:
    since = time.time() - 1
    repo = unique("ev")
    image_id = import_tar(docker_py, rootfs_tar({"e": "v"}), f"{repo}:1")
    docker_py.api.tag(image_id, repo, "2")
    b"".join(docker_py.api.get_image(f"{repo}:2"))
    docker_py.api.remove_image(f"{repo}:2")
    docker_py.api.remove_image(f"{repo}:1")
    until = time.time() + 1
    evs = [
        e
        for e in docker_py.events(since=since, until=until, decode=True, filters={"type": "image"})
        if e["Actor"]["ID"] == image_id
    ]
    actions = [e["Action"] for e in evs]
    assert actions == ["tag", "import", "tag", "save", "untag", "untag", "delete"]
    assert evs[0]["Actor"]["Attributes"]["name"] == f"{repo}:1"
    assert evs[2]["Actor"]["Attributes"]["name"] == f"{repo}:2"


def test_pull_outside_allowed_registries_is_refused(docker_py: docker.DockerClient, docker_cli, unique) -> None:
    # The test daemon allows only loopback registries: Docker Hub is never contacted.
    missing = unique("pull")
    err = api_error(lambda: docker_py.api.pull(missing, tag="latest"))
    assert err.status_code == 403 and "registry docker.io is not in this daemon's allowed-registries" in str(
        err.explanation
    )
    res = docker_cli("pull", f"example.org/{missing}", check=False)
    assert res.returncode != 0 and "example.org is not in this daemon's allowed-registries" in res.stderr


# -- interop with a real dockerd --------------------------------------------------------


def test_our_save_loads_into_real_dockerd(
    real_docker: RealDocker, docker_cli: Runner, busybox: str, unique, tmp_path: Path
) -> None:
    repo = unique("to-real")
    docker_cli("tag", busybox, f"{repo}:1")
    docker_cli("tag", busybox, f"{repo}:2")
    ours = json.loads(docker_cli("image", "inspect", f"{repo}:1").stdout)[0]
    out = tmp_path / "ours.tar"
    docker_cli("save", "-o", str(out), f"{repo}:1", f"{repo}:2")
    res = real_docker.cli("load", "-i", str(out))
    assert f"Loaded image: {repo}:1" in res.stdout and f"Loaded image: {repo}:2" in res.stdout
    theirs = json.loads(real_docker.cli("image", "inspect", f"{repo}:2").stdout)[0]
    assert theirs["Id"] == ours["Id"]
    assert theirs["RootFS"]["Layers"] == ours["RootFS"]["Layers"]
    assert theirs["Config"]["Cmd"] == ["sh"]
    # The real engine can run it: the layer content survived the trip.
    run = real_docker.cli("run", "--rm", "--network", "none", f"{repo}:1", "cat", "/etc/passwd")
    assert run.stdout.startswith("root:x:0:0")
    docker_cli("rmi", f"{repo}:1", f"{repo}:2")


def test_real_dockerd_save_loads_into_ours(
    real_docker: RealDocker, docker_cli: Runner, docker_py: docker.DockerClient, busybox: str, unique, tmp_path: Path
) -> None:
    base = unique("from-real")
    out = tmp_path / "base.tar"
    docker_cli("save", "-o", str(out), busybox)
    real_docker.cli("load", "-i", str(out))
    real_docker.cli("tag", busybox, f"{base}:base")
    # A second layer with a whiteout, an opaque directory, a hardlink and a symlink.
    real_docker.cli(
        "run", "--name", base, "--network", "none", f"{base}:base", "sh", "-c",
        "mkdir -p /d/sub && echo hi > /d/sub/f && ln /d/sub/f /d/hl && ln -s /etc /d/sym && rm /etc/group"
        " && rm -rf /var && mkdir /var && echo new > /var/only",
    )  # fmt: skip
    real_docker.cli("commit", "-c", "LABEL made=real", base, f"{base}:two")
    real_docker.cli("rm", base)
    theirs = json.loads(real_docker.cli("image", "inspect", f"{base}:two").stdout)[0]
    saved = tmp_path / "real.tar"
    real_docker.cli("save", "-o", str(saved), f"{base}:two", f"{base}:base")

    res = docker_cli("load", "-i", str(saved)).stdout
    assert f"Loaded image: {base}:two" in res and f"Loaded image: {base}:base" in res
    ours = docker_py.api.inspect_image(f"{base}:two")
    assert ours["Id"] == theirs["Id"]
    assert ours["RootFS"]["Layers"] == theirs["RootFS"]["Layers"]
    assert ours["Config"]["Labels"] == {"made": "real"}
    top = Path(ours["GraphDriver"]["Data"]["UpperDir"])
    wh = os.lstat(top / "etc/group")
    assert (wh.st_mode & 0o170000) == 0o020000 and wh.st_rdev == 0  # overlay whiteout
    assert os.stat(top / "d/hl").st_ino == os.stat(top / "d/sub/f").st_ino
    assert os.readlink(top / "d/sym") == "/etc"
    assert (top / "var/only").read_text() == "new\n"
    hist = docker_py.api.history(f"{base}:two")
    assert len(hist) == len(theirs["RootFS"]["Layers"])

    # And back again: our save of the two-layer image loads into the real engine.
    back = tmp_path / "back.tar"
    docker_cli("save", "-o", str(back), f"{base}:two")
    real_docker.cli("rmi", f"{base}:two")
    assert f"Loaded image: {base}:two" in real_docker.cli("load", "-i", str(back)).stdout
    assert json.loads(real_docker.cli("image", "inspect", f"{base}:two").stdout)[0]["Id"] == theirs["Id"]
    docker_cli("rmi", f"{base}:two", f"{base}:base")
