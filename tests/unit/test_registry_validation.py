"""The registry's validators (spec grammar) and the filesystem driver's own confinement.

The driver is called directly, as a bug in the HTTP layer would call it: hostile digests,
names, tags and upload ids are refused by the driver itself, and a symlink planted inside
the root cannot carry a write outside it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from dockyard.registry import spec
from dockyard.registry.server import FilesystemStorage
from dockyard.registry.spec import RegistryError

GOOD = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "value,ok",
    [
        (GOOD, True),
        ("sha512:" + "b" * 128, True),
        (GOOD + "\n", False),  # `$` alone would take a trailing newline
        ("sha256:../../x", False),
        ("sha256:" + "a" * 63, False),
        ("sha256:" + "A" * 64, False),
        ("sha512:" + "b" * 64, False),
        ("md5:" + "a" * 32, False),
        ("blake3:" + "a" * 64, False),
        ("sha256", False),
        ("", False),
    ],
)
def test_digest_grammar(value: str, ok: bool) -> None:
    assert spec.is_digest(value) is ok
    if not ok:
        assert spec.digest_problem(value)


def test_unknown_algorithm_is_named() -> None:
    assert "unsupported digest algorithm" in str(spec.digest_problem("sha384:" + "a" * 96))


def test_names_tags_media_types_upload_ids() -> None:
    assert spec.is_name("a/b-c/d_e") and not spec.is_name("a/../b") and not spec.is_name("a/b\n")
    assert spec.is_tag("v1.0") and not spec.is_tag("..") and not spec.is_tag("v1\n") and not spec.is_tag(".x")
    assert spec.is_media_type("application/vnd.oci.image.layer.v1.tar+gzip")
    assert not spec.is_media_type("../../x") and not spec.is_media_type("a/b/c") and not spec.is_media_type("x")
    assert spec.is_upload_id("0123abcd-ef") and not spec.is_upload_id("..") and not spec.is_upload_id("A1")


@pytest.fixture
def st(tmp_path: Path) -> FilesystemStorage:
    return FilesystemStorage(tmp_path / "root")


def _outside(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name != "root")


def test_driver_refuses_hostile_values_itself(st: FilesystemStorage, tmp_path: Path) -> None:
    bad_digest = "sha256:../../../escaped"
    with pytest.raises(RegistryError) as e:
        st.link_blob("lib/x", bad_digest)
    assert e.value.code == "DIGEST_INVALID"
    with pytest.raises(RegistryError) as e:
        st.link_blob("lib/../../../escaped", GOOD)
    assert e.value.code == "NAME_INVALID"
    with pytest.raises(RegistryError) as e:
        st.put_manifest("lib/x", GOOD, b"{}", ["../../../../escaped"], None, {})
    assert e.value.code == "TAG_INVALID"
    with pytest.raises(RegistryError) as e:
        st.put_manifest("lib/x", GOOD, b"{}", [], {"digest": "sha256:../../../../../escaped"}, {})
    assert e.value.code == "DIGEST_INVALID"
    with pytest.raises(RegistryError) as e:
        st.upload_state("lib/x", "../../escaped")
    assert e.value.code == "BLOB_UPLOAD_UNKNOWN"
    with pytest.raises(RegistryError):
        st.referrers("lib/x", "sha256:../..")
    # put_manifest checks every path before writing any: nothing of the refused ones exists
    assert st.get_manifest("lib/x", GOOD) is None
    assert _outside(tmp_path) == []


def test_symlink_inside_the_root_cannot_lead_out(st: FilesystemStorage, tmp_path: Path) -> None:
    """Grammar-valid names, but a planted symlink: the resolved-path check refuses."""
    out = tmp_path / "elsewhere"
    out.mkdir()
    os.symlink(out, st.root / "repositories" / "evil")
    with pytest.raises(RegistryError) as e:
        st.link_blob("evil", GOOD)
    assert "escapes the registry root" in e.value.message
    data = b"hello"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    os.symlink(out, st.root / "blobs" / "sha256")
    with pytest.raises(RegistryError):
        st.put_manifest("lib/ok", digest, data, [], None, {})
    assert list(out.iterdir()) == []
