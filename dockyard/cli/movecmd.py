"""The `dockyard container move` command: a cold move (cli/move.py) or, with `--live`,
a live one (cli/livemove.py)."""

from __future__ import annotations

import click

from dockyard.cli._common import StatusError, client
from dockyard.cli.livemove import live_move
from dockyard.cli.move import move as cold_move
from dockyard.client import Client


@click.command("move")
@click.argument("container")
@click.option("--to", "to", required=True, help="Daemon to move the container to (unix://, tcp://, ssh://)")
@click.option("--with-volumes", is_flag=True, help="Send the container's volumes too")
@click.option("--dry-run", is_flag=True, help="Say what would be sent, and send nothing")
@click.option("-t", "--time", "stop_timeout", type=int, default=None, help="Seconds to wait for the stop")
@click.option("--live", is_flag=True, help="Keep its processes, memory and TCP connections (CRIU)")
def move_cmd(
    container: str, to: str, with_volumes: bool, dry_run: bool, stop_timeout: int | None, live: bool
) -> None:
    """Move a container to another daemon (cold: stop, send, start there; --live: checkpoint, restore)"""
    src = client()
    dst = Client(to)
    if dst.host == src.host:
        raise StatusError(1, "the target is the daemon the container is on")
    if live:
        if stop_timeout is not None:
            raise StatusError(1, "--time applies to a cold move; a live move does not stop the container")
        live_move(src, dst, container, with_volumes=with_volumes, dry_run=dry_run)
        return
    cold_move(src, dst, container, with_volumes=with_volumes, dry_run=dry_run, stop_timeout=stop_timeout)


@click.group("container")
def container_group() -> None:
    """Manage containers"""


def register(group: click.Group) -> None:
    existing = group.commands.get("container")
    if isinstance(existing, click.Group):
        existing.add_command(move_cmd)
    else:
        container_group.add_command(move_cmd)
        group.add_command(container_group)
