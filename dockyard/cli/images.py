"""Image commands: images, rmi, tag, save, load, import, history, image prune.

Long operations (load, import) print progress from the daemon's JSON stream; an `error` entry in
that stream is a failure even though the HTTP status was 200.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import IO, Any

import click

from dockyard import errdefs
from dockyard.cli import formatting as fmt
from dockyard.cli._common import StatusError, client, error_text, parse_filters, write_binary
from dockyard.cli.contexts import HistoryCtx, ImageCtx
from dockyard.client import Client

IMAGES_DEFAULT = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGES_DIGESTS = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"


def _split_repo_tag(ref: str) -> tuple[str, str]:
    name, sep, tag = ref.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return ref, ""


def image_rows(images: list[dict[str, Any]], *, trunc: bool, digests: bool) -> list[ImageCtx]:
    rows = []
    for img in images:
        tags = [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"]
        dig = [d for d in img.get("RepoDigests") or [] if d != "<none>@<none>"]
        digest_by_repo = {d.split("@", 1)[0]: d.split("@", 1)[1] for d in dig}
        if not tags and not dig:
            rows.append(ImageCtx(img, "<none>", "<none>", "<none>", trunc))
            continue
        seen: set[str] = set()
        for t in tags:
            repo, tag = _split_repo_tag(t)
            seen.add(repo)
            rows.append(ImageCtx(img, repo, tag, digest_by_repo.get(repo, "<none>"), trunc))
        for repo, d in digest_by_repo.items():
            if repo not in seen:
                rows.append(ImageCtx(img, repo, "<none>", d, trunc))
    return rows


@click.command("images")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all images (default hides intermediate images)")
@click.option("--digests", is_flag=True, help="Show digests")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided")
@click.option("--format", "format_", help="Format output using a custom template")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs")
@click.argument("reference", required=False)
def images(
    all_: bool,
    digests: bool,
    filters: tuple[str, ...],
    format_: str | None,
    no_trunc: bool,
    quiet: bool,
    reference: str | None,
) -> None:
    """List images"""
    flt = parse_filters(filters)
    if reference:
        flt.setdefault("reference", []).append(reference)
    params: dict[str, Any] = {"all": int(all_)}
    if flt:
        params["filters"] = json.dumps(flt)
    res = client().request("GET", "/images/json", params=params, stream=False).json()
    res.sort(key=lambda i: i.get("Created") or 0, reverse=True)
    rows = image_rows(res, trunc=not no_trunc, digests=digests)
    if quiet:
        seen: set[str] = set()
        for r in rows:
            if r.ID not in seen:
                seen.add(r.ID)
                click.echo(r.ID)
        return
    fmt.render(rows, format_, default=IMAGES_DIGESTS if digests else IMAGES_DEFAULT, headers=ImageCtx.HEADERS)


@click.command("rmi")
@click.option("-f", "--force", is_flag=True, help="Force removal of the image")
@click.option("--no-prune", is_flag=True, help="Do not delete untagged parents")
@click.argument("images_", metavar="IMAGE...", nargs=-1, required=True)
def rmi(images_: tuple[str, ...], force: bool, no_prune: bool) -> None:
    """Remove one or more images"""
    c = client()
    failed = False
    for name in images_:
        try:
            resp = c.request(
                "DELETE",
                "/images/{0}",
                name,
                params={"force": int(force), "noprune": int(no_prune)},
                stream=False,
            )
        except errdefs.DockyardError as err:
            click.echo(error_text(err), err=True)
            failed = True
            continue
        for item in resp.json() or []:
            if item.get("Untagged"):
                click.echo(f"Untagged: {item['Untagged']}")
            if item.get("Deleted"):
                click.echo(f"Deleted: {item['Deleted']}")
    if failed:
        raise StatusError(1)


@click.command("tag")
@click.argument("source")
@click.argument("target")
def tag(source: str, target: str) -> None:
    """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"""
    repo, t = _split_repo_tag(target)
    client().request(
        "POST", "/images/{0}/tag", source, params={"repo": repo, "tag": t or "latest"}, stream=False
    )


@click.command("save")
@click.option("-o", "--output", help="Write to a file, instead of STDOUT")
@click.option("--platform", help="Save only the given platform variant")
@click.argument("images_", metavar="IMAGE...", nargs=-1, required=True)
def save(images_: tuple[str, ...], output: str | None, platform: str | None) -> None:
    """Save one or more images to a tar archive (streamed to STDOUT by default)"""
    c = client()
    if not output and sys.stdout.isatty():
        raise StatusError(1, "cowardly refusing to save to a terminal. Use the -o flag or redirect")
    params: dict[str, Any] = {"names": list(images_)}
    if platform:
        params["platform"] = platform
    resp = c.request("GET", "/images/get", params=params)
    write_binary(c.iter_bytes(resp), output, "image")


def _chunks(f: IO[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    while True:
        b = f.read(size)
        if not b:
            return
        yield b


def _file_chunks(path: str) -> Iterator[bytes]:
    """A file's chunks for a streamed upload; the file closes when the upload ends."""
    with open(path, "rb") as f:
        yield from _chunks(f)


def status_line(m: dict[str, Any]) -> str:
    """A progress message as docker's jsonmessage prints it: "<id>: <status>"."""
    return (f"{m['id']}: " if m.get("id") else "") + str(m["status"])


def print_progress(c: Client, resp: Any, quiet: bool = False) -> list[dict[str, Any]]:
    """Render a JSON progress stream like docker's jsonmessage (one line per status/id)."""
    msgs: list[dict[str, Any]] = []
    if "json" not in resp.headers.get("Content-Type", "json"):
        for chunk in c.iter_bytes(resp):
            if not quiet:
                sys.stdout.buffer.write(chunk)
        return msgs
    tty = sys.stdout.isatty()
    for m in c.iter_json(resp):
        msgs.append(m)
        if "stream" in m:
            text = m["stream"]
            if quiet and not text.startswith("Loaded"):
                continue
            sys.stdout.write(text)
        elif "status" in m and not quiet:
            line = status_line(m)
            if m.get("progress") and tty:
                sys.stdout.write(f"\r\033[2K{line} {m['progress']}")
                sys.stdout.flush()
                continue
            sys.stdout.write(("\r\033[2K" if tty else "") + line + "\n")
        sys.stdout.flush()
    return msgs


@click.command("load")
@click.option("-i", "--input", "input_", help="Read from tar archive file, instead of STDIN")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the load output")
def load(input_: str | None, quiet: bool) -> None:
    """Load an image from a tar archive or STDIN"""
    c = client()
    if not input_ and sys.stdin.isatty():
        raise StatusError(1, "requested load from stdin, but stdin is empty")
    f = open(input_, "rb") if input_ else sys.stdin.buffer  # noqa: SIM115 - closed below unless stdin
    try:
        resp = c.request(
            "POST",
            "/images/load",
            params={"quiet": int(quiet or not sys.stdout.isatty())},
            data=_chunks(f),
            headers={"Content-Type": "application/x-tar"},
        )
        print_progress(c, resp, quiet=False)
    finally:
        if input_:
            f.close()


@click.command("import")
@click.option("-c", "--change", multiple=True, help="Apply Dockerfile instruction to the created image")
@click.option("-m", "--message", help="Set commit message for imported image")
@click.option("--platform", help="Set platform if server is multi-platform capable")
@click.argument("source")
@click.argument("repository", required=False)
def import_(
    source: str, repository: str | None, change: tuple[str, ...], message: str | None, platform: str | None
) -> None:
    """Import the contents from a tarball to create a filesystem image"""
    c = client()
    repo, t = _split_repo_tag(repository) if repository else ("", "")
    params: dict[str, Any] = {
        "repo": repo or None,
        "tag": t or None,
        "message": message,
        "changes": list(change) or None,
        "platform": platform,
    }
    data: Any = None
    if source == "-":
        params["fromSrc"] = "-"
        data = _chunks(sys.stdin.buffer)
    elif source.startswith(("http://", "https://")):
        params["fromSrc"] = source
    else:
        if not os.path.exists(source):
            raise StatusError(1, f"open {source}: no such file or directory")
        params["fromSrc"] = "-"
        data = _file_chunks(source)
    resp = c.request(
        "POST",
        "/images/create",
        params={k: v for k, v in params.items() if v is not None},
        data=data,
        headers={"Content-Type": "application/x-tar"},
    )
    for m in c.iter_json(resp):
        if m.get("status") and not m.get("id") and m["status"].startswith("sha256:"):
            click.echo(m["status"])
        elif m.get("status"):
            click.echo(m["status"] if not m.get("progress") else f"{m['status']} {m['progress']}", err=True)


HISTORY_DEFAULT = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"


@click.command("history")
@click.option("--format", "format_", help="Format output using a custom template")
@click.option("-H", "--human/--no-human", default=True, help="Print sizes and dates in human readable format")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs")
@click.argument("image")
def history(image: str, format_: str | None, human: bool, no_trunc: bool, quiet: bool) -> None:
    """Show the history of an image"""
    res = client().history(image)
    rows = [HistoryCtx(h, trunc=not no_trunc, human=human) for h in res]
    if quiet:
        format_ = "{{.ID}}"
    fmt.render(rows, format_, default=HISTORY_DEFAULT, headers=HistoryCtx.HEADERS)


@click.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused images, not just dangling ones")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--filter", "filters", multiple=True, help='Provide filter values (e.g. "until=<timestamp>")')
def image_prune(all_: bool, force: bool, filters: tuple[str, ...]) -> None:
    """Remove unused images"""
    warning = (
        "WARNING! This will remove all images without at least one container associated to them."
        if all_
        else "WARNING! This will remove all dangling images."
    )
    if not force and not click.confirm(f"{warning}\nAre you sure you want to continue?", default=False):
        return
    res = prune_images(all_, filters)
    click.echo(f"Total reclaimed space: {fmt.human_size(res.get('SpaceReclaimed') or 0)}")


def prune_images(all_: bool, filters: tuple[str, ...]) -> dict[str, Any]:
    flt = parse_filters(filters)
    flt.setdefault("dangling", [str(not all_).lower()])
    res = client().post_json("/images/prune", body={}, params={"filters": json.dumps(flt)}) or {}
    deleted = res.get("ImagesDeleted") or []
    if deleted:
        click.echo("Deleted Images:")
        for d in deleted:
            for k, v in d.items():
                click.echo(f"{k.lower()}: {v}")
        click.echo()
    return dict(res)


IMAGE_COMMANDS = [images, rmi, tag, save, load, import_, history]


def register(group: click.Group) -> None:
    for cmd in IMAGE_COMMANDS:
        group.add_command(cmd)
