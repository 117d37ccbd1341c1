"""The `dockyard` command group: global flags, command registration and the error → exit-code policy.

Errors from the daemon print `Error response from daemon: <message>` on stderr and exit 1
(125 for run/create failures, like docker). This module must not import daemon code.
"""

from __future__ import annotations

import signal
import sys

import click

from dockyard import errdefs
from dockyard.cli import build as build_cmds
from dockyard.cli import (
    containers,
    copy,
    images,
    interactive,
    movecmd,
    networks,
    registry,
    registry_cmds,
    run,
    system,
    volumes,
)
from dockyard.cli._common import State, StatusError, error_text
from dockyard.cli.formatting import TemplateError


class _Group(click.Group):
    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage("dockyard", "[OPTIONS] COMMAND")


@click.group(cls=_Group, context_settings={"help_option_names": ["--help"], "max_content_width": 110})
@click.option("-H", "--host", envvar=None, help="Daemon socket to connect to")
@click.option("-D", "--debug", is_flag=True, hidden=True)
@click.option("-l", "--log-level", hidden=True)
@click.version_option("0.1.0", "-v", "--version", message="Dockyard version %(version)s")
@click.pass_context
def cli(ctx: click.Context, host: str | None, debug: bool, log_level: str | None) -> None:
    """A Docker-compatible container engine client."""
    ctx.obj = State(host)


for module in (run, containers, interactive, copy, images, system, registry, registry_cmds):
    module.register(cli)
volumes.register(cli)
networks.register(cli)
build_cmds.register(cli)
movecmd.register(cli)


def _usage_error(err: click.UsageError) -> int:
    """docker's statuses: help for a bare command is 0, missing arguments 1, bad flags 125."""
    if type(err).__name__ == "NoArgsIsHelpError" and err.ctx is not None:
        click.echo(err.ctx.get_help())
        return 0
    cmd = err.ctx.command_path if err.ctx else "dockyard"
    click.echo(f"dockyard: {err.format_message()}\nSee '{cmd} --help'.", err=True)
    if isinstance(err, click.MissingParameter) and isinstance(err.param, click.Argument):
        return 1
    if "No such command" in err.format_message():
        return 1
    return 125


def main(argv: list[str] | None = None) -> None:
    code = 0
    try:
        with cli.make_context("dockyard", list(sys.argv[1:] if argv is None else argv)) as ctx:
            cli.invoke(ctx)
    except StatusError as err:
        if err.message:
            click.echo(err.message, err=True)
        code = err.code
    except errdefs.DockyardError as err:
        click.echo(error_text(err), err=True)
        code = State.current.error_code if State.current else 1
    except TemplateError as err:
        click.echo(str(err), err=True)
        code = 1
    except click.exceptions.Exit as err:
        code = err.exit_code
    except click.exceptions.Abort:
        code = 130
    except click.UsageError as err:
        code = _usage_error(err)
    except click.ClickException as err:
        click.echo(f"dockyard: {err.format_message()}", err=True)
        code = 1
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        code = 141
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    sys.exit(code)


if __name__ == "__main__":
    main()
