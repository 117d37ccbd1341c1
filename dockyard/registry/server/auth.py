"""Registry server authentication: htpasswd (bcrypt) Basic auth and signed Bearer tokens.

Owns credential checks and the token format; it does no HTTP. Tokens are compact JWTs
signed with HMAC-SHA256 under a key kept in the registry root, carrying Docker's `access`
claim (`[{"type": "repository", "name": "lib/bb", "actions": ["pull", "push"]}]`), so the
same server can be the token endpoint (Docker Hub's flow) and the resource server.

Flow::

    users = Htpasswd.load(path);  users.check("alice", "secret") -> True
    tok = tokens.issue("alice", [("repository", "lib/bb", {"pull"})], service="registry")
    tokens.verify(tok) -> {"sub": "alice", "access": [...], ...}     (or None when invalid)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Htpasswd", "TokenIssuer", "allowed"]


@dataclass
class Htpasswd:
    users: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Htpasswd:
        users = {}
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and ":" in line:
                name, _, h = line.partition(":")
                users[name] = h
        return cls(users)

    def check(self, user: str, password: str) -> bool:
        stored = self.users.get(user)
        if stored is None or not stored.startswith("$2"):  # only bcrypt, like distribution
            return False
        import bcrypt

        h = stored.encode()
        if h.startswith(b"$2y$"):
            h = b"$2b$" + h[4:]
        try:
            return bcrypt.checkpw(password.encode(), h)
        except ValueError:
            return False

    @staticmethod
    def hash(password: str) -> str:
        import bcrypt

        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class TokenIssuer:
    def __init__(self, key: bytes, *, issuer: str = "dockyard-registry", ttl: int = 300) -> None:
        self._key = key
        self.issuer = issuer
        self.ttl = ttl

    @classmethod
    def from_root(cls, root: Path) -> TokenIssuer:
        path = root / "token.key"
        if not path.exists():
            path.write_bytes(secrets.token_bytes(32))
            path.chmod(0o600)
        return cls(path.read_bytes())

    def issue(self, subject: str, access: list[tuple[str, str, set[str]]], *, service: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": service,
            "iat": now,
            "nbf": now - 5,
            "exp": now + self.ttl,
            "jti": secrets.token_hex(8),
            "access": [{"type": t, "name": n, "actions": sorted(a)} for t, n, a in access],
        }
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        sig = _b64(hmac.new(self._key, f"{head}.{body}".encode(), hashlib.sha256).digest())
        return f"{head}.{body}.{sig}"

    def verify(self, token: str) -> dict[str, Any] | None:
        try:
            head, body, sig = token.split(".")
            want = _b64(hmac.new(self._key, f"{head}.{body}".encode(), hashlib.sha256).digest())
            if not hmac.compare_digest(want, sig):
                return None
            claims: dict[str, Any] = json.loads(_unb64(body))
        except (ValueError, json.JSONDecodeError):
            return None
        if claims.get("exp", 0) < time.time():
            return None
        return claims


def allowed(claims: dict[str, Any], kind: str, name: str, action: str) -> bool:
    for entry in claims.get("access") or []:
        if (
            entry.get("type") == kind
            and entry.get("name") in (name, "*")
            and (action in entry.get("actions", []) or "*" in entry.get("actions", []))
        ):
            return True
    return False
