"""The API edge's JSON checks: nesting bound, Go-worded type errors, and the OpenAPI document."""

from __future__ import annotations

import json

import pytest

from dockyard.api import bodies, openapi, schemas
from dockyard.errdefs import InvalidArgument


def test_depth_bound_counts_brackets_outside_strings_only() -> None:
    schemas.check_depth("[" * 64 + "]" * 64)
    schemas.check_depth(json.dumps({"a": "[" * 10_000}))
    with pytest.raises(InvalidArgument, match="nested deeper than 64 levels"):
        schemas.check_depth("[" * 65 + "]" * 65)
    with pytest.raises(InvalidArgument):
        schemas.loads(b'{"a":' * 100_000)  # not even well-formed: refused before decoding
    # an escaped quote does not end a string
    schemas.check_depth(json.dumps({"a": '\\"' + "{" * 100}))


@pytest.mark.parametrize(
    "body,message",
    [
        ({"HostConfig": []}, "cannot unmarshal array into Go struct field ContainerCreateRequest.HostConfig of type container.HostConfig"),
        ({"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": 80}]}}},
         "cannot unmarshal number into Go struct field PortBinding.HostConfig.PortBindings.HostPort of type string"),
        ({"HostConfig": {"ConsoleSize": [1, 2, 3]}}, "cannot unmarshal array into Go struct field HostConfig.HostConfig.ConsoleSize of type [2]uint"),
        ({"HostConfig": {"Memory": True}}, "cannot unmarshal bool into Go struct field HostConfig.HostConfig.Memory of type int64"),
        ({"HostConfig": {"Memory": 1 << 63}}, "cannot unmarshal number 9223372036854775808 into Go struct field HostConfig.HostConfig.Memory of type int64"),
        ({"Healthcheck": {"Test": "CMD true"}}, "cannot unmarshal string into Go struct field HealthConfig.Healthcheck.Test of type []string"),
        ({"Entrypoint": [1]}, "cannot unmarshal array into Go struct field ContainerCreateRequest.Entrypoint of type strslice.StrSlice"),
    ],
)  # fmt: skip
def test_type_errors_name_the_field_as_dockerd_does(body: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        schemas.check(body, bodies.CONTAINER_CREATE)
    assert str(err.value) == "json: " + message


def test_null_anywhere_and_unknown_fields_are_accepted() -> None:
    schemas.check({"Cmd": "true", "Env": None, "HostConfig": {"Binds": None, "Whatever": 1}, "X": [1]},
                  bodies.CONTAINER_CREATE)  # fmt: skip
    schemas.check({"Cmd": ["sh", "-c", "x"], "ExposedPorts": {"80/tcp": {}}}, bodies.CONTAINER_CREATE)


def test_openapi_document_lists_every_declared_route_with_its_body() -> None:
    from dockyard.api.routes import containers, system

    doc = openapi.document([*containers.routes.entries, *system.routes.entries])
    create = doc["paths"]["/containers/create"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] is bodies.CONTAINER_CREATE
    assert {p["name"] for p in create["parameters"]} == {"name", "platform"}
    assert "/openapi.json" in doc["paths"] and "/containers/{id}/logs" in doc["paths"]
    assert doc["paths"]["/containers/{id}/logs"]["get"]["x-long-lived"] is True
