"""make_workdir: the working directory is created inside the root, symlinks evaluated in it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard import errdefs
from dockyard.containers.files import make_workdir


def test_creates_nested(tmp_path: Path) -> None:
    make_workdir(tmp_path, "/a/b/./c/../d")
    assert (tmp_path / "a/b/d").is_dir() and not (tmp_path / "a/b/c").exists()


def test_absolute_symlink_stays_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink("/", root / "data")  # would be the host's / if followed naively
    os.symlink(str(outside), root / "out")
    make_workdir(root, "/data/work")
    make_workdir(root, "/out/x")
    assert (root / "work").is_dir()
    assert (root / str(outside).lstrip("/") / "x").is_dir()
    assert not (outside / "x").exists()


def test_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("")
    with pytest.raises(errdefs.InvalidArgument, match="not a directory"):
        make_workdir(tmp_path, "/etc/passwd")


def test_symlink_loop(tmp_path: Path) -> None:
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    with pytest.raises(errdefs.InvalidArgument, match="too many"):
        make_workdir(tmp_path, "/a/x")
