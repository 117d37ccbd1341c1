"""The closed set of error classes every layer raises.

Domain code raises these (or subclasses them); `api/errors.py` holds the one map from class
to HTTP status and `client/` holds the inverse. Messages are lowercase, without a trailing
period, and name the object they are about.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "Conflict",
    "DockyardError",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "NotModified",
    "PermissionDenied",
    "Unavailable",
    "Unsupported",
    "not_a_swarm_manager",
]


class DockyardError(Exception):
    """Base of every error a user can cause or see."""


class NotFound(DockyardError):
    pass


class InvalidArgument(DockyardError):
    pass


class AlreadyExists(DockyardError):
    pass


class Conflict(DockyardError):
    pass


class NotModified(DockyardError):
    pass


class PermissionDenied(DockyardError):
    pass


class Unavailable(DockyardError):
    pass


class Unsupported(DockyardError):
    pass


class Internal(DockyardError):
    pass


def not_a_swarm_manager() -> Unavailable:
    """What dockerd answers for a swarm-scoped request on a node that is not a swarm
    manager (moby's words, which clients match); a message, not a class of its own."""
    return Unavailable(
        'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node '
        "to swarm and try again."
    )
