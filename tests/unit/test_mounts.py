"""The mount planner (containers/mounts.py): -v, --mount, --volumes-from, --tmpfs and image
VOLUMEs into Docker's `Mounts`, with Docker's validation messages. Pure: no root, no files."""

from __future__ import annotations

import pytest

from dockyard.containers import mounts
from dockyard.errdefs import InvalidArgument


def _exists(path: str) -> bool:
    return path in ("/srv", "/srv/data")


def plan(hc: dict, volumes: dict | None = None, vf: dict | None = None) -> list[dict]:
    return [m.inspect() for m in mounts.plan(hc, volumes, vf or {}, exists=_exists)]


def test_named_volume_bind_and_anonymous() -> None:
    got = plan({"Binds": ["data:/var/lib/db", "/srv:/srv:ro,rshared", "/cache"]})
    assert got == [
        {"Type": "volume", "Name": "data", "Source": "", "Destination": "/var/lib/db", "Driver": "local",
         "Mode": "z", "RW": True, "Propagation": ""},
        {"Type": "bind", "Source": "/srv", "Destination": "/srv", "Mode": "ro,rshared", "RW": False,
         "Propagation": "rshared"},
        {"Type": "volume", "Name": "", "Source": "", "Destination": "/cache", "Driver": "local",
         "Mode": "z", "RW": True, "Propagation": ""},
    ]  # fmt: skip


def test_bind_defaults_to_rprivate_and_paths_are_cleaned() -> None:
    (m,) = plan({"Binds": ["/srv/:/data/"]})
    assert (m["Source"], m["Destination"], m["Propagation"], m["RW"]) == ("/srv", "/data", "rprivate", True)


def test_anonymous_with_mode_only() -> None:
    (m,) = mounts.plan({"Binds": ["/data:ro"]}, None, {})
    assert m.anonymous and not m.rw and m.destination == "/data"


def test_nocopy_is_kept_privately() -> None:
    (m,) = mounts.plan({"Binds": ["v1:/etc:nocopy"]}, None, {})
    assert m.nocopy and m.private()["NoCopy"] is True


@pytest.mark.parametrize(
    "spec, message",
    [
        ("v:data", "invalid mount config for type \"volume\": invalid mount path: 'data' mount path must be absolute"),
        ("/h:/c:bogus", "invalid volume specification: '/h:/c:bogus': invalid mode: bogus"),
        ("/h:/c:ro,rw", "invalid mode: ro,rw"),
        ("a:b:c:d", "invalid volume specification: 'a:b:c:d'"),
        ("/h:/", "destination can't be '/'"),
        ("v:/x:rshared", "invalid mode: rshared"),
        ("/h:/x:nocopy", "invalid mode: nocopy"),
    ],
)  # fmt: skip
def test_bad_binds(spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=".*" + message.replace("(", r"\(").replace(")", r"\)")):
        mounts.validate({"Binds": [spec]})


def test_mount_api_volume_with_options() -> None:
    (m,) = mounts.plan(
        {"Mounts": [{"Type": "volume", "Source": "v2", "Target": "/d", "ReadOnly": True,
                     "VolumeOptions": {"NoCopy": True, "Labels": {"a": "b"},
                                       "DriverConfig": {"Name": "local", "Options": {"type": "tmpfs", "device": "tmpfs"}}}}]},
        None, {},
    )  # fmt: skip
    assert (m.name, m.rw, m.nocopy, dict(m.labels), dict(m.driver_opts)) == (
        "v2",
        False,
        True,
        {"a": "b"},
        {"type": "tmpfs", "device": "tmpfs"},
    )
    assert m.inspect()["Type"] == "volume"


def test_mount_api_tmpfs_options() -> None:
    (m,) = mounts.plan(
        {"Mounts": [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1048576, "Mode": 0o1777}}]},
        None, {},
    )  # fmt: skip
    assert m.tmpfs_options == ("size=1048576", "mode=1777")
    assert m.inspect() == {
        "Type": "tmpfs",
        "Source": "",
        "Destination": "/t",
        "Mode": "",
        "RW": True,
        "Propagation": "",
    }


@pytest.mark.parametrize(
    "mount, message",
    [
        ({"Type": "bind", "Source": "/nope", "Target": "/x"},
         'invalid mount config for type "bind": bind source path does not exist: /nope'),
        ({"Type": "bind", "Target": "/x"}, 'invalid mount config for type "bind": field Source must not be empty'),
        ({"Type": "volume", "Source": "v"}, 'invalid mount config for type "volume": field Target must not be empty'),
        ({"Type": "volume", "Source": "v", "Target": "x"},
         "invalid mount config for type \"volume\": invalid mount path: 'x' mount path must be absolute"),
        ({"Type": "tmpfs", "Source": "s", "Target": "/t"},
         'invalid mount config for type "tmpfs": field Source must not be specified'),
        ({"Type": "volume", "Target": "/t", "BindOptions": {"Propagation": "shared"}},
         'invalid mount config for type "volume": field BindOptions must not be specified'),
        ({"Type": "bind", "Source": "/srv", "Target": "/t", "BindOptions": {"Propagation": "weird"}},
         "invalid propagation mode: weird"),
        ({"Type": "npipe", "Target": "/t"}, 'invalid mount config for type "npipe": mount type unknown'),
    ],
)  # fmt: skip
def test_bad_mounts(mount: dict, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        mounts.validate({"Mounts": [mount]}, exists=_exists)
    assert message in str(err.value)


def test_bind_create_mountpoint_skips_the_existence_check() -> None:
    mounts.validate(
        {
            "Mounts": [
                {"Type": "bind", "Source": "/nope", "Target": "/x", "BindOptions": {"CreateMountpoint": True}}
            ]
        },
        exists=_exists,
    )


@pytest.mark.parametrize(
    "hc",
    [
        {"Binds": ["a:/x", "b:/x"]},
        {"Binds": ["a:/x"], "Mounts": [{"Type": "volume", "Target": "/x"}]},
        {"Mounts": [{"Type": "tmpfs", "Target": "/x"}, {"Type": "volume", "Target": "/x/"}]},
        {"Binds": ["a:/x"], "Tmpfs": {"/x": ""}},
    ],
)
def test_duplicate_mount_point(hc: dict) -> None:
    with pytest.raises(InvalidArgument, match=r"^Duplicate mount point: /x/?$"):
        mounts.validate(hc, exists=_exists)


def test_tmpfs_target_must_be_absolute() -> None:
    with pytest.raises(InvalidArgument, match="mount path must be absolute: rel"):
        mounts.validate({"Tmpfs": {"rel": ""}})


def test_image_volumes_become_anonymous_unless_already_mounted() -> None:
    got = mounts.plan(
        {"Binds": ["named:/data"], "Tmpfs": {"/run": ""}}, {"/data": {}, "/logs": {}, "/run": {}}, {}
    )
    assert [(m.destination, m.name, m.anonymous, m.mode) for m in got] == [
        ("/data", "named", False, "z"),
        ("/logs", "", True, ""),
    ]


def test_volumes_from_copies_mounts_with_mode() -> None:
    src = [
        {"Type": "volume", "Name": "abc", "Source": "/vol/abc/_data", "Destination": "/data", "Driver": "local",
         "Mode": "", "RW": True, "Propagation": ""},
        {"Type": "bind", "Source": "/srv", "Destination": "/srv", "Mode": "", "RW": False, "Propagation": "rprivate"},
    ]  # fmt: skip
    vf = {"db": (src, {"/data": {"NoCopy": True}})}
    ro = mounts.plan({"VolumesFrom": ["db:ro"]}, None, vf)
    assert [(m.destination, m.name, m.rw) for m in ro] == [("/data", "abc", False), ("/srv", "", False)]
    assert ro[0].nocopy
    rw = mounts.plan({"VolumesFrom": ["db:rw"]}, None, vf)
    assert [m.rw for m in rw] == [True, True]
    inherit = mounts.plan({"VolumesFrom": ["db"]}, None, vf)
    assert [m.rw for m in inherit] == [True, False]
    # an explicit mount replaces the inherited one at the same path
    over = mounts.plan({"VolumesFrom": ["db"], "Binds": ["other:/data"]}, None, vf)
    assert [(m.destination, m.name) for m in over] == [("/data", "other"), ("/srv", "")]


def test_volumes_from_bad_mode() -> None:
    with pytest.raises(InvalidArgument, match="invalid mode: rx"):
        mounts.validate({"VolumesFrom": ["db:rx"]})


def test_with_volume_fills_name_and_source() -> None:
    (m,) = mounts.plan({"Binds": ["/cache"]}, None, {})
    named = mounts.with_volume(m, "f" * 64, "/root/volumes/ff/_data")
    assert named.inspect()["Name"] == "f" * 64 and named.inspect()["Source"] == "/root/volumes/ff/_data"
