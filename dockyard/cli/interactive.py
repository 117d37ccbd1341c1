"""Commands that connect the terminal to a container: attach, exec, start -a; and the shared session.

Owns the choreography (hijack → pump → exit code); byte moving is `streams`, terminal state is `tty`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

import click

from dockyard import errdefs
from dockyard.cli import streams, tty
from dockyard.cli._common import StatusError, client
from dockyard.client import HijackedConn


def run_session(
    conn: HijackedConn,
    *,
    is_tty: bool,
    stdin: bool,
    detach_keys: str | None,
    resize: Callable[[int, int], None] | None,
    sig_proxy: Callable[[str], None] | None = None,
) -> bool:
    """Pump `conn` until its output ends; returns True when the user detached."""
    keys = streams.parse_detach_keys(detach_keys) if stdin and tty.is_tty(0) else b""
    old_handlers: dict[int, Any] = {}
    if sig_proxy and not is_tty and threading.current_thread() is threading.main_thread():
        for proxied in _PROXIED:
            old_handlers[proxied] = signal.signal(proxied, lambda s, _f: _proxy(sig_proxy, s))
    try:
        with tty.raw_terminal(0) if (is_tty and stdin) else _null():
            if resize and is_tty:
                with tty.ResizeMonitor(resize) as mon:
                    result = streams.pump(conn, tty=is_tty, stdin=stdin, detach_keys=keys, tick=mon.poll)
            else:
                result = streams.pump(conn, tty=is_tty, stdin=stdin, detach_keys=keys)
    finally:
        for signum, handler in old_handlers.items():
            signal.signal(signum, handler)
    if result.error:
        raise errdefs.Unavailable(f"error reading from container: {result.error}")
    return result.detached


_PROXIED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def _proxy(send: Callable[[str], None], signum: int) -> None:
    try:
        send(signal.Signals(signum).name)
    except errdefs.DockyardError:
        pass


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None


# -- attach ---------------------------------------------------------------------------------


@click.command("attach")
@click.option("--detach-keys", help="Override the key sequence for detaching a container")
@click.option("--no-stdin", is_flag=True, help="Do not attach STDIN")
@click.option("--sig-proxy/--no-sig-proxy", default=True, help="Proxy all received signals to the process")
@click.argument("container")
def attach(container: str, detach_keys: str | None, no_stdin: bool, sig_proxy: bool) -> None:
    """Attach local standard input, output, and error streams to a running container"""
    c = client()
    info = c.inspect_container(container)
    st = info["State"]
    if st.get("Paused"):
        raise errdefs.Conflict("You cannot attach to a paused container, unpause it first")
    if not st.get("Running"):
        raise StatusError(1, "You cannot attach to a stopped container, start it first")
    is_tty = bool(info["Config"].get("Tty"))
    use_stdin = not no_stdin and bool(info["Config"].get("OpenStdin"))
    cid = info["Id"]
    conn = c.attach_socket(cid, stdin=use_stdin, detach_keys=detach_keys)
    wait = c.wait_begin(cid, "not-running")
    detached = run_session(
        conn,
        is_tty=is_tty,
        stdin=use_stdin,
        detach_keys=detach_keys,
        resize=lambda h, w: c.resize(cid, height=h, width=w),
        sig_proxy=(lambda s: c.kill(cid, s)) if sig_proxy else None,
    )
    if detached:
        return
    code = int(wait().get("StatusCode", 0))
    if code:
        raise StatusError(code)


# -- exec -----------------------------------------------------------------------------------


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Detached mode: run command in the background")
@click.option("--detach-keys", help="Override the key sequence for detaching a container")
@click.option("-e", "--env", multiple=True, help="Set environment variables")
@click.option("--env-file", multiple=True, help="Read in a file of environment variables")
@click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached")
@click.option("--privileged", is_flag=True, help="Give extended privileges to the command")
@click.option("-t", "--tty", "use_tty", is_flag=True, help="Allocate a pseudo-TTY")
@click.option("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])")
@click.option("-w", "--workdir", help="Working directory inside the container")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(
    container: str,
    command: tuple[str, ...],
    detach: bool,
    detach_keys: str | None,
    env: tuple[str, ...],
    env_file: tuple[str, ...],
    interactive: bool,
    privileged: bool,
    use_tty: bool,
    user: str | None,
    workdir: str | None,
) -> None:
    """Execute a command in a running container"""
    from dockyard.cli.runopts import _env_list

    c = client()
    body: dict[str, Any] = {
        "AttachStdin": interactive and not detach,
        "AttachStdout": not detach,
        "AttachStderr": not detach,
        "Tty": use_tty,
        "Cmd": list(command),
        "Env": _env_list(env, env_file) or None,
        "Privileged": privileged,
        "User": user or "",
        "WorkingDir": workdir or None,
        "DetachKeys": detach_keys or "",
    }
    exec_id = str(c.post_json("/containers/{0}/exec", container, body=body)["Id"])
    if detach:
        c.exec_start(exec_id, detach=True, tty=use_tty)
        return
    conn = c.exec_socket(exec_id, tty=use_tty)
    detached = run_session(
        conn,
        is_tty=use_tty,
        stdin=interactive,
        detach_keys=detach_keys,
        resize=lambda h, w: c.exec_resize(exec_id, height=h, width=w),
    )
    if detached:
        return
    code = int(c.exec_inspect(exec_id).get("ExitCode") or 0)
    if code:
        raise StatusError(code)


def register(group: click.Group) -> None:
    group.add_command(attach)
    group.add_command(exec_)
