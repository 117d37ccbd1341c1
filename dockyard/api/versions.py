"""API version negotiation: what we advertise and what we accept."""

from __future__ import annotations

API_VERSION = "1.50"  # what the docker CLI 28.2 speaks
MIN_API_VERSION = "1.24"
ENGINE_VERSION = "28.2.2"  # the Docker release whose API we speak; clients print it
# Docker's experimental features are on: the docker CLI shows `checkpoint` and
# `start --checkpoint` only to a daemon that says so (/_ping, /version, /info)
EXPERIMENTAL = True


def parse(v: str) -> tuple[int, int]:
    major, _, minor = v.partition(".")
    return int(major), int(minor or 0)

# Headers Docker's clients read on every response, hijacked streams included.
COMMON_HEADERS = {
    "Api-Version": API_VERSION,
    "Server": f"Docker/{ENGINE_VERSION} (linux)",
    "Ostype": "linux",
    "Docker-Experimental": str(EXPERIMENTAL).lower(),
}
