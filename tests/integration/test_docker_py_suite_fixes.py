"""Differences docker-py's own integration suite (scripts/docker_py_suite.py) found between
dockyardd and dockerd, each fixed and checked here through docker-py: `platform` parameters
parsed as dockerd does (containerd's platforms.Parse and its words, which the suite's
test_build_invalid_platform and test_pull_invalid_platform look for), and build options
dockerd refuses (squash without experimental mode, isolation) refused instead of ignored."""

from __future__ import annotations

import io

import docker
import pytest

from dockyard import errdefs
from dockyard.images import platforms


def test_pull_refuses_a_bad_platform_before_the_registry(docker_py: docker.DockerClient) -> None:
    # docker.io is not reachable (nor allowed) here: dockerd checks the platform first
    with pytest.raises(docker.errors.APIError) as exc:
        docker_py.api.pull("hello-world", tag="latest", platform="foobar")
    assert exc.value.status_code == 400
    assert '"foobar": unknown operating system or architecture' in str(exc.value)


def test_build_refuses_a_bad_platform_with_containerds_words(docker_py: docker.DockerClient, busybox: str) -> None:
    with pytest.raises(docker.errors.APIError) as exc:
        for _ in docker_py.api.build(fileobj=io.BytesIO(b"FROM busybox\n"), platform="foobar"):
            pass
    assert exc.value.status_code == 400
    assert "unknown operating system" in str(exc.value)
    # a lone OS or architecture is a platform, as in dockerd
    # (a step of its own, so that the image removed below is not busybox itself)
    df = io.BytesIO(b"FROM busybox\nLABEL dockyard.test=platform\n")
    out = list(docker_py.api.build(fileobj=df, platform="amd64", decode=True))
    assert "Successfully built" in out[-1].get("stream", ""), out
    image_id = next(m["aux"]["ID"] for m in out if "aux" in m)
    docker_py.api.remove_image(image_id)


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("linux", platforms.Platform("linux", "amd64")),
        ("x86_64", platforms.Platform("linux", "amd64")),
        ("linux/aarch64", platforms.Platform("linux", "arm64")),
        ("linux/armhf", platforms.Platform("linux", "arm", "v7")),
        ("windows/amd64", platforms.Platform("windows", "amd64")),
    ],
)
def test_parse(spec: str, want: platforms.Platform) -> None:
    assert platforms.parse(spec) == want


@pytest.mark.parametrize("spec", ["foobar", "linux//", "a/b/c/d", "linux/*"])
def test_parse_refuses(spec: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        platforms.parse(spec)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"squash": True}, "squash is only supported with experimental mode"),
        ({"isolation": "hyperv"}, 'unsupported isolation: "hyperv"'),
    ],
)
def test_build_refuses_what_dockerd_refuses(
    docker_py: docker.DockerClient, busybox: str, kwargs: dict[str, object], words: str
) -> None:
    # docker-py's test_build_squash: the option was ignored and an unsquashed image built
    before = {i.id for i in docker_py.images.list(all=True)}
    with pytest.raises(docker.errors.APIError) as exc:
        for _ in docker_py.api.build(fileobj=io.BytesIO(b"FROM busybox\nRUN echo x > /x\n"), **kwargs):
            pass
    assert exc.value.status_code == 400
    assert words in str(exc.value)
    assert {i.id for i in docker_py.images.list(all=True)} == before


def test_create_field_names_match_case_insensitively(docker_py: docker.DockerClient, busybox: str) -> None:
    # docker-py spells them CPURealtimePeriod/CPURealtimeRuntime; Go's decoder (and so
    # dockerd) matches field names case-insensitively: they were stored and ignored
    hc = docker_py.api.create_host_config(cpu_rt_period=1000, cpu_rt_runtime=500)
    assert "CPURealtimeRuntime" in hc
    cid = docker_py.api.create_container(busybox, "true", host_config=hc)["Id"]
    try:
        got = docker_py.api.inspect_container(cid)["HostConfig"]
        assert (got["CpuRealtimePeriod"], got["CpuRealtimeRuntime"]) == (1000, 500)
    finally:
        docker_py.api.remove_container(cid, force=True)
