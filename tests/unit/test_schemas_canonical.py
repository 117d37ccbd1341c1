"""api/schemas.canonical: struct field names as Go's decoder matches them."""

from __future__ import annotations

from dockyard.api import bodies
from dockyard.api.schemas import canonical


def test_struct_fields_fold_to_the_schema_spelling() -> None:
    body = {"hostconfig": {"CPURealtimeRuntime": 5, "memory": 1}, "labels": {"CPURealtimeRuntime": "x"}}
    out = canonical(body, bodies.CONTAINER_CREATE)
    assert out["HostConfig"] == {"CpuRealtimeRuntime": 5, "Memory": 1}
    assert out["Labels"] == {"CPURealtimeRuntime": "x"}  # map keys are data


def test_the_exact_spelling_wins() -> None:
    out = canonical({"memory": 1, "Memory": 2}, bodies.HOST_CONFIG)
    assert out == {"Memory": 2}


def test_unknown_fields_pass_through() -> None:
    assert canonical({"NoSuchField": 1}, bodies.HOST_CONFIG) == {"NoSuchField": 1}
