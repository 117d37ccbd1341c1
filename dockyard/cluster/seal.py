"""Sealing of secret data before it reaches the cluster store. Pure.

Owns the at-rest format of secrets: `base64(nonce ‖ ciphertext ‖ tag)`. The cipher is
HMAC-SHA256 in counter mode (a PRF used as a stream cipher: block i of the keystream is
HMAC(Kenc, nonce ‖ i)) with encrypt-then-MAC (tag = HMAC(Kmac, aad ‖ nonce ‖ ciphertext)),
both keys derived from the cluster's data key. Only the standard library's hashlib/hmac
(C speed for the few KiB a secret holds), so the daemon needs no crypto package. The aad
is the secret's ID: a sealed blob copied onto another secret does not open.

The data key is made at `swarm init`, handed to each node over the join channel (TLS,
pinned CA) and kept in `<data-root>/swarm/state.json` (0600); it is never in etcd.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from dockyard import errdefs

NONCE = 16
TAG = 32


def _keys(key: bytes) -> tuple[bytes, bytes]:
    return hmac.new(key, b"dockyard-seal-enc", hashlib.sha256).digest(), hmac.new(
        key, b"dockyard-seal-mac", hashlib.sha256).digest()  # fmt: skip


def _stream(kenc: bytes, nonce: bytes, n: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hmac.new(kenc, nonce + i.to_bytes(8, "big"), hashlib.sha256).digest()
        i += 1
    return bytes(out[:n])


def seal(key: bytes, data: bytes, aad: bytes) -> bytes:
    kenc, kmac = _keys(key)
    nonce = os.urandom(NONCE)
    ct = bytes(a ^ b for a, b in zip(data, _stream(kenc, nonce, len(data)), strict=True))
    tag = hmac.new(kmac, aad + nonce + ct, hashlib.sha256).digest()
    return base64.b64encode(nonce + ct + tag)


def open_sealed(key: bytes, blob: bytes, aad: bytes) -> bytes:
    raw = base64.b64decode(blob)
    if len(raw) < NONCE + TAG:
        raise errdefs.Internal("sealed secret is truncated")
    nonce, ct, tag = raw[:NONCE], raw[NONCE:-TAG], raw[-TAG:]
    kenc, kmac = _keys(key)
    if not hmac.compare_digest(tag, hmac.new(kmac, aad + nonce + ct, hashlib.sha256).digest()):
        raise errdefs.Internal(
            "sealed secret failed its integrity check (wrong cluster key or tampered data)"
        )
    return bytes(a ^ b for a, b in zip(ct, _stream(kenc, nonce, len(ct)), strict=True))
