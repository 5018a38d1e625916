"""`mpt.biases`: which biases an upgrade trains, and the bias relative to the old margin."""

from __future__ import annotations

import copy

import pytest
import torch

from mpt import models
from mpt.biases import DEFAULT_RELATIVE_SWEEP, BiasSweep, median_margin
from mpt.errors import MPTError
from mpt.io import InputSpec

SPEC = InputSpec(1, 8, 8, (0.5,), (0.25,))


def _scaled(model: torch.nn.Module, factor: float) -> torch.nn.Module:
    """The same model with every logit multiplied by `factor`."""
    other = copy.deepcopy(model)
    head = other.fc
    with torch.no_grad():
        head.weight.mul_(factor)
        head.bias.mul_(factor)
    return other


@pytest.fixture
def images() -> torch.Tensor:
    return (torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 255).to(
        torch.uint8
    )


def test_relative_bias_gives_the_same_margin_on_models_of_another_logit_scale(images) -> None:
    torch.manual_seed(0)
    model = models.create("small_cnn", 5, in_channels=1).eval()
    louder = _scaled(model, 7.0)
    sweep = BiasSweep((0.25, 0.5))

    quiet_margin, loud_margin = (
        median_margin(model, images, SPEC),
        median_margin(louder, images, SPEC),
    )
    quiet, loud = sweep.absolute(quiet_margin), sweep.absolute(loud_margin)

    assert loud_margin == pytest.approx(7.0 * quiet_margin, rel=1e-4)
    assert [b / quiet_margin for b in quiet] == pytest.approx([0.25, 0.5], rel=1e-4)
    assert [b / loud_margin for b in loud] == pytest.approx([0.25, 0.5], rel=1e-4)
    assert BiasSweep((2.0,), relative=False).absolute(loud_margin) == [2.0]


def test_median_margin_is_the_gap_between_the_two_largest_logits() -> None:
    class Fixed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))  # gives the model a device

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            gaps = torch.tensor([1.0, 2.0, 10.0])[: x.shape[0]]
            return torch.stack([gaps, torch.zeros_like(gaps), -torch.ones_like(gaps)], dim=1)

    images = torch.zeros(3, 1, 8, 8, dtype=torch.uint8)

    assert median_margin(Fixed(), images, SPEC) == pytest.approx(2.0)


def test_sweep_default_is_relative_for_methods_with_a_bias() -> None:
    sweep = BiasSweep.parse("mpt_kl")

    assert sweep is not None and sweep.relative and sweep.grid == DEFAULT_RELATIVE_SWEEP
    assert sweep.to_dict() == {"values": list(DEFAULT_RELATIVE_SWEEP), "unit": "margin"}
    assert BiasSweep.parse("pct_kl") is None


def test_sweep_parse_keeps_the_unit_asked_for() -> None:
    absolute = BiasSweep.parse("mpt_lm", bias=[1, 4])
    relative = BiasSweep.parse("mpt_lm", relative_bias=0.5)

    assert absolute == BiasSweep((1.0, 4.0), relative=False)
    assert relative == BiasSweep((0.5,), relative=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "pct_kl", "bias": 1.0}, "has no bias"),
        ({"method": "mpt_kl", "bias": 1.0, "relative_bias": 1.0}, "not both"),
        ({"method": "mpt_kl", "bias": []}, "at least one"),
        ({"method": "mpt_kl", "bias": [-1.0]}, ">= 0"),
        ({"method": "mpt_kl", "relative_bias": [float("nan")]}, "finite"),
        ({"method": "mpt_kl", "bias": [True]}, "finite"),
    ],
)
def test_sweep_parse_refuses_with_a_reason(kwargs: dict, message: str) -> None:
    with pytest.raises(MPTError, match=message):
        BiasSweep.parse(**kwargs)


def test_sweep_nobias_ablations_take_no_bias() -> None:
    assert BiasSweep.parse("mpt_kl_nobias") is None
    with pytest.raises(MPTError, match="has no bias"):
        BiasSweep.parse("mpt_lm_nobias", bias=1.0)


def test_sweep_drops_repeated_values_and_caps_the_count() -> None:
    assert BiasSweep.parse("mpt_kl", bias=[1, 1.0, 2]) == BiasSweep((1.0, 2.0), relative=False)
    with pytest.raises(MPTError, match="at most 16"):
        BiasSweep.parse("mpt_kl", relative_bias=[i / 10 for i in range(17)])
