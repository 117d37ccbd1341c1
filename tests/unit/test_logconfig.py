"""LogConfig validation and the plan conmon gets."""

from __future__ import annotations

import pytest

from dockyard import errdefs
from dockyard.containers import logconfig
from dockyard.containers.logconfig import LogPlan


def test_normalize_and_plan() -> None:
    assert logconfig.normalize(None) == {"Type": "json-file", "Config": {}}
    lc = logconfig.normalize({"Type": "", "Config": {"max-size": "10m", "max-file": "1"}})
    assert logconfig.plan(lc) == LogPlan("k8s-file", 10 * 1024 * 1024)
    assert logconfig.plan(logconfig.normalize({"Type": "none"})) == LogPlan("none")
    assert logconfig.plan(logconfig.normalize({})) == LogPlan("k8s-file", -1)


@pytest.mark.parametrize(("text", "size"), [("100", 100), ("2k", 2048), ("1.5m", 1572864), ("1g", 1 << 30), ("3MB", 3 << 20)])
def test_sizes(text: str, size: int) -> None:
    assert logconfig.parse_size(text) == size


@pytest.mark.parametrize(
    ("lc", "message"),
    [({"Type": "gelf"}, "logger: no log driver named 'gelf' is registered"),
     ({"Config": {"max-size": "0"}}, "max-size must be a positive number"),
     ({"Config": {"mode": "non-blocking"}}, "logger: logging mode non-blocking is not supported"),
     ({"Config": {"compress": "true"}}, "compress is not supported"),
     ({"Type": "none", "Config": {"max-size": "1m"}}, "log opts are not supported with the none log driver")],
)  # fmt: skip
def test_refusals(lc: dict[str, object], message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument) as err:
        logconfig.normalize(lc)  # type: ignore[arg-type]
    assert str(err.value).startswith(message)


def test_daemon_defaults_merge_as_docker() -> None:
    defaults = logconfig.normalize({"Type": "json-file", "Config": {"max-size": "1m"}})
    assert logconfig.normalize(None, defaults) == {"Type": "json-file", "Config": {"max-size": "1m"}}
    assert logconfig.normalize({"Config": {"max-size": "2k"}}, defaults)["Config"] == {"max-size": "2k"}
    assert logconfig.normalize({"Type": "none"}, defaults) == {"Type": "none", "Config": {}}
    none = logconfig.normalize({"Type": "none"})
    assert logconfig.normalize({}, none)["Type"] == "none"
    assert logconfig.normalize({"Type": "json-file"}, none) == {"Type": "json-file", "Config": {}}
