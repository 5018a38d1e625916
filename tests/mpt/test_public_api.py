"""Every public module declares its surface, and every declared name exists."""

from __future__ import annotations

import importlib

import pytest

MODULES = [
    "mpt",
    "mpt.errors",
    "mpt.losses",
    "mpt.methods",
    "mpt.metrics",
    "mpt.models",
    "mpt.data",
    "mpt.train",
    "mpt.io",
    "mpt.manifest",
    "mpt.evaluate",
    "mpt.upgrade",
    "mpt.candidates",
    "mpt.selection",
    "mpt.biases",
    "mpt.gate",
    "mpt.train.schedule",
    "mpt.train.augment",
    "mpt.tables",
    "mpt.progress",
    "mpt.cli",
    "mpt.bench.flips",
    "mpt.bench.summary",
    "mpt.bench.report",
    "mpt.bench.plot",
]


@pytest.mark.parametrize("name", MODULES)
def test_public_module_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    assert isinstance(module.__all__, list) and module.__all__
    missing = [item for item in module.__all__ if not hasattr(module, item)]
    assert not missing


def test_issue_contract_names_are_public() -> None:
    from mpt import losses, methods, metrics, models

    assert {
        "margin_calibrated_cross_entropy",
        "focal_distillation_kl",
        "focal_distillation_lm",
        "logit_matching",
    } <= set(losses.__all__)
    assert {
        "negative_flip_rate",
        "relative_negative_flip_rate",
        "backward_trust_compatibility",
        "backward_error_compatibility",
        "wilson_interval",
        "flip_report",
    } <= set(metrics.__all__)
    assert {"get", "names"} <= set(methods.__all__) and "create" in models.__all__
