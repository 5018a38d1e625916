"""Bad inputs raise ShapeError (or MPTError) with a message naming the argument."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from mpt.errors import MPTError, ShapeError
from mpt.metrics import (
    FlipCounter,
    backward_error_compatibility,
    backward_trust_compatibility,
    error_rate,
    flip_report,
    negative_flip_rate,
    relative_negative_flip_rate,
)

NAMES = ["a", "b", "c", "d"]


def report(
    old: Tensor, new: Tensor, targets: Tensor, num_old: int | None = None, subset: str = "old"
) -> object:
    """flip_report behind the metric functions' signature, with 4 class names."""
    if num_old is None:
        num_old = old.shape[1] if isinstance(old, Tensor) and old.dim() == 2 else 2
    return flip_report(old, new, targets, num_old, NAMES)


FUNCTIONS: list[Callable[..., object]] = [
    negative_flip_rate,
    relative_negative_flip_rate,
    backward_trust_compatibility,
    backward_error_compatibility,
    report,
]


def old_logits(n: int = 3, cols: int = 2) -> Tensor:
    return torch.randn(n, cols, generator=torch.Generator().manual_seed(0))


def new_logits(n: int = 3, cols: int = 4) -> Tensor:
    return torch.randn(n, cols, generator=torch.Generator().manual_seed(1))


def targets(values: list[int] | None = None) -> Tensor:
    return torch.tensor([0, 1, 3] if values is None else values, dtype=torch.int64)


def with_value(tensor: Tensor, value: float) -> Tensor:
    tensor = tensor.clone()
    tensor[1, 0] = value
    return tensor


BAD_INPUTS = {
    "old_3d": ((old_logits().unsqueeze(0), new_logits(), targets()), "old_logits must be"),
    "new_float_1d": ((old_logits(), torch.randn(3), targets()), "new_logits must be"),
    "old_bool": ((torch.ones(3, dtype=torch.bool), new_logits(), targets()), "old_logits"),
    "targets_2d": ((old_logits(), new_logits(), targets().view(3, 1)), "targets must be"),
    "targets_float": ((old_logits(), new_logits(), targets().float()), "targets must be"),
    "old_length": ((old_logits(n=4), new_logits(), targets()), "old_logits has 4 samples"),
    "new_length": ((old_logits(), new_logits(n=2), targets()), "new_logits has 2 samples"),
    "old_wider": ((old_logits(cols=5), new_logits(), targets()), "old_logits has more columns"),
    "old_no_columns": ((old_logits(cols=0), new_logits(), targets()), "old_logits has no col"),
    "target_high": ((old_logits(), new_logits(), targets([0, 1, 4])), "targets has labels"),
    "target_negative": ((old_logits(), new_logits(), targets([0, -1, 3])), "targets has labels"),
    "old_label_high": ((targets([0, 2, 1]), new_logits(), targets(), 2), "old_logits has labels"),
    "new_label_low": ((old_logits(), targets([0, -1, 1]), targets()), "new_logits has labels"),
    "old_nan": ((with_value(old_logits(), float("nan")), new_logits(), targets()), "old_logits"),
    "new_inf": ((old_logits(), with_value(new_logits(), float("inf")), targets()), "new_logits"),
    "num_old_mismatch": ((old_logits(), new_logits(), targets(), 3), "num_old=3 does not match"),
    "num_old_zero": ((targets([0, 0, 0]), new_logits(), targets(), 0), "num_old must be in 1"),
    "num_old_all": ((targets([0, 0, 0]), new_logits(), targets(), 4), "num_old must be in 1"),
    "num_old_float": ((targets([0, 0, 0]), new_logits(), targets(), 2.0), "num_old must be an"),
    "num_old_equal": ((old_logits(cols=4), new_logits(), targets()), "num_old must be in 1"),
    "empty": ((old_logits(n=0), new_logits(n=0), targets([])), "targets is empty"),
    "not_tensor": (([[0.0, 1.0]] * 3, new_logits(), targets()), "old_logits must be a torch"),
}


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_metric_inputs_bad_raise_shape_error(function: Callable[..., object], case: str) -> None:
    args, match = BAD_INPUTS[case]
    with pytest.raises(ShapeError, match=match):
        function(*args)


@pytest.mark.parametrize("function", FUNCTIONS[:4], ids=lambda f: f.__name__)
def test_metric_inputs_labels_without_num_old_on_old_subset(
    function: Callable[..., object],
) -> None:
    with pytest.raises(ShapeError, match="num_old is required"):
        function(targets([0, 1, 0]), targets([0, 1, 2]), targets())


@pytest.mark.parametrize("function", FUNCTIONS[:4], ids=lambda f: f.__name__)
def test_metric_inputs_unknown_subset(function: Callable[..., object]) -> None:
    with pytest.raises(MPTError, match="subset must be one of"):
        function(old_logits(), new_logits(), targets(), subset="new")


def test_flip_report_class_names_length_mismatch() -> None:
    with pytest.raises(ShapeError, match="class_names has 3 names"):
        flip_report(old_logits(), new_logits(), targets(), 2, ["a", "b", "c"])


def test_flip_report_class_names_bare_string() -> None:
    with pytest.raises(ShapeError, match="class_names must be a sequence of str"):
        flip_report(old_logits(), new_logits(), targets(), 2, "abcd")


def test_flip_report_labels_checked_against_class_names() -> None:
    with pytest.raises(ShapeError, match=r"targets has labels outside 0\.\.2"):
        flip_report(targets([0, 1, 0]), targets([0, 1, 2]), targets([0, 1, 3]), 2, NAMES[:3])


def test_flip_report_new_labels_checked_against_class_names() -> None:
    with pytest.raises(ShapeError, match=r"new_logits has labels outside 0\.\.3"):
        flip_report(old_logits(), targets([0, 4, 1]), targets(), 2, NAMES)


def test_error_rate_bad_mask() -> None:
    with pytest.raises(ShapeError, match=r"mask must be a bool tensor of shape \(3,\)"):
        error_rate(new_logits(), targets(), torch.ones(3))


def test_error_rate_names_logits() -> None:
    with pytest.raises(ShapeError, match="logits has 2 samples but targets has 3"):
        error_rate(new_logits(n=2), targets())


def test_flip_counter_rejects_bad_construction() -> None:
    with pytest.raises(ShapeError, match=r"num_old must be in 1\.\.3"):
        FlipCounter(num_old=4, class_names=NAMES)
    with pytest.raises(MPTError, match="confidence"):
        FlipCounter(num_old=2, class_names=NAMES, confidence=1.5)


def test_flip_counter_update_validates_batch() -> None:
    counter = FlipCounter(num_old=2, class_names=NAMES)
    with pytest.raises(ShapeError, match="old_logits has more columns"):
        counter.update(old_logits(cols=5), new_logits(), targets())
