"""docs/api-coverage.md and the router agree: every route the table says is served is
registered, and nothing is registered that the table does not list."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import dockyard.api.routes as routes_pkg
from dockyard.api.routes import all_tables

TABLE = Path(__file__).resolve().parents[2] / "docs" / "api-coverage.md"
UNROUTED = {"missing", "in progress"}
STATES = {"implemented", "no swarm", "no plugins", "refused"} | UNROUTED


def _norm(path: str) -> str:
    return re.sub(r"\{[^}:]+(:[^}]*)?\}", "{}", path)  # `{name:.+}` and `{id}` alike


def _table() -> dict[tuple[str, str], str]:
    rows: dict[tuple[str, str], str] = {}
    for line in TABLE.read_text().splitlines():
        m = re.match(r"\| (GET|POST|PUT|DELETE|HEAD) \| `([^`]+)` \| ([^|]+?) \|", line)
        if m:
            key = (m.group(1), _norm(m.group(2)))
            assert key not in rows, f"{key} is listed twice"
            rows[key] = m.group(3)
    return rows


def _router() -> set[tuple[str, str]]:
    # the daemon's own routes under /dockyard/ (move, cluster) are not the Engine API
    return {
        (r.method, _norm(r.path))
        for table in all_tables()
        for r in table.entries
        if not r.path.startswith("/dockyard/")
    }


def test_every_route_module_is_a_table() -> None:
    """`all_tables()` is the one list the document, the fuzz test and this check use."""
    modules = {info.name for info in pkgutil.iter_modules(routes_pkg.__path__)}
    tables = {id(getattr(importlib.import_module(f"{routes_pkg.__name__}.{m}"), "routes", None)) for m in modules}
    assert tables - {id(None)} == {id(t) for t in all_tables()}


def test_table_states_are_known() -> None:
    rows = _table()
    assert len(rows) > 100
    assert {s for s in rows.values()} <= STATES


def test_table_and_router_agree() -> None:
    rows, routed = _table(), _router()
    unlisted = routed - rows.keys()
    assert not unlisted, f"routed but not in docs/api-coverage.md: {sorted(unlisted)}"
    not_routed = {k for k, s in rows.items() if s not in UNROUTED} - routed
    assert not not_routed, f"docs/api-coverage.md says served, but no route: {sorted(not_routed)}"
    wrongly_missing = {k for k, s in rows.items() if s == "missing"} & routed
    assert not wrongly_missing, f"routed but marked missing: {sorted(wrongly_missing)}"
