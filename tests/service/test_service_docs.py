"""The route table of docs/design.md lists exactly the operations of the OpenAPI schema, in its
order, each with the scope the schema names (`x-required-scope`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from core.settings import Settings
from service.app import create_app

DESIGN = Path(__file__).resolve().parents[2] / "docs" / "design.md"
ROW = re.compile(r"^\| (GET|POST|PUT|DELETE|PATCH) \| `([^`]+)` \| (\w+) \|")


def schema_rows(spec: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(method, path, scope) of every operation, in the schema's order; `none` for open ones."""
    return [
        (method.upper(), path, operation.get("x-required-scope", "none"))
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    ]


def test_docs_design_route_table_matches_the_schema(tmp_path: Path) -> None:
    spec = create_app(Settings(var_dir=tmp_path / "var"), run_migrations=False).openapi()
    expected = schema_rows(spec)
    documented = [m.groups() for line in DESIGN.read_text().splitlines() if (m := ROW.match(line))]
    table = "\n".join(f"| {m} | `{p}` | {s} | ... |" for m, p, s in expected)
    assert documented == expected, f"docs/design.md's route table should list:\n{table}"
