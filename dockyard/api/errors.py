"""The one map from domain error class to HTTP status (Docker's body: {"message": ...})."""

from __future__ import annotations

from dockyard import errdefs

STATUS: dict[type[errdefs.DockyardError], int] = {
    errdefs.NotFound: 404,
    errdefs.InvalidArgument: 400,
    errdefs.AlreadyExists: 409,
    errdefs.Conflict: 409,
    errdefs.NotModified: 304,
    errdefs.PermissionDenied: 403,
    errdefs.Unavailable: 503,
    errdefs.Unsupported: 501,
    errdefs.Internal: 500,
}


def status_for(exc: errdefs.DockyardError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500
