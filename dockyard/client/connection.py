"""`Client`: a docker-py `APIClient` built from -H/DOCKER_HOST whose calls raise errdefs errors.

Owns host resolution, version negotiation and the few raw requests docker-py lacks (wait that
returns after the headers, hijacked attach/exec, streamed bodies). It must not print anything.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import docker
import requests

from dockyard import errdefs
from dockyard.client._errors import cannot_connect, from_status, mapped_errors
from dockyard.client.framing import JSONLineDecoder
from dockyard.client.hijack import HijackedConn, hijack

DEFAULT_HOST = "unix:///run/dockyard.sock"


def resolve_host(host: str | None) -> str:
    """-H wins, then DOCKER_HOST, then our default socket. A bare path means a UNIX socket."""
    h = host or os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    if h.startswith("/"):
        h = "unix://" + h
    return h


class Client:
    """Lazy docker-py client; attribute access forwards to `docker.APIClient` with mapped errors."""

    def __init__(self, host: str | None = None) -> None:
        self.host = resolve_host(host)
        self._api: docker.APIClient | None = None

    def __repr__(self) -> str:
        return f"<Client {self.host} {'connected' if self._api else 'idle'}>"

    @property
    def api(self) -> docker.APIClient:
        if self._api is None:
            with mapped_errors(self.host):
                try:
                    self._api = docker.APIClient(base_url=self.host, version="auto", timeout=None)
                except docker.errors.DockerException as err:
                    if "fetching server API version" in str(err):
                        raise cannot_connect(self.host) from err
                    raise
        return self._api

    @property
    def api_version(self) -> str:
        return str(self.api.api_version)

    def docker_client(self) -> docker.DockerClient:
        """The high-level docker-py client over the same connection."""
        dc = docker.DockerClient.__new__(docker.DockerClient)
        dc.api = self.api
        return dc

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.api, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            with mapped_errors(self.host):
                result = attr(*args, **kwargs)
            if inspect.isgenerator(result):
                return self._guard(result)
            return result

        return call

    def _guard(self, it: Iterable[Any]) -> Iterator[Any]:
        with mapped_errors(self.host):
            yield from it

    # -- raw requests docker-py does not offer -------------------------------------------------

    def url(self, path: str, *args: str) -> str:
        return str(self.api._url(path, *args))

    def path(self, path: str, *args: str) -> str:
        """The versioned request path (no scheme or host), for hijacked requests."""
        return urllib.parse.urlsplit(self.url(path, *args)).path

    def request(
        self,
        method: str,
        path: str,
        *args: str,
        params: dict[str, Any] | None = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        stream: bool = True,
    ) -> requests.Response:
        """Send a request and raise the mapped error for a non-2xx status."""
        with mapped_errors(self.host):
            resp: requests.Response = self.api.request(
                method,
                self.url(path, *args),
                params=params,
                data=data,
                headers=headers,
                stream=stream,
                timeout=None,
            )
        if resp.status_code >= 400:
            try:
                msg = resp.json().get("message", "")
            except ValueError:
                msg = resp.text
            raise from_status(resp.status_code, str(msg).strip())
        return resp

    def post_json(self, path: str, *args: str, body: Any, params: dict[str, Any] | None = None) -> Any:
        """POST a JSON body (None values dropped at the top level) and return the decoded reply."""
        data = {k: v for k, v in body.items() if v is not None} if isinstance(body, dict) else body
        resp = self.request(
            "POST",
            path,
            *args,
            params=params,
            data=json.dumps(data),
            headers={"Content-Type": "application/json"},
            stream=False,
        )
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.text

    def iter_bytes(self, resp: requests.Response) -> Iterator[bytes]:
        with mapped_errors(self.host):
            yield from resp.iter_content(chunk_size=None)

    def iter_json(self, resp: requests.Response, *, raise_errors: bool = True) -> Iterator[dict[str, Any]]:
        """Decode a JSON-lines body; an `error` entry becomes an exception (the status was 200)."""
        dec = JSONLineDecoder()
        for chunk in self.iter_bytes(resp):
            for obj in dec.feed(chunk):
                _check(obj, raise_errors)
                yield obj
        for obj in dec.close():
            _check(obj, raise_errors)
            yield obj

    def wait_begin(
        self, container: str, condition: str = "not-running", header_timeout: float = 5.0
    ) -> Callable[[], dict[str, Any]]:
        """POST /wait and return once the daemon answered the headers, so no exit is missed.

        Docker flushes the wait response headers as soon as the waiter is registered, and its
        CLI relies on that before starting a container. Should a daemon hold the headers back,
        we go on after `header_timeout` rather than deadlock (the request is on the wire by then).
        Call the returned function to block for the body `{StatusCode, Error}`.
        """
        box: dict[str, Any] = {}
        headers = threading.Event()

        def send() -> None:
            try:
                box["resp"] = self.request(
                    "POST", "/containers/{0}/wait", container, params={"condition": condition}
                )
            except BaseException as err:  # noqa: BLE001 - handed to the caller below
                box["err"] = err
            finally:
                headers.set()

        thread = threading.Thread(target=send, daemon=True, name="wait")
        thread.start()
        headers.wait(header_timeout)
        if "err" in box:
            raise box["err"]

        def result() -> dict[str, Any]:
            thread.join()
            if "err" in box:
                raise box["err"]
            with mapped_errors(self.host):
                return dict(box["resp"].json())

        return result

    def attach_socket(
        self,
        container: str,
        *,
        stdin: bool,
        stdout: bool = True,
        stderr: bool = True,
        logs: bool = False,
        detach_keys: str | None = None,
    ) -> HijackedConn:
        params = {
            "stream": 1,
            "stdin": int(stdin),
            "stdout": int(stdout),
            "stderr": int(stderr),
            "logs": int(logs),
            "detachKeys": detach_keys,
        }
        return hijack(self.host, self.path("/containers/{0}/attach", container), params)

    def exec_socket(self, exec_id: str, *, tty: bool) -> HijackedConn:
        return hijack(self.host, self.path("/exec/{0}/start", exec_id), None, {"Detach": False, "Tty": tty})


def _check(obj: dict[str, Any], raise_errors: bool) -> None:
    if raise_errors and obj.get("error"):
        detail = obj.get("errorDetail") or {}
        raise errdefs.Internal(str(detail.get("message") or obj["error"]).strip())
