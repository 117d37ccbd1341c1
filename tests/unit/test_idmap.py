"""`dockyard.idmap`: subuid/subgid parsing, the mapping builder, id translation, the
`userns-remap` setting's errors, and the OCI user-namespace spec edit."""

from __future__ import annotations

import pytest

from dockyard import idmap
from dockyard.idmap import IdentityMapping, IDMap, SubID
from dockyard.runtime import spec as ocispec

SUBUID = """
alice:100000:65536
  bob:165536:65536
1001:300000:1000

alice:400000:10
broken:x
"""


def test_parse_subid_keeps_order_and_reads_bad_numbers_as_zero() -> None:
    entries = idmap.parse_subid(SUBUID)
    assert entries == [
        SubID("alice", 100000, 65536),
        SubID("bob", 165536, 65536),
        SubID("1001", 300000, 1000),
        SubID("alice", 400000, 10),
        SubID("broken", 0, 0),
    ]


def test_mapping_stacks_every_range_of_the_user_from_container_id_0() -> None:
    maps = idmap.build_mapping(idmap.parse_subid(SUBUID), "alice", 999)
    assert maps == (IDMap(0, 100000, 65536), IDMap(65536, 400000, 10))


def test_mapping_matches_the_numeric_uid_too() -> None:
    maps = idmap.build_mapping(idmap.parse_subid(SUBUID), "carol", 1001)
    assert maps == (IDMap(0, 300000, 1000),)


def test_no_range_is_dockerds_error() -> None:
    with pytest.raises(idmap.RemapError, match='no subuid ranges found for user "dave"'):
        idmap.build_mapping(idmap.parse_subid(SUBUID), "dave", 4242)


def test_translation_both_ways() -> None:
    m = IdentityMapping((IDMap(0, 100000, 65536), IDMap(65536, 400000, 10)), (IDMap(0, 200000, 1000),))
    assert m.root_pair == (100000, 200000)
    assert m.to_host(1000, 999) == (101000, 200999)
    assert m.to_host(65537, 0) == (400001, 200000)
    with pytest.raises(ValueError, match="container ID 1000 cannot be mapped"):
        m.to_host(0, 1000)
    assert m.to_container(101000, 200999) == (1000, 999)
    assert m.to_container(0, 5) == (65534, 65534)  # unmapped host ids: the overflow id
    assert m.oci_uid_mappings() == [
        {"containerID": 0, "hostID": 100000, "size": 65536},
        {"containerID": 65536, "hostID": 400000, "size": 10},
    ]


def test_next_range_start_skips_taken_ranges() -> None:
    assert idmap.next_range_start([]) == 100000
    taken = [SubID("a", 165536, 65536), SubID("b", 100000, 65536)]
    assert idmap.next_range_start(taken) == 231072


def test_remap_setting_errors() -> None:
    with pytest.raises(idmap.RemapError, match='Invalid user/group specification in --userns-remap: "a:b:c"'):
        idmap.resolve_remap("a:b:c")
    with pytest.raises(idmap.RemapError, match='Error during uid lookup for "no-such-user-dy"'):
        idmap.resolve_remap("no-such-user-dy")
    assert idmap.resolve_remap("0") == ("root", "root")
    assert idmap.resolve_remap("root:0") == ("root", "root")


def test_spec_gets_a_user_namespace_with_the_mappings() -> None:
    m = IdentityMapping((IDMap(0, 100000, 65536),), (IDMap(0, 100000, 65536),))
    inp = ocispec.SpecInput(args=["sh"], env=[], cwd="/", user=ocispec.ProcessUser(), hostname="h")
    spec = ocispec.with_user_namespace(ocispec.build(inp), m.oci_uid_mappings(), m.oci_gid_mappings())
    assert {"type": "user"} in spec["linux"]["namespaces"]
    assert spec["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 100000, "size": 65536}]
    joined = ocispec.with_user_namespace(
        spec, m.oci_uid_mappings(), m.oci_gid_mappings(), join="/proc/7/ns/user"
    )
    users = [ns for ns in joined["linux"]["namespaces"] if ns["type"] == "user"]
    assert users == [{"type": "user", "path": "/proc/7/ns/user"}]
