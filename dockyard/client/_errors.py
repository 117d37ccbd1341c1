"""The inverse of the daemon's error map: HTTP status codes from docker-py back to errdefs.

Owns the translation of docker-py and requests exceptions into `dockyard.errdefs` classes; it must
not format anything for a terminal (the CLI does that).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker.errors
import requests.exceptions

from dockyard import errdefs

_STATUS_TO_ERROR: dict[int, type[errdefs.DockyardError]] = {
    304: errdefs.NotModified,
    400: errdefs.InvalidArgument,
    401: errdefs.PermissionDenied,
    403: errdefs.PermissionDenied,
    404: errdefs.NotFound,
    409: errdefs.Conflict,
    501: errdefs.Unsupported,
    503: errdefs.Unavailable,
}


def from_status(status: int, message: str) -> errdefs.DockyardError:
    """Build the errdefs error for an HTTP `status` and daemon `message`."""
    base = _STATUS_TO_ERROR.get(status, errdefs.Internal)
    err = base(message)
    err.status_code = status  # type: ignore[attr-defined]
    err.from_daemon = True  # type: ignore[attr-defined]
    return err


def is_from_daemon(err: BaseException) -> bool:
    return bool(getattr(err, "from_daemon", False))


def _explanation(err: docker.errors.APIError) -> str:
    msg = err.explanation
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    if not msg and err.response is not None:
        msg = err.response.reason or ""
    return str(msg or "").strip()


def cannot_connect(host: str) -> errdefs.Unavailable:
    return errdefs.Unavailable(
        f"Cannot connect to the Docker daemon at {host}. Is the docker daemon running?"
    )


@contextlib.contextmanager
def mapped_errors(host: str) -> Iterator[None]:
    """Translate docker-py/requests exceptions raised inside the block into errdefs errors."""
    try:
        yield
    except docker.errors.APIError as err:
        status = err.status_code or (err.response.status_code if err.response is not None else 500)
        raise from_status(status, _explanation(err)) from err
    except requests.exceptions.ConnectionError as err:
        raise cannot_connect(host) from err
    except docker.errors.DockerException as err:
        raise errdefs.InvalidArgument(str(err)) from err
