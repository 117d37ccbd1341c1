"""Join tokens in Docker's shape: `SWMTKN-1-<CA digest, base36>-<secret, base36>`.

Owns making, parsing and checking tokens; pure (no I/O). The digest part pins the
cluster CA for the joiner (it refuses a manager whose CA differs), the secret part is what
the manager checks, in constant time, against the role's current secret. Rotation makes a
new secret; the old token is then refused.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from dockyard import errdefs

PREFIX = "SWMTKN"
VERSION = "1"
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int, width: int) -> str:
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_ALPHABET[r])
    return "".join(reversed(out)).rjust(width, "0")


def new_secret() -> str:
    return _base36(secrets.randbits(128), 25)


def make(ca_digest_hex: str, secret: str) -> str:
    return f"{PREFIX}-{VERSION}-{_base36(int(ca_digest_hex, 16), 50)}-{secret}"


@dataclass(frozen=True)
class Token:
    ca_digest: str  # hex sha256
    secret: str


def parse(token: str) -> Token:
    parts = token.strip().split("-")
    if len(parts) != 4 or parts[0] != PREFIX or parts[1] != VERSION:
        raise errdefs.InvalidArgument("invalid join token")
    digest36, secret = parts[2], parts[3]
    if len(digest36) != 50 or len(secret) != 25 or not all(c in _ALPHABET for c in digest36 + secret):
        raise errdefs.InvalidArgument("invalid join token")
    return Token(format(int(digest36, 36), "064x"), secret)


def matches(token: Token, secret: str) -> bool:
    return hmac.compare_digest(token.secret.encode(), secret.encode())


def new_id() -> str:
    """Docker's object IDs in swarm mode: 25 lowercase base36 characters."""
    return _base36(secrets.randbits(128), 25)
