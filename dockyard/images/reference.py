"""Image references, parsed and normalised the way Docker does (sans-IO).

Owns the grammar of `[domain/]path[:tag][@digest]` and the two spellings of a name:
the normalised one we store (`docker.io/library/busybox:latest`) and the familiar one we
show (`busybox:latest`). It must not look anything up: resolving names to images is the
service's job.

Grammar (distribution's `reference/regexp.go`)::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [domain "/"] component ("/" component)*
    domain     := host [":" port]      (only when it has a "." or ":" or is "localhost")
    component  := [a-z0-9]+ ((\\.|_|__|-+) [a-z0-9]+)*
    tag        := [\\w][\\w.-]{0,127}
    digest     := algorithm ":" hex
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from dockyard.errdefs import InvalidArgument

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TAG",
    "InvalidReference",
    "Reference",
    "familiar",
    "is_id_like",
    "parse",
    "parse_normalized",
]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_MAX = 255

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")
_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_HEX64 = re.compile(r"^[a-f0-9]{64}$")


class InvalidReference(InvalidArgument):
    def __init__(self, detail: str = "") -> None:
        super().__init__("invalid reference format" + (f": {detail}" if detail else ""))


@dataclass(frozen=True)
class Reference:
    """A parsed reference. `domain` is empty only for references not yet normalised."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def familiar_name(self) -> str:
        if self.domain == DEFAULT_DOMAIN:
            path = self.path
            if path.startswith(OFFICIAL_PREFIX) and "/" not in path[len(OFFICIAL_PREFIX) :]:
                path = path[len(OFFICIAL_PREFIX) :]
            return path
        return self.name

    def with_tag(self, tag: str) -> Reference:
        if not _TAG.match(tag):
            raise InvalidReference()
        return replace(self, tag=tag, digest=None)

    def with_default_tag(self) -> Reference:
        if self.tag is None and self.digest is None:
            return replace(self, tag=DEFAULT_TAG)
        return self

    def familiar(self) -> str:
        return self.familiar_name + self._suffix()

    def _suffix(self) -> str:
        s = f":{self.tag}" if self.tag else ""
        return s + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + self._suffix()


def parse(s: str) -> Reference:
    """Parse without normalising (the domain is empty when none was written)."""
    if not s or len(s) > 512:
        raise InvalidReference()
    rest, digest = s, None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not _DIGEST.match(digest):
            raise InvalidReference()
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.match(tag):
            raise InvalidReference()
    domain, path = "", rest
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not _DOMAIN_RE.match(first):
            raise InvalidReference()
        domain, path = first, remainder
    if not _PATH.match(path):
        if path.lower() != path and _PATH.match(path.lower()):
            shown = path if domain or "/" in path else OFFICIAL_PREFIX + path
            raise InvalidReference(f"repository name ({shown}) must be lowercase")
        raise InvalidReference()
    if len(domain) + len(path) + (1 if domain else 0) > NAME_MAX:
        raise InvalidReference("repository name must not be more than 255 characters")
    return Reference(domain, path, tag, digest)


def parse_normalized(s: str) -> Reference:
    """Parse and normalise: `busybox` -> `docker.io/library/busybox` (no default tag)."""
    if _HEX64.match(s):
        # Docker refuses a bare 64-hex name: it would be ambiguous with an image ID.
        raise InvalidReference("cannot specify 64-byte hexadecimal strings")
    ref = parse(s)
    domain, path = ref.domain, ref.path
    if not domain or domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    return Reference(domain, path, ref.tag, ref.digest)


def familiar(normalized: str) -> str:
    """`docker.io/library/busybox:latest` -> `busybox:latest`."""
    return parse_normalized(normalized).familiar()


def is_id_like(s: str) -> bool:
    """Could `s` be (a prefix of) an image ID?"""
    h = s.removeprefix("sha256:")
    return bool(h) and len(h) <= 64 and all(c in "0123456789abcdef" for c in h)
