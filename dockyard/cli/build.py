"""`dockyard build` and `dockyard builder prune`.

Packs the context directory into a tar (the daemon applies `.dockerignore` again, so
remote and CLI contexts behave alike), injects a Dockerfile given with `-f` from outside
the context (or stdin) under a private name, and prints the daemon's JSON stream live:
steps, their output, and the final ID. A build error exits with its code (a failing RUN's
exit status), like docker. Must not import daemon code.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import sys
import tarfile
from collections.abc import Iterator
from typing import Any

import click

from dockyard.cli import formatting as fmt
from dockyard.cli._common import StatusError, client
from dockyard.cli.images import status_line
from dockyard.cli.registry_cmds import registry_config_header


def _tar_context(root: str, dockerfile_name: str | None, dockerfile_bytes: bytes | None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, root)
            for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                full = os.path.join(dirpath, name)
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                info = tf.gettarinfo(full, arcname=rel)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with open(full, "rb") as f:
                        tf.addfile(info, f)
                else:
                    tf.addfile(info)
            for d in dirnames:
                full = os.path.join(dirpath, d)
                if os.path.islink(full):
                    continue
                rel = d if rel_dir == "." else f"{rel_dir}/{d}"
                info = tf.gettarinfo(full, arcname=rel)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tf.addfile(info)
        if dockerfile_name and dockerfile_bytes is not None:
            info = tarfile.TarInfo(dockerfile_name)
            info.size = len(dockerfile_bytes)
            info.mode = 0o600
            tf.addfile(info, io.BytesIO(dockerfile_bytes))
    return buf.getvalue()


def _chunks(data: bytes, size: int = 1 << 20) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _kv(items: tuple[str, ...], from_env: bool) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for it in items:
        k, eq, v = it.partition("=")
        if eq:
            out[k] = v
        elif from_env:
            out[k] = os.environ.get(k)
        else:
            out[k] = ""
    return out


@click.command("build")
@click.option("-t", "--tag", "tags", multiple=True, help="Name and optionally a tag in the 'name:tag' format")
@click.option("-f", "--file", "file_", help="Name of the Dockerfile (Default is 'PATH/Dockerfile')")
@click.option("--build-arg", "build_args", multiple=True, help="Set build-time variables")
@click.option("--target", default="", help="Set the target build stage to build")
@click.option("--no-cache", is_flag=True, help="Do not use cache when building the image")
@click.option("--pull", is_flag=True, help="Always attempt to pull a newer version of the image")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the build output and print image ID on success")
@click.option("--iidfile", help="Write the image ID to the file")
@click.option("--label", "labels", multiple=True, help="Set metadata for an image")
@click.option("--network", default="", help="Set the networking mode for the RUN instructions during build")
@click.option("--add-host", "add_hosts", multiple=True, help="Add a custom host-to-IP mapping (host:ip)")
@click.option("--rm/--no-rm", "rm", default=True, help="Remove intermediate containers after a successful build")
@click.option("--force-rm", is_flag=True, help="Always remove intermediate containers")
@click.option("--platform", default="", help="Set platform if server is multi-platform capable")
@click.option("--shm-size", default=0, type=int, help="Size of /dev/shm (bytes)")
@click.option("-m", "--memory", default=0, type=int, help="Memory limit (bytes)")
@click.option("--cache-from", "cache_from", multiple=True, help="Images to consider as cache sources")
@click.argument("path")
def build(
    tags: tuple[str, ...], file_: str | None, build_args: tuple[str, ...], target: str, no_cache: bool,
    pull: bool, quiet: bool, iidfile: str | None, labels: tuple[str, ...], network: str,
    add_hosts: tuple[str, ...], rm: bool, force_rm: bool, platform: str, shm_size: int, memory: int,
    cache_from: tuple[str, ...], path: str,
) -> None:  # fmt: skip
    """Build an image from a Dockerfile"""
    c = client()
    params: dict[str, Any] = {
        "t": list(tags) or None,
        "buildargs": json.dumps(_kv(build_args, True)),
        "labels": json.dumps(_kv(labels, False)),
        "target": target or None,
        "nocache": int(no_cache),
        "pull": int(pull),
        "q": int(quiet),
        "rm": int(rm),
        "forcerm": int(force_rm),
        "networkmode": network or None,
        "extrahosts": ",".join(add_hosts) or None,
        "platform": platform or None,
        "shmsize": shm_size or None,
        "memory": memory or None,
        "cachefrom": json.dumps(list(cache_from)) if cache_from else None,
        "version": "1",
    }
    data: Any = None
    if path.startswith(("http://", "https://", "git://", "git@", "github.com/")):
        params["remote"] = path
        if file_:
            params["dockerfile"] = file_
    elif path == "-":
        raw = sys.stdin.buffer.read()
        if raw[:2] == b"\x1f\x8b" or raw[:3] == b"BZh" or raw[257:262] == b"ustar":
            data = raw
            params["dockerfile"] = file_ or "Dockerfile"
        else:  # a Dockerfile on stdin: an empty context
            name = f".dockerfile.{secrets.token_hex(10)}"
            data = _tar_context_empty(name, raw)
            params["dockerfile"] = name
    else:
        if not os.path.isdir(path):
            raise StatusError(1, f'unable to prepare context: path "{path}" not found')
        df_name, df_bytes = None, None
        if file_ == "-":
            df_name, df_bytes = f".dockerfile.{secrets.token_hex(10)}", sys.stdin.buffer.read()
            params["dockerfile"] = df_name
        elif file_:
            abs_df = os.path.abspath(file_)
            abs_root = os.path.abspath(path)
            if os.path.commonpath([abs_df, abs_root]) == abs_root:
                params["dockerfile"] = os.path.relpath(abs_df, abs_root)
            else:
                if not os.path.isfile(abs_df):
                    raise StatusError(1, f"unable to prepare context: the Dockerfile ({file_}) cannot be found")
                df_name = f".dockerfile.{secrets.token_hex(10)}"
                with open(abs_df, "rb") as f:
                    df_bytes = f.read()
                params["dockerfile"] = df_name
        data = _tar_context(path, df_name, df_bytes)
    headers = {"Content-Type": "application/x-tar"}
    registry_config = registry_config_header()
    if registry_config:
        headers["X-Registry-Config"] = registry_config
    resp = c.request(
        "POST", "/build", params={k: v for k, v in params.items() if v is not None},
        data=_chunks(data) if data is not None else None, headers=headers,
    )  # fmt: skip
    image_id = ""
    held: list[str] = []  # -q: the output a failed build sends, shown on stderr as docker does
    for m in c.iter_json(resp, raise_errors=False):
        if m.get("error"):
            detail = m.get("errorDetail") or {}
            code = int(detail.get("code") or 1)
            if held:
                sys.stderr.write("".join(held))
                sys.stderr.flush()
            raise StatusError(code, str(detail.get("message") or m["error"]).strip())
        if "aux" in m and isinstance(m["aux"], dict) and m["aux"].get("ID"):
            image_id = m["aux"]["ID"]
        line = m.get("stream")
        if line is None and m.get("status") and not (m.get("progressDetail") or {}).get("current"):
            # a base image's pull, its steps without the byte counts (docker's non-tty view)
            line = status_line(m) + "\n"
        if line is not None and not quiet:
            sys.stdout.write(line)
            sys.stdout.flush()
        elif line is not None:
            held.append(line)
    if quiet and image_id:
        click.echo(image_id)
    if iidfile and image_id:
        with open(iidfile, "w") as f:
            f.write(image_id)


def _tar_context_empty(name: str, dockerfile: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo(name)
        info.size = len(dockerfile)
        tf.addfile(info, io.BytesIO(dockerfile))
    return buf.getvalue()


@click.group("builder")
def builder() -> None:
    """Manage builds"""


@builder.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused build cache, not just dangling ones")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
def builder_prune(all_: bool, force: bool) -> None:
    """Remove build cache"""
    if not force:
        click.echo("WARNING! This will remove all dangling build cache.")
        if not click.confirm("Are you sure you want to continue?", default=False):
            return
    res = client().post_json("/build/prune", body={}, params={"all": int(all_)}) or {}
    deleted = res.get("CachesDeleted") or []
    if deleted:
        click.echo("Deleted build cache objects:")
        for d in deleted:
            click.echo(d)
        click.echo()
    click.echo(f"Total reclaimed space: {fmt.human_size(int(res.get('SpaceReclaimed') or 0), 4)}")


def register(group: click.Group) -> None:
    group.add_command(build)
    group.add_command(builder)
