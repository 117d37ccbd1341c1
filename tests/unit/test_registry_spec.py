"""Sans-IO registry pieces: challenges, ranges, scopes, X-Registry-Auth, platform choice, tokens."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from dockyard import errdefs
from dockyard.images.registries import RegistrySettings
from dockyard.registry import spec
from dockyard.registry.client import decode_registry_auth, registry_host, select_platform
from dockyard.registry.client.auth import AuthConfig, token_request
from dockyard.registry.server.auth import Htpasswd, TokenIssuer, allowed


def test_bearer_challenge() -> None:
    (c,) = spec.parse_challenges(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"'
    )
    assert c.scheme == "bearer"
    assert c.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/alpine:pull",
    }


def test_basic_challenge_and_quoting() -> None:
    (c,) = spec.parse_challenges('Basic realm="a \\"quoted\\" realm"')
    assert c == spec.Challenge("basic", {"realm": 'a "quoted" realm'})


def test_content_range() -> None:
    assert spec.parse_content_range("0-99") == (0, 99)
    assert spec.parse_content_range("bytes 5-9/*") == (5, 9)
    with pytest.raises(spec.RegistryError) as err:
        spec.parse_content_range("9-5")
    assert err.value.status == 416


def test_range() -> None:
    assert spec.parse_range("bytes=0-3", 10) == (0, 3)
    assert spec.parse_range("bytes=5-", 10) == (5, 9)
    assert spec.parse_range("bytes=-4", 10) == (6, 9)
    assert spec.parse_range("bytes=2-100", 10) == (2, 9)
    with pytest.raises(spec.RegistryError):
        spec.parse_range("bytes=10-", 10)


def test_scope() -> None:
    assert spec.parse_scope("repository:a/b:pull,push") == ("repository", "a/b", {"pull", "push"})
    assert spec.parse_scope("repository:127.0.0.1:5000/x:pull")[1] == "127.0.0.1:5000/x"


def test_names_and_tags() -> None:
    assert spec.is_name("library/busybox") and spec.is_name("a.b/c-d__e")
    assert not spec.is_name("Upper") and not spec.is_name("a//b")
    assert spec.is_tag("v1.0_rc-1") and not spec.is_tag(".hidden") and not spec.is_tag("a" * 129)


def test_error_table() -> None:
    e = spec.RegistryError("MANIFEST_BLOB_UNKNOWN")
    assert e.status == 400
    assert spec.error_body([e])["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"  # type: ignore[index]


def test_registry_auth_header() -> None:
    raw = json.dumps({"username": "u", "password": "p?>", "serveraddress": "127.0.0.1:5000"}).encode()
    h = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    a = decode_registry_auth(h)
    assert (a.username, a.password, a.server_address) == ("u", "p?>", "127.0.0.1:5000")
    assert decode_registry_auth("").empty
    tok = decode_registry_auth(base64.urlsafe_b64encode(b'{"identitytoken":"abc"}').decode())
    assert tok.identity_token == "abc"
    with pytest.raises(errdefs.InvalidArgument):
        decode_registry_auth(base64.b64encode(b"not json").decode())


def test_registry_host() -> None:
    assert registry_host("https://index.docker.io/v1/") == "docker.io"
    assert registry_host("") == "docker.io"
    assert registry_host("127.0.0.1:5000") == "127.0.0.1:5000"
    assert registry_host("http://localhost:5000/v2/") == "localhost:5000"


def test_token_request_forms() -> None:
    m, url, headers, body = token_request(
        "http://h/token", "svc", ["repository:a:pull"], AuthConfig("u", "p")
    )
    assert m == "GET" and "scope=repository%3Aa%3Apull" in url and "service=svc" in url
    assert headers["Authorization"].startswith("Basic ")
    m, url, headers, body = token_request("http://h/token", "svc", [], AuthConfig(identity_token="rt"))
    assert m == "POST" and body is not None and b"grant_type=refresh_token" in body


def test_select_platform_ignores_attestations() -> None:
    index = {
        "manifests": [
            {"digest": "sha256:" + "a" * 64, "platform": {"os": "linux", "architecture": "arm64"}},
            {
                "digest": "sha256:" + "b" * 64,
                "platform": {"os": "unknown", "architecture": "unknown"},
                "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
            },
            {"digest": "sha256:" + "c" * 64, "platform": {"os": "linux", "architecture": "amd64"}},
        ]
    }
    assert select_platform(index) == "sha256:" + "c" * 64
    with pytest.raises(errdefs.NotFound):
        select_platform(index, "linux", "s390x")


def test_insecure_rules() -> None:
    s = RegistrySettings(insecure=("10.0.0.0/8", "reg.local:5000"))
    assert s.is_insecure("127.0.0.1:5000") and s.is_insecure("localhost:5000") and s.is_insecure("127.5.6.7")
    assert s.is_insecure("10.1.2.3:443") and s.is_insecure("reg.local:5000")
    assert not s.is_insecure("example.com") and not s.is_insecure("11.0.0.1:5000")
    hub = RegistrySettings(mirrors=("http://127.0.0.1:5001",))
    assert [c.base for c in hub.mirrors_for("docker.io")] == ["http://127.0.0.1:5001"]
    assert [c.base for c in hub.candidates("docker.io", AuthConfig())] == ["https://registry-1.docker.io"]
    assert RegistrySettings(mirrors=("http://m",)).mirrors_for("q.io") == []
    # an insecure registry: TLS without verification first, then plain HTTP (dockerd's order)
    local = s.candidates("127.0.0.1:5000", AuthConfig())
    assert [(c.base, c.verify) for c in local] == [("https://127.0.0.1:5000", False), ("http://127.0.0.1:5000", True)]


def test_tokens(tmp_path: Path) -> None:
    issuer = TokenIssuer.from_root(tmp_path)
    tok = issuer.issue("alice", [("repository", "a/b", {"pull"})], service="svc")
    claims = issuer.verify(tok)
    assert claims is not None and claims["sub"] == "alice"
    assert allowed(claims, "repository", "a/b", "pull")
    assert not allowed(claims, "repository", "a/b", "push")
    assert not allowed(claims, "repository", "other", "pull")
    head, body, sig = tok.split(".")
    assert issuer.verify(f"{head}.{body}.{sig[:-2]}xx") is None
    assert TokenIssuer(b"other-key").verify(tok) is None


def test_htpasswd(tmp_path: Path) -> None:
    f = tmp_path / "htpasswd"
    f.write_text(
        f"alice:{Htpasswd.hash('pw')}\nbob:{Htpasswd.hash('x').replace('$2b$', '$2y$', 1)}\nplain:pw\n"
    )
    users = Htpasswd.load(f)
    assert users.check("alice", "pw") and not users.check("alice", "nope")
    assert users.check("bob", "x")  # htpasswd -B writes $2y$
    assert not users.check("plain", "pw")  # only bcrypt is accepted
    assert not users.check("nobody", "pw")
