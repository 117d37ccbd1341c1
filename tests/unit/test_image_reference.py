"""Reference parsing and normalisation (dockyard.images.reference)."""

from __future__ import annotations

import pytest

from dockyard.images import reference
from dockyard.images.reference import InvalidReference


@pytest.mark.parametrize(
    ("given", "full", "familiar"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("foo/bar", "docker.io/foo/bar:latest", "foo/bar:latest"),
        ("docker.io/library/busybox:x", "docker.io/library/busybox:x", "busybox:x"),
        ("index.docker.io/foo/bar:y", "docker.io/foo/bar:y", "foo/bar:y"),
        ("localhost:5000/a/b:c", "localhost:5000/a/b:c", "localhost:5000/a/b:c"),
        ("localhost/a", "localhost/a:latest", "localhost/a:latest"),
        ("quay.io/x/y", "quay.io/x/y:latest", "quay.io/x/y:latest"),
        ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
    ],
)
def test_normalise(given: str, full: str, familiar: str) -> None:
    ref = reference.parse_normalized(given).with_default_tag()
    assert str(ref) == full
    assert ref.familiar() == familiar
    assert reference.familiar(full) == familiar


def test_digest() -> None:
    d = "sha256:" + "a" * 64
    ref = reference.parse_normalized(f"busybox@{d}")
    assert ref.digest == d and ref.tag is None
    assert str(ref.with_default_tag()) == f"docker.io/library/busybox@{d}"


@pytest.mark.parametrize("bad", ["", "Busybox", "a:b:c", "a/B", "-a", "a b", "a@sha256:zz", "a:" + "t" * 129, "a" * 64])
def test_invalid(bad: str) -> None:
    with pytest.raises(InvalidReference) as exc:
        reference.parse_normalized(bad)
    assert str(exc.value).startswith("invalid reference format")


def test_uppercase_message() -> None:
    with pytest.raises(InvalidReference, match=r"repository name \(library/Foo\) must be lowercase"):
        reference.parse_normalized("Foo")


def test_id_like() -> None:
    assert reference.is_id_like("abc123")
    assert reference.is_id_like("sha256:abc")
    assert not reference.is_id_like("busybox")
