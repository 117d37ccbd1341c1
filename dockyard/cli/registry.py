"""`dockyard registry serve|gc`: run our own registry server, collect its garbage.

The registry is its own process, not part of the daemon; these commands start it from
`dockyard.registry.server` (imported lazily so ordinary commands stay light).
"""

from __future__ import annotations

import logging
from pathlib import Path

import click


@click.group("registry")
def registry() -> None:
    """Run a private registry (OCI distribution API)"""


@registry.command("serve")
@click.option("--addr", default="127.0.0.1:5000", show_default=True, help="host:port to listen on")
@click.option("--root", required=True, type=click.Path(file_okay=False), help="Storage directory")
@click.option("--htpasswd", type=click.Path(dir_okay=False, exists=True), help="bcrypt htpasswd file")
@click.option(
    "--token-auth", is_flag=True, help="Bearer tokens from our own /auth/token (users from --htpasswd)"
)
@click.option("--token-realm", help="Token endpoint URL to advertise (default: this server's /auth/token)")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True))
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True))
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def serve(
    addr: str, root: str, htpasswd: str | None, token_auth: bool, token_realm: str | None,
    tls_cert: str | None, tls_key: str | None, log_level: str,
) -> None:  # fmt: skip
    """Serve the registry API under /v2/"""
    import ssl

    from aiohttp import web

    from dockyard.registry.server import FilesystemStorage, Htpasswd, RegistryConfig, TokenIssuer, make_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, _, port = addr.rpartition(":")
    rootp = Path(root)
    rootp.mkdir(parents=True, exist_ok=True)
    cfg = RegistryConfig()
    if token_auth:
        if not htpasswd:
            raise click.UsageError("--token-auth needs --htpasswd for its users")
        cfg = RegistryConfig(
            "token", Htpasswd.load(Path(htpasswd)), TokenIssuer.from_root(rootp), token_realm
        )
    elif htpasswd:
        cfg = RegistryConfig("htpasswd", Htpasswd.load(Path(htpasswd)))
    ctx = None
    if tls_cert and tls_key:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(tls_cert, tls_key)
    app = make_app(FilesystemStorage(rootp), cfg)
    web.run_app(app, host=host or "127.0.0.1", port=int(port), ssl_context=ctx, print=None, access_log=None)


@registry.command("gc")
@click.option(
    "--root", required=True, type=click.Path(file_okay=False, exists=True), help="Storage directory"
)
@click.option("--dry-run", is_flag=True, help="Only print what would be removed")
def gc(root: str, dry_run: bool) -> None:
    """Delete blobs no manifest references"""
    from dockyard.registry.server import FilesystemStorage

    removed = FilesystemStorage(Path(root)).gc(dry_run=dry_run)
    for d in removed:
        click.echo(("would remove " if dry_run else "removed ") + d)
    click.echo(f"{len(removed)} blobs {'eligible for deletion' if dry_run else 'deleted'}")


def register(group: click.Group) -> None:
    group.add_command(registry)


if __name__ == "__main__":
    registry()
