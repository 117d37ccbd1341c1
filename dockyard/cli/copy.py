"""`cp`: copy files between a container and the host as tar streams (get_archive/put_archive).

Follows docker's rules: an existing destination directory receives the source by its base name,
otherwise the source is renamed to the destination; `SRC/.` copies a directory's contents; `-`
means a tar stream on stdin/stdout.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tarfile
import tempfile
from typing import Any

import click

from dockyard import errdefs
from dockyard.cli._common import StatusError, client
from dockyard.cli.formatting import human_size

_DIR_BIT = 1 << 31  # Go os.ModeDir, as sent in X-Docker-Container-Path-Stat


def _split(arg: str) -> tuple[str | None, str]:
    """`ctr:/path` → ("ctr", "/path"); host paths (absolute, relative with ./) have no container."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    ctr, _, path = arg.partition(":")
    return ctr, path


def _stat(container: str, path: str) -> dict[str, Any] | None:
    c = client()
    try:
        resp = c.request("HEAD", "/containers/{0}/archive", container, params={"path": path}, stream=False)
    except errdefs.NotFound:
        c.inspect_container(container)  # raises "No such container" when that is the problem
        return None
    raw = resp.headers.get("X-Docker-Container-Path-Stat")
    return json.loads(base64.b64decode(raw)) if raw else {}


@click.command("cp")
@click.option("-a", "--archive", is_flag=True, help="Archive mode (copy all uid/gid information)")
@click.option("-L", "--follow-link", is_flag=True, help="Always follow symbol link in SRC_PATH")
@click.option("-q", "--quiet", is_flag=True, help="Suppress progress output during copy")
@click.argument("src")
@click.argument("dest")
def cp(src: str, dest: str, archive: bool, follow_link: bool, quiet: bool) -> None:
    """Copy files/folders between a container and the local filesystem"""
    sctr, spath = _split(src)
    dctr, dpath = _split(dest)
    if sctr and dctr:
        raise StatusError(1, "copying between containers is not supported")
    if not sctr and not dctr:
        raise StatusError(1, "must specify at least one container source")
    if sctr:
        n = _from_container(sctr, spath, dpath)
        where = dpath
    else:
        assert dctr is not None
        n = _to_container(spath, dctr, dpath, archive)
        where = f"{dctr}:{dpath}"
    if not quiet and dpath != "-" and spath != "-":
        click.echo(f"Successfully copied {human_size(n)} to {where}", err=True)


def _from_container(ctr: str, spath: str, dpath: str) -> int:
    c = client()
    resp = c.request("GET", "/containers/{0}/archive", ctr, params={"path": spath})
    if dpath == "-":
        out = sys.stdout.buffer
        for chunk in c.iter_bytes(resp):
            out.write(chunk)
        out.flush()
        return 0
    raw = resp.headers.get("X-Docker-Container-Path-Stat")
    st = json.loads(base64.b64decode(raw)) if raw else {}
    src_is_dir = bool(int(st.get("mode", 0)) & _DIR_BIT)
    contents_only = spath.endswith("/.")
    src_base = st.get("name") or os.path.basename(spath.rstrip("/")) or "/"
    if os.path.isdir(dpath) and not contents_only:
        target_dir, rename_to = dpath, None
    elif os.path.isdir(dpath) and contents_only:
        target_dir, rename_to = dpath, ""
    else:
        if dpath.endswith("/"):
            raise StatusError(1, f'destination directory "{dpath}" must exist')
        if not src_is_dir and os.path.exists(dpath) and os.path.isdir(dpath):
            target_dir, rename_to = dpath, None
        else:
            target_dir, rename_to = os.path.dirname(os.path.abspath(dpath)), os.path.basename(dpath)
            if not os.path.isdir(target_dir):
                raise StatusError(1, f'destination directory "{target_dir}" must exist')
            if contents_only:
                os.makedirs(dpath, exist_ok=True)
                target_dir, rename_to = dpath, ""
    total = 0
    with tempfile.TemporaryFile() as spool:
        for chunk in c.iter_bytes(resp):
            spool.write(chunk)
        spool.seek(0)
        with tarfile.open(fileobj=spool, mode="r|*") as tf:
            for m in tf:
                name = m.name.lstrip("/")
                first, _, rest = name.partition("/")
                if rename_to is not None and first == src_base:
                    if rename_to == "":
                        if not rest:
                            continue
                        name = rest
                    else:
                        name = rename_to + ("/" + rest if rest else "")
                m.name = name
                if m.isfile():
                    total += m.size
                kwargs = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
                tf.extract(m, target_dir, set_attrs=True, **kwargs)  # type: ignore[arg-type]
    return total


def _to_container(spath: str, ctr: str, dpath: str, archive: bool) -> int:
    c = client()
    if spath == "-":
        st = _stat(ctr, dpath)
        if st is None or not (int(st.get("mode", 0)) & _DIR_BIT):
            raise StatusError(1, f'destination "{ctr}:{dpath}" must be a directory')
        c.put_archive(ctr, dpath, sys.stdin.buffer.read())
        return 0
    if not os.path.lexists(spath):
        raise StatusError(1, f"stat {spath}: no such file or directory")
    contents_only = spath.endswith("/.")
    st = _stat(ctr, dpath)
    if st is not None and int(st.get("mode", 0)) & _DIR_BIT:
        target, arcname = dpath, ("." if contents_only else os.path.basename(os.path.normpath(spath)))
    else:
        if dpath.endswith("/"):
            raise StatusError(
                1, f"Error response from daemon: Could not find the file {dpath} in container {ctr}"
            )
        if st is not None and os.path.isdir(spath):
            raise StatusError(1, "cannot copy directory to existing file")
        target = os.path.dirname(dpath.rstrip("/")) or "/"
        arcname = os.path.basename(dpath.rstrip("/"))
    total = 0
    with tempfile.TemporaryFile() as spool:
        with tarfile.open(fileobj=spool, mode="w") as tf:

            def strip_owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
                nonlocal total
                if info.isfile():
                    total += info.size
                if not archive:
                    info.uid = info.gid = 0
                    info.uname = info.gname = "root"
                return info

            if contents_only:
                base = spath[:-2] or "."
                if arcname != ".":
                    tf.add(base, arcname=arcname, recursive=False, filter=strip_owner)
                for entry in sorted(os.listdir(base)):
                    name = entry if arcname == "." else f"{arcname}/{entry}"
                    tf.add(os.path.join(base, entry), arcname=name, filter=strip_owner)
            else:
                tf.add(os.path.normpath(spath), arcname=arcname, filter=strip_owner)
        spool.seek(0)
        c.put_archive(ctr, target, spool.read())
    return total


def register(group: click.Group) -> None:
    group.add_command(cp)
