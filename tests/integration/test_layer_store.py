"""The copy-on-write layer store's guarantees, seen from outside through real clients:
shared lower layers, an exact `docker diff`, size accounting against `du`, and a data
root that holds nothing of removed containers and images."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path


def _du_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            total += os.lstat(os.path.join(root, f)).st_size
    return total


def _overlay_options(mount_point: str) -> dict[str, str]:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == mount_point:
                super_opts = line.split(" - ", 1)[1].split()[2]
                return dict(o.split("=", 1) for o in super_opts.split(",") if "=" in o)
    raise AssertionError(f"{mount_point} is not mounted")


def test_containers_of_one_image_share_its_layers(docker_cli, busybox, unique):
    names = [unique("share"), unique("share")]
    try:
        for n in names:
            docker_cli("run", "-d", "--name", n, busybox, "sleep", "60")
        data = [json.loads(docker_cli("inspect", n).stdout)[0]["GraphDriver"]["Data"] for n in names]
        assert data[0]["UpperDir"] != data[1]["UpperDir"]
        # the init layer is per container; the image's layers below it are the same directories
        lowers = [d["LowerDir"].split(":")[1:] for d in data]
        assert lowers[0] == lowers[1] and lowers[0]
        mounted = [_overlay_options(d["MergedDir"]) for d in data]
        # the kernel mounted both with the same lower layers (the daemon may use short links)
        assert [os.path.realpath(p) for p in mounted[0]["lowerdir"].split(":")[1:]] == [
            os.path.realpath(p) for p in mounted[1]["lowerdir"].split(":")[1:]
        ]
    finally:
        docker_cli("rm", "-f", *names, check=False)


def test_diff_is_exact_and_size_matches_du(docker_cli, docker_py, busybox, unique):
    name = unique("diff")
    try:
        docker_cli(
            "run", "--name", name, busybox, "sh", "-c",
            "mkdir -p /data && head -c 100000 /dev/zero > /data/blob && echo x >> /etc/passwd && rm /bin/vi",
        )  # fmt: skip
        lines = sorted(docker_cli("diff", name).stdout.split("\n"))
        assert [ln for ln in lines if ln] == sorted(
            ["A /data", "A /data/blob", "C /etc", "C /etc/passwd", "C /bin", "D /bin/vi"]
        )
        info = docker_py.api.get(docker_py.api._url("/containers/{0}/json", name), params={"size": 1}).json()
        upper = info["GraphDriver"]["Data"]["UpperDir"]
        assert info["SizeRw"] == _du_bytes(upper)
        assert info["SizeRw"] >= 100000
        df = docker_py.df()
        mine = [c for c in df["Containers"] if c["Id"] == info["Id"]]
        assert mine and mine[0]["SizeRw"] == info["SizeRw"]
    finally:
        docker_cli("rm", "-f", name, check=False)


def _paths_naming(root: Path, needle: str) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            if needle in n:
                found.append(os.path.join(dirpath, n))
    return found


def test_nothing_of_removed_objects_stays_in_the_data_root(daemon, docker_cli, busybox, unique):
    name = unique("gone")
    ref = f"{unique('gone-img')}:v1"
    blobs = daemon.data_root / "blobs" / "sha256"
    layers = daemon.data_root / "layers"
    blobs_before, layers_before = set(os.listdir(blobs)), set(os.listdir(layers))
    docker_cli("run", "--name", name, busybox, "sh", "-c", "echo layer > /made")
    cid = json.loads(docker_cli("inspect", name).stdout)[0]["Id"]
    docker_cli("commit", name, ref)
    assert _paths_naming(daemon.data_root, cid), "the container has files while it exists"
    assert set(os.listdir(layers)) > layers_before, "the commit made a layer"
    docker_cli("rm", name)
    assert _paths_naming(daemon.data_root, cid) == []
    assert _paths_naming(daemon.exec_root, cid) == []
    with open("/proc/self/mountinfo") as f:
        assert cid not in f.read()
    docker_cli("rmi", ref)
    # the committed layer and its blobs are gone; busybox's own stay
    assert set(os.listdir(layers)) == layers_before
    assert set(os.listdir(blobs)) == blobs_before
    assert subprocess.run(["docker", "image", "inspect", busybox], env={**os.environ, "DOCKER_HOST": daemon.host},
                          capture_output=True).returncode == 0  # fmt: skip


def test_system_df_counts_an_image_in_use_as_not_reclaimable(docker_cli, docker_py, busybox, unique):
    name = unique("df")
    docker_cli("run", "-d", "--name", name, busybox, "sleep", "60")
    try:
        df = docker_py.df()
        mine = next(i for i in df["Images"] if busybox in (i["RepoTags"] or []))
        assert mine["Containers"] >= 1
        # the docker CLI skips images whose SharedSize is -1 when it sums what is in use,
        # and would call an image in use reclaimable
        assert all(i["SharedSize"] >= 0 for i in df["Images"])
        used = sum(i["Size"] - i["SharedSize"] for i in df["Images"] if i["Containers"])
        assert used >= mine["Size"] - mine["SharedSize"] > 0 or mine["SharedSize"] == mine["Size"]
    finally:
        docker_cli("rm", "-f", name)
