"""Path resolution inside a container root (chroot-style) and the cp/export tar operations."""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from dockyard import errdefs
from dockyard.containers.archive import ContainerFS, MountPoint, go_file_mode, view


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """A fake container root, a bind source beside it, and a host dir that must stay untouched."""
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "var").mkdir()
    (root / "run").mkdir()
    (root / "mnt").mkdir()
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "a.txt").write_text("hello")
    (root / "dir" / "sub" / "b.txt").write_text("world")
    os.symlink("/etc", root / "abs-etc")
    os.symlink("../../../../../../etc", root / "climb")
    os.symlink("/run", root / "var" / "run")
    os.symlink("a.txt", root / "dir" / "link")
    bind = tmp_path / "bind"
    bind.mkdir()
    (bind / "data.txt").write_text("bound")
    os.symlink("/etc", bind / "to-etc")
    host = tmp_path / "host"
    host.mkdir()
    return {"root": root, "bind": bind, "host": host}


def fs(
    tree: dict[str, Path], *, ro_root: bool = False, bind_rw: bool = True, dest: str = "/mnt/b"
) -> ContainerFS:
    mounts = [MountPoint(dest, tree["bind"], bind_rw)]
    return ContainerFS(tree["root"], mounts, readonly_rootfs=ro_root, ref="ctr")


def tar_of(entries: list[tuple[str, bytes | None, dict[str, object]]], gz: bool = False) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data, extra in entries:
            ti = tarfile.TarInfo(name)
            for k, v in extra.items():
                setattr(ti, k, v)
            if data is not None:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            else:
                tf.addfile(ti)
    raw = buf.getvalue()
    return io.BytesIO(gzip.compress(raw) if gz else raw)


# ---- resolution ---------------------------------------------------------------------------


def test_absolute_symlink_resolves_inside_root(tree: dict[str, Path]) -> None:
    c = fs(tree)
    assert c.resolve("/abs-etc/passwd") == "/etc/passwd"
    assert c.host_path(c.resolve("/abs-etc/passwd")) == tree["root"] / "etc" / "passwd"


def test_dotdot_and_relative_symlinks_stop_at_root(tree: dict[str, Path]) -> None:
    c = fs(tree)
    assert c.resolve("/../../../etc") == "/etc"
    assert c.resolve("/climb/passwd") == "/etc/passwd"
    assert c.resolve("/dir/sub/../../../../usr/lib") == "/usr/lib"


def test_bind_mount_maps_to_its_source(tree: dict[str, Path]) -> None:
    c = fs(tree)
    assert c.host_path(c.resolve("/mnt/b/data.txt")) == tree["bind"] / "data.txt"
    # a symlink inside the bind source still means the container's /etc
    assert c.host_path(c.resolve("/mnt/b/to-etc/passwd")) == tree["root"] / "etc" / "passwd"


def test_mount_destination_through_symlink(tree: dict[str, Path]) -> None:
    c = fs(tree, dest="/var/run/x")
    assert c.host_path(c.resolve("/run/x/data.txt")) == tree["bind"] / "data.txt"


def test_missing_components_stay_lexical(tree: dict[str, Path]) -> None:
    assert fs(tree).resolve("/abs-etc/nope/deeper") == "/etc/nope/deeper"


def test_symlink_loop_is_an_error(tree: dict[str, Path]) -> None:
    os.symlink("/loop", tree["root"] / "loop")
    with pytest.raises(errdefs.InvalidArgument):
        fs(tree).resolve("/loop/x")


# ---- stat -----------------------------------------------------------------------------------


def test_go_file_mode_bits() -> None:
    assert go_file_mode(stat.S_IFDIR | 0o755) == (1 << 31) | 0o755
    assert go_file_mode(stat.S_IFLNK | 0o777) == (1 << 27) | 0o777
    assert go_file_mode(stat.S_IFREG | 0o644) == 0o644
    assert go_file_mode(stat.S_IFREG | stat.S_ISUID | 0o755) == (1 << 23) | 0o755
    assert go_file_mode(stat.S_IFCHR | 0o666) == (1 << 26) | (1 << 21) | 0o666


def test_stat_file_dir_and_symlink(tree: dict[str, Path]) -> None:
    c = fs(tree)
    f = c.stat("/dir/a.txt")
    perm = os.stat(tree["root"] / "dir" / "a.txt").st_mode & 0o777
    assert (f.name, f.size, f.mode & 0o777, f.link_target) == ("a.txt", 5, perm, "")
    assert f.mtime.endswith("Z")
    d = c.stat("/dir/")
    assert d.is_dir and d.name == "dir"
    link = c.stat("/abs-etc")
    assert link.mode & (1 << 27) and link.link_target == "/etc" and link.name == "abs-etc"
    assert c.stat("/dir/link").link_target == "/dir/a.txt"
    assert c.stat("/").name == "/"
    assert c.stat("/dir/.").name == "."
    decoded = json.loads(base64.b64decode(f.header_value()))
    assert set(decoded) == {"name", "size", "mode", "mtime", "linkTarget"}


def test_stat_missing_and_file_with_slash(tree: dict[str, Path]) -> None:
    c = fs(tree)
    with pytest.raises(errdefs.NotFound, match="Could not find the file /nope in container ctr"):
        c.stat("/nope")
    with pytest.raises(errdefs.NotFound):
        c.stat("/dir/a.txt/")


# ---- archive (GET) and export ----------------------------------------------------------------


def names_in(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return [m.name for m in tf.getmembers()]


def test_archive_directory_is_rooted_at_its_basename(tree: dict[str, Path]) -> None:
    out = io.BytesIO()
    fs(tree).write_archive("/dir", out)
    assert sorted(names_in(out.getvalue())) == ["dir", "dir/a.txt", "dir/link", "dir/sub", "dir/sub/b.txt"]


def test_archive_dir_dot_has_relative_names(tree: dict[str, Path]) -> None:
    out = io.BytesIO()
    fs(tree).write_archive("/dir/.", out)
    assert sorted(names_in(out.getvalue())) == [".", "./a.txt", "./link", "./sub", "./sub/b.txt"]


def test_archive_symlink_is_not_followed_and_mounts_are_crossed(tree: dict[str, Path]) -> None:
    out = io.BytesIO()
    c = fs(tree)
    c.write_archive("/abs-etc", out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        (m,) = tf.getmembers()
        assert m.issym() and m.linkname == "/etc"
    out = io.BytesIO()
    c.write_archive("/mnt", out)
    assert "mnt/b/data.txt" in names_in(out.getvalue())


def test_archive_under_symlinked_parent(tree: dict[str, Path]) -> None:
    out = io.BytesIO()
    fs(tree).write_archive("/abs-etc/passwd", out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        (m,) = tf.getmembers()
        assert m.name == "passwd"
        assert tf.extractfile(m).read() == b"root:x:0:0::/root:/bin/sh\n"  # type: ignore[union-attr]


def test_export_is_the_root_without_mounts(tree: dict[str, Path]) -> None:
    out = io.BytesIO()
    fs(tree).export(out)
    names = names_in(out.getvalue())
    assert "." not in names and "etc/passwd" in names and "dir/sub/b.txt" in names
    assert "mnt" in names and not any(n.startswith("mnt/") for n in names)


# ---- extract (PUT) ------------------------------------------------------------------------


def test_extract_plain_and_gzip(tree: dict[str, Path]) -> None:
    c = fs(tree)
    c.extract("/dir", tar_of([
        ("new.txt", b"x", {"mode": 0o640}),
        ("nd", None, {"type": tarfile.DIRTYPE, "mode": 0o755}),
        ("nd/f", b"yy", {}),
    ]))  # fmt: skip
    assert (tree["root"] / "dir" / "new.txt").read_bytes() == b"x"
    assert stat.S_IMODE(os.stat(tree["root"] / "dir" / "new.txt").st_mode) == 0o640
    assert (tree["root"] / "dir" / "nd" / "f").read_bytes() == b"yy"
    c.extract("/dir", tar_of([("gz.txt", b"zip", {})], gz=True))
    assert (tree["root"] / "dir" / "gz.txt").read_bytes() == b"zip"


def test_extract_through_absolute_symlink_stays_in_root(tree: dict[str, Path]) -> None:
    fs(tree).extract("/abs-etc", tar_of([("hostname", b"inside", {})]))
    assert (tree["root"] / "etc" / "hostname").read_bytes() == b"inside"


def test_extract_member_under_planted_symlink_stays_in_root(tree: dict[str, Path]) -> None:
    host = tree["host"]
    tar = tar_of([("evil", None, {"type": tarfile.SYMTYPE, "linkname": str(host)}), ("evil/pwned", b"x", {})])
    fs(tree).extract("/dir", tar)
    assert not (host / "pwned").exists()
    assert (tree["root"] / host.relative_to("/") / "pwned").read_bytes() == b"x"


@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "/../../escape"])
def test_extract_refuses_dotdot(tree: dict[str, Path], name: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="outside"):
        fs(tree).extract("/dir", tar_of([(name, b"x", {})]))
    assert not (tree["root"] / "escape").exists()


def test_extract_refuses_hardlink_escape(tree: dict[str, Path]) -> None:
    tar = tar_of([("h", None, {"type": tarfile.LNKTYPE, "linkname": "../etc/passwd"})])
    with pytest.raises(errdefs.InvalidArgument):
        fs(tree).extract("/dir", tar)


def test_extract_into_bind_mount(tree: dict[str, Path]) -> None:
    fs(tree).extract("/mnt/b", tar_of([("in-bind", b"b", {})]))
    assert (tree["bind"] / "in-bind").read_bytes() == b"b"


def test_read_only_rootfs(tree: dict[str, Path]) -> None:
    c = fs(tree, ro_root=True)
    with pytest.raises(errdefs.PermissionDenied, match="read-only"):
        c.extract("/dir", tar_of([("f", b"x", {})]))
    c.extract("/mnt/b", tar_of([("ok", b"x", {})]))  # a writable bind is still writable
    assert (tree["bind"] / "ok").exists()
    # a member that climbs from the bind into the read-only root through a symlink is refused
    with pytest.raises(errdefs.PermissionDenied):
        c.extract("/mnt/b", tar_of([("to-etc/x", b"x", {})]))
    assert not (tree["root"] / "etc" / "x").exists()


def test_read_only_bind(tree: dict[str, Path]) -> None:
    with pytest.raises(errdefs.PermissionDenied, match="volume is marked read-only"):
        fs(tree, bind_rw=False).extract("/mnt/b", tar_of([("f", b"x", {})]))


def test_extract_errors(tree: dict[str, Path]) -> None:
    c = fs(tree)
    with pytest.raises(errdefs.InvalidArgument, match="not a directory"):
        c.extract("/dir/a.txt", tar_of([("f", b"x", {})]))
    with pytest.raises(errdefs.NotFound, match="Could not find the file /nope"):
        c.extract("/nope", tar_of([("f", b"x", {})]))
    with pytest.raises(errdefs.InvalidArgument, match="cannot overwrite directory"):
        c.extract("/dir", tar_of([("sub", b"x", {})]), no_overwrite_dir_non_dir=True)
    c.extract("/dir", tar_of([("sub", b"file now", {})]))  # without the flag, replaced like Docker
    assert (tree["root"] / "dir" / "sub").read_bytes() == b"file now"


def test_view_from_record(tree: dict[str, Path], tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "hosts").write_text("127.0.0.1 localhost\n")
    bind = {"Type": "bind", "Source": str(tree["bind"]), "Destination": "/data", "RW": True}
    rec = {"HostConfig": {"ReadonlyRootfs": False}, "Mounts": [bind]}
    c = view(rec, tree["root"], bundle, "ctr")
    assert c.host_path("/data/data.txt") == tree["bind"] / "data.txt"
    assert c.host_path("/etc/hosts") == bundle / "hosts"
    assert c.host_path("/etc/passwd") == tree["root"] / "etc" / "passwd"
