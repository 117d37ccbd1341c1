"""`run` and `create`: docker's create → attach → wait → start → resize flow.

Failures before the container's process runs exit 125 (126/127 when the command cannot be
executed), like docker; afterwards the container's own exit code is the CLI's exit code.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from dockyard import errdefs
from dockyard.cli import tty
from dockyard.cli._common import StatusError, client, error_text, state
from dockyard.cli.interactive import run_session
from dockyard.cli.runopts import build_config, container_options
from dockyard.client import Client

_CTX = {"allow_interspersed_args": False}


def _pull(c: Client, image: str, quiet: bool) -> None:
    ref = image if (":" in image.rsplit("/", 1)[-1] or "@" in image) else image + ":latest"
    click.echo(f"Unable to find image '{ref}' locally", err=True)
    repo, _, tag = ref.rpartition(":") if "@" not in ref else (ref, "", "")
    resp = c.request("POST", "/images/create", params={"fromImage": repo, "tag": tag or None})
    for msg in c.iter_json(resp):
        if not quiet and msg.get("status"):
            line = (msg.get("id", "") + ": " if msg.get("id") else "") + msg["status"]
            click.echo(line, err=True)


def create_container(image: str, command: tuple[str, ...], opts: dict[str, Any], *, detach: bool) -> str:
    c = client()
    cfg = build_config(image, command, opts, detach=detach)
    params = {"name": opts.get("name") or None}
    if opts.get("platform"):
        params["platform"] = opts["platform"]
    if opts.get("pull") == "always":
        _pull(c, image, opts.get("quiet", False))
    try:
        res = c.post_json("/containers/create", body=cfg, params=params)
    except errdefs.NotFound as err:
        if opts.get("pull") == "never" or "image" not in str(err).lower():
            raise
        _pull(c, image, opts.get("quiet", False))
        res = c.post_json("/containers/create", body=cfg, params=params)
    for warning in res.get("Warnings") or []:
        click.echo(f"WARNING: {warning}", err=True)
    return str(res["Id"])


@click.command("create", context_settings=_CTX)
@container_options
def create(image: str, command: tuple[str, ...], **opts: Any) -> None:
    """Create a new container"""
    state().error_code = 125
    click.echo(create_container(image, command, opts, detach=True))


def _start_error_code(err: BaseException) -> int:
    msg = str(err)
    if "executable file not found" in msg or "no such file or directory" in msg:
        return 127
    if "permission denied" in msg:
        return 126
    return 125


@click.command("run", context_settings=_CTX)
@click.option("-d", "--detach", is_flag=True, help="Run container in background and print container ID")
@click.option("--sig-proxy/--no-sig-proxy", default=True, help="Proxy received signals to the process")
@container_options
def run(image: str, command: tuple[str, ...], detach: bool, sig_proxy: bool, **opts: Any) -> None:
    """Create and run a new container from an image"""
    st = state()
    st.error_code = 125
    c = st.client
    if opts["tty"] and opts["interactive"] and not tty.is_tty(0):
        raise StatusError(1, "the input device is not a TTY")
    cid = create_container(image, command, opts, detach=detach)
    attach = {s.lower() for s in opts.get("attach_streams") or ()}
    use_stdin = opts["interactive"] and (not attach or "stdin" in attach)
    conn = None
    wait = None
    if not detach:
        conn = c.attach_socket(
            cid,
            stdin=use_stdin,
            stdout=not attach or "stdout" in attach,
            stderr=not attach or "stderr" in attach,
            detach_keys=opts.get("detach_keys"),
        )
        wait = c.wait_begin(cid, "removed" if opts["auto_remove"] else "next-exit")
    try:
        c.start(cid)
    except errdefs.DockyardError as err:
        if conn:
            conn.close()
        raise StatusError(_start_error_code(err), error_text(err)) from err
    if detach:
        click.echo(cid)
        return
    assert conn is not None and wait is not None
    is_tty = bool(opts["tty"])
    detached = run_session(
        conn,
        is_tty=is_tty,
        stdin=use_stdin,
        detach_keys=opts.get("detach_keys"),
        resize=lambda h, w: c.resize(cid, height=h, width=w),
        sig_proxy=(lambda s: c.kill(cid, s)) if sig_proxy else None,
    )
    if detached:
        return
    res = wait()
    wait_error = (res.get("Error") or {}).get("Message") if isinstance(res.get("Error"), dict) else None
    if wait_error:
        click.echo(f"Error response from daemon: {wait_error}", err=True)
    code = int(res.get("StatusCode", 0))
    sys.stdout.flush()
    if code:
        raise StatusError(code)


def register(group: click.Group) -> None:
    group.add_command(run)
    group.add_command(create)
