"""Which biases an upgrade trains: absolute logits, or units of the old model's margin.

The paper's `b = 4` is in the logit units of a converged ResNet-18; another model's logits
have another scale, so the same number buys another margin. A relative bias is measured in
units of the old model's median top-1 margin on its training data (the gap between its top
two old-class logits), so `0.5` asks every model for half its typical confidence gap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mpt import methods
from mpt.errors import MPTError
from mpt.evaluate import predict_logits
from mpt.io import InputSpec

__all__ = ["DEFAULT_RELATIVE_SWEEP", "MAX_SWEEP", "BiasSweep", "median_margin", "takes_bias"]

DEFAULT_RELATIVE_SWEEP = (0.0, 0.125, 0.25, 0.5)
MAX_SWEEP = 16  # candidates one job may train


@dataclass(frozen=True)
class BiasSweep:
    """The bias values to train, one candidate each, and their unit.

    `values=None` is the default: `DEFAULT_RELATIVE_SWEEP` in margin units.
    """

    values: tuple[float, ...] | None = None
    relative: bool = True

    @classmethod
    def parse(
        cls,
        method: str,
        bias: float | Sequence[float] | None = None,
        relative_bias: float | Sequence[float] | None = None,
    ) -> BiasSweep | None:
        """The sweep for `method` from a user's absolute or relative values (at most one
        of the two); None when the method has no bias."""
        has_bias = takes_bias(method)
        given = bias if relative_bias is None else relative_bias
        if bias is not None and relative_bias is not None:
            raise MPTError("give bias (logits) or relative_bias (margins), not both")
        if not has_bias:
            if given is not None:
                raise MPTError(f"method {method!r} has no bias; leave the bias out")
            return None
        if given is None:
            return cls()
        values = (given,) if isinstance(given, int | float) else tuple(given)
        if not values or not all(_valid(v) for v in values):
            raise MPTError(f"bias values must be finite, >= 0 and at least one, got {list(values)}")
        unique = tuple(dict.fromkeys(float(v) for v in values))
        if len(unique) > MAX_SWEEP:
            raise MPTError(f"at most {MAX_SWEEP} bias values, got {len(unique)}")
        return cls(unique, relative=relative_bias is not None)

    @property
    def grid(self) -> tuple[float, ...]:
        return DEFAULT_RELATIVE_SWEEP if self.values is None else self.values

    def absolute(self, margin: float) -> list[float]:
        """The biases in logits, for an old model whose median margin is `margin`."""
        scale = margin if self.relative else 1.0
        return [round(v * scale, 6) for v in self.grid]

    def to_dict(self) -> dict[str, object]:
        return {"values": list(self.grid), "unit": "margin" if self.relative else "logit"}


def takes_bias(method: str) -> bool:
    """Whether `method` trains with a bias on new-class logits that a sweep can set: MPT and
    its bias-only ablation, not the `*_nobias` ablations (bias fixed at 0) or the baselines."""
    return float(methods.get(method).hyperparameters().get("bias", 0.0)) > 0


def _valid(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def median_margin(model: nn.Module, images: Tensor, spec: InputSpec) -> float:
    """The median gap between the top two logits of `model` over uint8 `images` (N, C, H, W)."""
    logits = predict_logits(model, images, spec)  # (N, C_old)
    if logits.shape[1] < 2:
        raise MPTError("a margin needs a model with at least two classes")
    top2 = torch.topk(logits.float(), 2, dim=1).values  # (N, 2)
    return float((top2[:, 0] - top2[:, 1]).median())
