"""The scheduler's pure planner, the join tokens and the secret sealing: no etcd, no root."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard import errdefs
from dockyard.cluster import seal, specs, tokens
from dockyard.cluster.scheduler import Snapshot, plan
from dockyard.cluster.state import Obj


def _node(nid: str, role: str = "worker", avail: str = "active", labels: dict[str, str] | None = None,
          cpus: int = 2) -> dict[str, Any]:  # fmt: skip
    return {"ID": nid, "Spec": {"Role": role, "Availability": avail, "Labels": labels or {}},
            "Description": {"Hostname": nid, "Resources": {"NanoCPUs": cpus * 10**9, "MemoryBytes": 2**31},
                            "Engine": {"Labels": {}}}}  # fmt: skip


def _svc(sid: str, replicas: int | None = 3, **tt: Any) -> Obj:
    spec = specs.validate(
        {
            "Name": sid,
            "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}, **tt},
            "Mode": {"Replicated": {"Replicas": replicas}} if replicas is not None else {"Global": {}},
        }
    )
    return Obj(sid, {"ID": sid, "Spec": spec}, 10)


def _snap(services: list[Obj], nodes: list[dict[str, Any]], alive: set[str] | None = None,
          tasks: dict[str, Any] | None = None, statuses: dict[str, Any] | None = None) -> Snapshot:  # fmt: skip
    return Snapshot({s.id: s for s in services}, tasks or {}, statuses or {}, {n["ID"]: n for n in nodes},
                    alive if alive is not None else {n["ID"] for n in nodes})  # fmt: skip


def _by_node(ops_tasks: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in ops_tasks.values():
        if t["DesiredState"] == "running":
            out[t["NodeID"]] = out.get(t["NodeID"], 0) + 1
    return out


def test_replicas_spread_and_skip_drained_and_down_nodes() -> None:
    nodes = [_node("n1"), _node("n2"), _node("n3", avail="drain"), _node("n4")]
    ops = plan(_snap([_svc("web", 6)], nodes, alive={"n1", "n2", "n3"}), now=100.0)
    assert _by_node(ops.put_tasks) == {"n1": 3, "n2": 3}
    assert sorted(t["Slot"] for t in ops.put_tasks.values()) == [1, 2, 3, 4, 5, 6]


def test_constraints_preferences_and_reservations() -> None:
    nodes = [
        _node("n1", labels={"zone": "a"}),
        _node("n2", labels={"zone": "a"}),
        _node("n3", labels={"zone": "b"}),
    ]
    ops = plan(_snap([_svc("z", 4, Placement={"Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}]})],
                     nodes), now=1.0)  # fmt: skip
    zones = {"n1": "a", "n2": "a", "n3": "b"}
    per_zone: dict[str, int] = {}
    for nid, n in _by_node(ops.put_tasks).items():
        per_zone[zones[nid]] = per_zone.get(zones[nid], 0) + n
    assert per_zone == {"a": 2, "b": 2}
    ops = plan(_snap([_svc("c", 3, Placement={"Constraints": ["node.labels.zone==a"]})], nodes), now=1.0)
    assert set(_by_node(ops.put_tasks)) == {"n1", "n2"}
    # each node has 2 CPUs: 1.5 CPU reserved per task fits one task per node; the 4th waits
    ops = plan(_snap([_svc("r", 4, Resources={"Reservations": {"NanoCPUs": 1_500_000_000}})], nodes), now=1.0)
    states = sorted(t["InitialStatus"]["State"] for t in ops.put_tasks.values())
    assert states == ["assigned", "assigned", "assigned", "pending"]
    pending = next(t for t in ops.put_tasks.values() if not t["NodeID"])
    assert "insufficient resources" in pending["InitialStatus"]["Err"]


def test_global_service_one_task_per_eligible_node() -> None:
    nodes = [_node("n1", role="manager"), _node("n2"), _node("n3", avail="pause")]
    ops = plan(_snap([_svc("g", None)], nodes), now=1.0)
    assert _by_node(ops.put_tasks) == {"n1": 1, "n2": 1}


def test_node_down_reschedules_at_once_and_restart_policy_waits() -> None:
    nodes = [_node("n1"), _node("n2")]
    svc = _svc("w", 1)
    first = plan(_snap([svc], nodes), now=1.0).put_tasks
    (t,) = first.values()
    # its node dies: shut down, replaced on the other node in the same pass
    ops = plan(_snap([svc], nodes, alive={"n1", "n2"} - {t["NodeID"]}, tasks=first), now=2.0)
    running = [x for x in ops.put_tasks.values() if x["DesiredState"] == "running"]
    assert ops.put_tasks[t["ID"]]["DesiredState"] == "shutdown" and len(running) == 1
    assert running[0]["NodeID"] != t["NodeID"]
    # the task failed on its own: the default restart delay (5 s) applies
    statuses = {t["ID"]: {"State": "failed"}}
    ops = plan(_snap([svc], nodes, tasks=first, statuses=statuses), now=2.0)
    assert [x["DesiredState"] for x in ops.put_tasks.values()] == ["shutdown"]
    ended = ops.put_tasks
    ops = plan(_snap([svc], nodes, tasks=ended, statuses=statuses), now=8.0)
    assert [x["Slot"] for x in ops.put_tasks.values() if x["DesiredState"] == "running"] == [1]


def test_scale_down_and_removed_service() -> None:
    nodes = [_node("n1")]
    tasks = plan(_snap([_svc("s", 3)], nodes), now=1.0).put_tasks
    ops = plan(_snap([_svc("s", 1)], nodes, tasks=tasks), now=2.0)
    assert sorted(t["Slot"] for t in ops.put_tasks.values() if t["DesiredState"] == "shutdown") == [2, 3]
    ops = plan(_snap([], nodes, tasks=tasks), now=2.0)
    assert {t["DesiredState"] for t in ops.put_tasks.values()} == {"remove"}


def test_spec_validation_refuses_what_it_cannot_run() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="image reference must be provided"):
        specs.validate({"Name": "x", "TaskTemplate": {"ContainerSpec": {}}})
    with pytest.raises(errdefs.Unsupported, match="one network"):
        specs.validate(
            {
                "Name": "x",
                "TaskTemplate": {
                    "ContainerSpec": {"Image": "b"},
                    "Networks": [{"Target": "n1"}, {"Target": "n2"}],
                },
            }
        )
    with pytest.raises(errdefs.Unsupported, match="routing mesh"):
        specs.validate(
            {
                "Name": "x",
                "TaskTemplate": {"ContainerSpec": {"Image": "b"}},
                "EndpointSpec": {"Ports": [{"TargetPort": 80, "PublishedPort": 8080}]},
            }
        )
    with pytest.raises(errdefs.InvalidArgument, match="constraint"):
        specs.validate(
            {
                "Name": "x",
                "TaskTemplate": {
                    "ContainerSpec": {"Image": "b"},
                    "Placement": {"Constraints": ["node.colour==red"]},
                },
            }
        )
    # docker-py's lower-case mode keys
    assert specs.validate(
        {
            "Name": "x",
            "TaskTemplate": {"ContainerSpec": {"Image": "b"}},
            "Mode": {"replicated": {"Replicas": 2}},
        }
    )["Mode"] == {"Replicated": {"Replicas": 2}}


def test_tokens_and_sealing() -> None:
    digest = "ab" * 32
    tok = tokens.make(digest, tokens.new_secret())
    assert tok.startswith("SWMTKN-1-")
    parsed = tokens.parse(tok)
    assert parsed.ca_digest == digest
    for bad in ("", "SWMTKN-1-abc-def", tok.replace("SWMTKN-1", "SWMTKN-2"), tok + "x"):
        with pytest.raises(errdefs.InvalidArgument):
            tokens.parse(bad)
    key = b"k" * 32
    blob = seal.seal(key, b"secret data", b"id1")
    assert b"secret" not in blob
    assert seal.open_sealed(key, blob, b"id1") == b"secret data"
    with pytest.raises(errdefs.Internal):
        seal.open_sealed(key, blob, b"id2")  # bound to its object
    with pytest.raises(errdefs.Internal):
        seal.open_sealed(b"x" * 32, blob, b"id1")
