"""Golden output of the builder's two edges: the progress events as the API renders them
(`api/buildprogress.py`: Docker's JSON-stream lines, byte for byte what the docker CLI
and docker-py read), and the container service's create request the RUN runner makes
from a `RunSpec` (`build/runner.py`)."""

from __future__ import annotations

import json
import typing

from dockyard.api.buildprogress import render
from dockyard.build import progress as p
from dockyard.build.model import BuildOptions, RunSpec
from dockyard.build.runner import _create_body
from tests.unit._golden import check, check_json

IMAGE = "sha256:" + "ab" * 32
CID = "cd" * 32

EVENTS: list[p.BuildEvent] = [
    p.StepStarted(1, 3, "ARG BASE=busybox"),
    p.StepStarted(2, 3, "FROM $BASE AS one"),
    p.StepImage(IMAGE),
    p.TriggersRunning(1),
    p.TriggersRunning(2),
    p.CacheHit(),
    p.RunStarted(CID),
    p.Output("out-é\n"),
    p.Output("err\n", stderr=True),
    p.ContainerRemoved(CID),
    p.PullProgress({"status": "Pulling from library/busybox", "id": "latest"}),
    p.PullProgress({"status": "Downloading", "progressDetail": {"current": 1, "total": 2}, "id": "0123456789ab"}),
    p.UnusedBuildArgs(("A", "B")),
    p.ImageBuilt(IMAGE),
    p.SuccessfullyBuilt(IMAGE),
    p.SuccessfullyTagged("app:1"),
    p.QuietImageID(IMAGE),
]


def test_progress_lines() -> None:
    # the route writes json.dumps(message) + CRLF per event (the golden file has LF)
    check("build_progress.jsonl", "".join(json.dumps(render(e)) + "\n" for e in EVENTS))


def test_every_event_kind_is_rendered() -> None:
    kinds = set(typing.get_args(p.BuildEvent))
    assert kinds == {type(e) for e in EVENTS}


def test_run_container_request() -> None:
    plain = BuildOptions()
    tuned = BuildOptions(
        networkmode="host", extrahosts=["db:10.0.0.2"], shmsize=1 << 20, memory=64 << 20, memswap=-1,
        cpushares=512, cpusetcpus="0", cpuperiod=100000, cpuquota=50000,
    )  # fmt: skip
    specs = {
        "shell form, defaults": RunSpec(
            image=IMAGE, argv=("/bin/sh", "-c", "make"), shell=("/bin/sh", "-c"), env=("PATH=/bin", "V=1"),
            network_mode=plain.run_network(), resources=plain.resources(),
        ),
        "exec form, every option": RunSpec(
            image=IMAGE, argv=("make", "all"), env=("PATH=/bin",), user="1:2", workdir="/src",
            network_mode=tuned.run_network(), extra_hosts=tuple(tuned.extrahosts), resources=tuned.resources(),
        ),
        "networkmode=default": RunSpec(
            image=IMAGE, argv=("true",), network_mode=BuildOptions(networkmode="default").run_network(),
        ),
    }  # fmt: skip
    check_json("build_run_create.json", {name: _create_body(spec) for name, spec in specs.items()})
