"""Registry credentials: X-Registry-Auth decoding and the token flow's pure parts (sans-IO).

Owns `AuthConfig` (what docker sends: username/password or an identity token, plus the
server address), the decoding of the `X-Registry-Auth` and `X-Registry-Config` headers, the host a credential
belongs to, and the token request a `Bearer` challenge calls for. Sending requests is
`client/session.py`'s job.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from dockyard.errdefs import InvalidArgument

__all__ = ["AuthConfig", "auth_for_host", "decode_registry_auth", "registry_host", "token_request"]

DOCKER_HUB_HOST = "registry-1.docker.io"
DOCKER_HUB_INDEX = "https://index.docker.io/v1/"


@dataclass(frozen=True)
class AuthConfig:
    username: str = ""
    password: str = ""
    identity_token: str = ""
    registry_token: str = ""
    server_address: str = ""

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)

    def __repr__(self) -> str:  # never show secrets
        return f"<AuthConfig {self.username or '-'}@{self.server_address or '-'}>"


def decode_registry_auth(header: str | None) -> AuthConfig:
    """base64url(JSON) as docker sends it; also plain base64, and tolerates missing padding."""
    if not header or not header.strip():
        return AuthConfig()
    raw = header.strip()
    try:
        data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        try:
            data = base64.b64decode(raw + "=" * (-len(raw) % 4))
        except (binascii.Error, ValueError):
            raise InvalidArgument("invalid X-Registry-Auth header: not base64") from None
    try:
        doc = json.loads(data) if data.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # a header nests ~4000 deep at most
        raise InvalidArgument("invalid X-Registry-Auth header: not JSON") from None
    if not isinstance(doc, dict):
        return AuthConfig()
    return from_dict(doc)


def auth_for_host(header: str | None, host: str) -> AuthConfig:
    """The credential for registry `host` in an `X-Registry-Config` header: base64url(JSON)
    of {server address: auth config}, which `docker build` sends for every registry it
    has credentials for."""
    if not header or not header.strip():
        return AuthConfig()
    raw = header.strip()
    try:
        doc = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)) or b"{}")
    except (binascii.Error, ValueError):
        raise InvalidArgument("invalid X-Registry-Config header: not base64 JSON") from None
    if not isinstance(doc, dict):
        return AuthConfig()
    for address, conf in doc.items():
        if isinstance(conf, dict) and registry_host(str(address)) == host:
            return from_dict({"serveraddress": address, **conf})
    return AuthConfig()


def from_dict(doc: dict[str, object]) -> AuthConfig:
    def get(*names: str) -> str:
        for n in names:
            for k, v in doc.items():
                if k.lower() == n and v:
                    return str(v)
        return ""

    username, password = get("username"), get("password")
    if not username and get("auth"):
        try:
            raw = base64.b64decode(get("auth"))
        except (binascii.Error, ValueError):
            raise InvalidArgument("invalid auth configuration: 'auth' is not base64") from None
        user, _, pw = raw.decode(errors="replace").partition(":")
        username, password = user, pw
    return AuthConfig(
        username=username,
        password=password,
        identity_token=get("identitytoken"),
        registry_token=get("registrytoken"),
        server_address=get("serveraddress"),
    )


def registry_host(server_address: str) -> str:
    """`https://index.docker.io/v1/`, `docker.io`, `http://h:5000/v2/` -> the registry's domain."""
    s = server_address.strip() or DOCKER_HUB_INDEX
    if "://" in s:
        s = urlsplit(s).netloc
    s = s.split("/")[0]
    if s in ("index.docker.io", "docker.io", "registry-1.docker.io", "registry.hub.docker.com"):
        return "docker.io"
    return s


def token_request(
    realm: str, service: str | None, scopes: list[str], auth: AuthConfig
) -> tuple[str, str, dict[str, str], bytes | None]:
    """(method, url, headers, body) for the token endpoint of a Bearer challenge.

    With an identity token, docker uses the OAuth2 refresh_token grant (POST); otherwise GET
    with Basic credentials when it has any (anonymous otherwise)."""
    headers: dict[str, str] = {}
    if auth.identity_token:
        form = {"grant_type": "refresh_token", "refresh_token": auth.identity_token, "client_id": "dockyard"}
        if service:
            form["service"] = service
        if scopes:
            form["scope"] = " ".join(scopes)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return "POST", realm, headers, urlencode(form).encode()
    params: list[tuple[str, str]] = []
    if service:
        params.append(("service", service))
    params.extend(("scope", s) for s in scopes)
    if auth.username:
        params.append(("account", auth.username))
        cred = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()
        headers["Authorization"] = f"Basic {cred}"
    sep = "&" if "?" in realm else "?"
    return "GET", realm + (sep + urlencode(params) if params else ""), headers, None
