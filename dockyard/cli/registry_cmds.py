"""`dockyard pull | push | login | logout`: registry commands over the daemon's API.

Credentials live in docker's `config.json` (`$DOCKER_CONFIG` or `~/.docker`), in its
format (`auths.<server>.auth` = base64 of `user:password`), so docker and dockyard share
logins. They are sent per request as `X-Registry-Auth`, as the docker CLI does. This
module must not import daemon code.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from dockyard.cli._common import StatusError, client
from dockyard.cli.images import print_progress

HUB = "https://index.docker.io/v1/"
_HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io", HUB)


def _config_path() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"


def _load_config() -> dict[str, Any]:
    try:
        return json.loads(_config_path().read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, ValueError):
        return {}


def _save_config(cfg: dict[str, Any]) -> None:
    path = _config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(cfg, indent="\t") + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)


def _server_key(server: str | None) -> str:
    if not server or server in _HUB_NAMES:
        return HUB
    return server.removeprefix("https://").removeprefix("http://").rstrip("/")


def _domain(name: str) -> str:
    first, sep, _ = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def normalize(name: str) -> str:
    """docker's full name: `busybox` -> `docker.io/library/busybox:latest`."""
    domain = _domain(name)
    rest = name if domain != "docker.io" or name.startswith("docker.io/") else f"docker.io/{name}"
    path = rest.partition("/")[2]
    if (
        domain == "docker.io"
        and "/" not in path.split("@")[0].rpartition(":")[0]
        and "/" not in path.split(":")[0]
    ):
        rest = f"docker.io/library/{path}"
    last = rest.rpartition("/")[2]
    if "@" not in last and ":" not in last:
        rest += ":latest"
    return rest


def _auth_doc(key: str, entry: dict[str, Any]) -> dict[str, str]:
    if entry.get("identitytoken"):
        return {"identitytoken": entry["identitytoken"], "serveraddress": key}
    user, _, pw = base64.b64decode(entry.get("auth", "")).decode(errors="replace").partition(":")
    return {"username": user, "password": pw, "serveraddress": key}


def registry_auth_header(name: str) -> str | None:
    key = _server_key(_domain(name))
    entry = (_load_config().get("auths") or {}).get(key)
    if not entry:
        return None
    return base64.urlsafe_b64encode(json.dumps(_auth_doc(key, entry)).encode()).decode()


def registry_config_header() -> str | None:
    """X-Registry-Config for a build: every stored login, by server (the daemon picks)."""
    auths = _load_config().get("auths") or {}
    if not auths:
        return None
    docs = {key: _auth_doc(key, entry) for key, entry in auths.items() if isinstance(entry, dict)}
    return base64.urlsafe_b64encode(json.dumps(docs).encode()).decode()


def _headers(name: str) -> dict[str, str]:
    h = registry_auth_header(name)
    return {"X-Registry-Auth": h} if h else {}


@click.command("pull")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
@click.option("--platform", help="Set platform if server is multi-platform capable")
@click.argument("name")
def pull(name: str, quiet: bool, platform: str | None) -> None:
    """Download an image from a registry"""
    c = client()
    full = normalize(name)
    repo, tag = full, ""
    if "@" in full:
        repo, _, tag = full.partition("@")
    else:
        repo, _, tag = full.rpartition(":")
    params = {"fromImage": repo, "tag": tag}
    if platform:
        params["platform"] = platform
    resp = c.request("POST", "/images/create", params=params, headers=_headers(name))
    print_progress(c, resp, quiet=quiet)
    click.echo(full)


@click.command("push")
@click.option("-a", "--all-tags", is_flag=True, help="Push all tags of an image to the repository")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
@click.argument("name")
def push(name: str, all_tags: bool, quiet: bool) -> None:
    """Upload an image to a registry"""
    c = client()
    last = name.rpartition("/")[2]
    repo, tag = name, ""
    if ":" in last:
        repo, _, tag = name.rpartition(":")
    elif not all_tags:
        tag = "latest"
    if all_tags and tag:
        raise StatusError(1, "tag can't be used with --all-tags/-a")
    resp = c.request("POST", "/images/{0}/push", repo, params={"tag": tag}, headers=_headers(name))
    msgs = print_progress(c, resp, quiet=quiet)
    if quiet:
        click.echo(normalize(name) if tag else repo)
    del msgs


@click.command("login")
@click.option("-u", "--username", help="Username")
@click.option("-p", "--password", help="Password")
@click.option("--password-stdin", is_flag=True, help="Take the password from stdin")
@click.argument("server", required=False)
def login(server: str | None, username: str | None, password: str | None, password_stdin: bool) -> None:
    """Authenticate to a registry"""
    if password_stdin:
        if password:
            raise StatusError(1, "--password and --password-stdin are mutually exclusive")
        password = sys.stdin.read().rstrip("\r\n")
    if not username:
        username = click.prompt("Username")
    if password is None:
        password = click.prompt("Password", hide_input=True)
    key = _server_key(server)
    c = client()
    reply = c.post_json("/auth", body={"username": username, "password": password, "serveraddress": key})
    cfg = _load_config()
    entry: dict[str, str] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
    if isinstance(reply, dict) and reply.get("IdentityToken"):
        entry = {"auth": "", "identitytoken": reply["IdentityToken"]}
    cfg.setdefault("auths", {})[key] = entry
    _save_config(cfg)
    click.echo(
        (reply or {}).get("Status", "Login Succeeded") if isinstance(reply, dict) else "Login Succeeded"
    )


@click.command("logout")
@click.argument("server", required=False)
def logout(server: str | None) -> None:
    """Log out from a registry"""
    key = _server_key(server)
    cfg = _load_config()
    auths = cfg.get("auths") or {}
    if key not in auths:
        click.echo(f"Not logged in to {key}")
        return
    del auths[key]
    _save_config(cfg)
    click.echo(f"Removing login credentials for {key}")


def register(group: click.Group) -> None:
    for cmd in (pull, push, login, logout):
        group.add_command(cmd)
