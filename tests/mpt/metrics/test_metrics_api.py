"""The public surface of mpt.metrics is explicit and stable."""

from __future__ import annotations

import inspect

import mpt.metrics

EXPECTED = {
    "ClassFlips",
    "FlipCounter",
    "FlipEntry",
    "FlipMatrix",
    "FlipReport",
    "FlippedSample",
    "ChurnTally",
    "churn_tally",
    "FLIPPED_KEPT",
    "ModelErrorRates",
    "Proportion",
    "SubsetProportions",
    "backward_error_compatibility",
    "backward_trust_compatibility",
    "error_rate",
    "flip_report",
    "negative_flip_rate",
    "relative_negative_flip_rate",
    "wilson_interval",
}


def test_metrics_all_lists_the_public_names() -> None:
    assert set(mpt.metrics.__all__) == EXPECTED
    assert all(hasattr(mpt.metrics, name) for name in mpt.metrics.__all__)


def test_metrics_public_names_are_documented() -> None:
    assert all(inspect.getdoc(getattr(mpt.metrics, name)) for name in mpt.metrics.__all__)


def test_metrics_flip_functions_share_a_signature() -> None:
    expected = ["old_logits", "new_logits", "targets", "num_old", "subset"]
    for name in (
        "negative_flip_rate",
        "relative_negative_flip_rate",
        "backward_trust_compatibility",
        "backward_error_compatibility",
    ):
        signature = inspect.signature(getattr(mpt.metrics, name))
        assert list(signature.parameters) == expected, name
        assert signature.parameters["num_old"].default is None
        assert signature.parameters["subset"].default == "old"
