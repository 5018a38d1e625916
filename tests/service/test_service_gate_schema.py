"""The API's gate policy schema is derived from the rule registry of `mpt.gate`."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mpt.gate import RULES
from service.schemas import DeploymentCreate, GatePolicy


def test_gate_schema_every_policy_field_has_a_rule() -> None:
    fields = set(GatePolicy.model_fields) - {"bind_on"}

    assert fields == set(RULES)


def test_gate_schema_bounds_come_from_the_rules() -> None:
    schema = GatePolicy.model_json_schema()["properties"]

    for name, rule in RULES.items():
        [number, _null] = schema[name]["anyOf"]
        assert number["minimum"] == rule.low
        assert number.get("maximum") == rule.high
        assert schema[name]["description"] == rule.description


def test_gate_schema_refuses_an_unknown_rule() -> None:
    with pytest.raises(ValidationError, match="max_nfrr"):
        DeploymentCreate.model_validate({"name": "d", "gate": {"max_nfrr": 0.1}})


def test_gate_schema_refuses_a_limit_out_of_range() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        DeploymentCreate.model_validate({"name": "d", "gate": {"error_budget": 2}})
