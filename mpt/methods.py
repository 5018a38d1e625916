"""Training objectives by name: MPT, its ablations and the baselines of the paper.

`get(name, **overrides)` returns a configured `Method`; `method.loss(batch)` computes the
objective for one batch. A method declares which frozen teachers it needs: the old model
(`uses_old`) and a reference new model (`reference`: "single" for `phi_new`, "ensemble" for
the mean logits of independently trained new models, "none").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor

from mpt import losses
from mpt.errors import MPTError

__all__ = [
    "Elodi",
    "FocalDistillation",
    "LossInputs",
    "MarginPreserving",
    "Method",
    "NoTreatment",
    "get",
    "names",
]


@dataclass(frozen=True)
class LossInputs:
    """What a method sees of one training batch."""

    logits: Tensor  # (B, C) raw logits of the model being trained
    targets: Tensor  # (B,)
    num_old: int
    old_logits: Tensor | None = None  # (B, C_old) from phi_old
    ref_logits: Tensor | None = None  # (B, C) from phi_new or the ensemble mean
    epoch: int = 0


def _require(tensor: Tensor | None, what: str, method: str) -> Tensor:
    if tensor is None:
        raise MPTError(f"method {method!r} needs {what} logits, none were given")
    return tensor


@dataclass(frozen=True)
class Method:
    """Base class: plain cross-entropy, no teachers."""

    name: str = "no_treatment"
    uses_old: ClassVar[bool] = False
    reference: ClassVar[str] = "none"

    def loss(self, batch: LossInputs) -> Tensor:
        return F.cross_entropy(batch.logits, batch.targets)

    def hyperparameters(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "name"}


@dataclass(frozen=True)
class NoTreatment(Method):
    """Cross-entropy on all classes: the model a plain retrain would ship."""


@dataclass(frozen=True)
class FocalDistillation(Method):
    """PCT: cross-entropy plus focal distillation from the old model on the old classes."""

    form: str = "kl"
    alpha: float = 1.0
    beta: float = 5.0
    tau: float = 5.0
    weight: float = 1.0
    uses_old: ClassVar[bool] = True

    def loss(self, batch: LossInputs) -> Tensor:
        old = _require(batch.old_logits, "old-model", self.name)
        ce = F.cross_entropy(batch.logits, batch.targets)
        return ce + self.weight * _distill(self, batch.logits[:, : old.shape[1]], old, batch)


@dataclass(frozen=True)
class MarginPreserving(Method):
    """MPT: margin-calibrated cross-entropy plus focal distillation from both teachers."""

    form: str = "kl"
    bias: float = 4.0
    alpha: float = 1.0
    beta: float = 5.0
    tau: float = 5.0
    weight: float = 1.0
    distill: bool = True
    uses_old: ClassVar[bool] = True
    reference: ClassVar[str] = "single"

    def loss(self, batch: LossInputs) -> Tensor:
        z, y = batch.logits, batch.targets
        total = losses.margin_calibrated_cross_entropy(z, y, batch.num_old, self.bias)
        if not self.distill:
            return total
        old = _require(batch.old_logits, "old-model", self.name)
        ref = _require(batch.ref_logits, "reference-model", self.name)
        total = total + self.weight * _distill(self, z[:, : old.shape[1]], old, batch)
        return total + self.weight * _distill(self, z, ref, batch)


@dataclass(frozen=True)
class Elodi(Method):
    """ELODI: cross-entropy plus L2 logit matching to the old model and to an ensemble."""

    old_weight: float = 0.6
    ensemble_weight: float = 0.4
    warmup_epochs: int = 1
    topk: int | None = None
    ensemble_size: int = 4
    uses_old: ClassVar[bool] = True
    reference: ClassVar[str] = "ensemble"

    def loss(self, batch: LossInputs) -> Tensor:
        ce = F.cross_entropy(batch.logits, batch.targets)
        if batch.epoch < self.warmup_epochs:
            return ce
        old = _require(batch.old_logits, "old-model", self.name)
        ensemble = _require(batch.ref_logits, "ensemble", self.name)
        old_term = self._match(batch.logits[:, : old.shape[1]], old)
        return (
            ce
            + self.old_weight * old_term
            + self.ensemble_weight * self._match(batch.logits, ensemble)
        )

    def _match(self, logits: Tensor, ref_logits: Tensor) -> Tensor:
        mask = None if self.topk is None else losses.topk_mask(ref_logits, self.topk)
        return losses.logit_matching(logits, ref_logits, mask)


def _distill(
    method: FocalDistillation | MarginPreserving, logits: Tensor, ref: Tensor, batch: LossInputs
) -> Tensor:
    if method.form == "kl":
        return losses.focal_distillation_kl(
            logits, ref, batch.targets, method.alpha, method.beta, method.tau
        )
    return losses.focal_distillation_lm(logits, ref, batch.targets, method.alpha, method.beta)


_REGISTRY: dict[str, Callable[..., Method]] = {
    "no_treatment": lambda: NoTreatment(name="no_treatment"),
    "pct_naive": lambda: FocalDistillation(name="pct_naive", beta=0.0),
    "pct_kl": lambda: FocalDistillation(name="pct_kl"),
    "pct_lm": lambda: FocalDistillation(name="pct_lm", form="lm", weight=0.4),
    "elodi": lambda: Elodi(name="elodi"),
    "elodi_topk": lambda: Elodi(name="elodi_topk", topk=10),
    "mpt_kl": lambda: MarginPreserving(name="mpt_kl"),
    "mpt_lm": lambda: MarginPreserving(name="mpt_lm", form="lm", weight=0.4),
    "mpt_nodistill": lambda: MarginPreserving(name="mpt_nodistill", distill=False),
    "mpt_kl_nobias": lambda: MarginPreserving(name="mpt_kl_nobias", bias=0.0),
    "mpt_lm_nobias": lambda: MarginPreserving(
        name="mpt_lm_nobias", form="lm", weight=0.4, bias=0.0
    ),
}


def names() -> list[str]:
    """Every registered method name."""
    return list(_REGISTRY)


def get(name: str, **overrides: Any) -> Method:
    """The method `name` with its default hyperparameters, any of them overridden.

    Raises `KeyError` listing the valid names for an unknown method, and `MPTError` for an
    override the method does not have or an invalid value.
    """
    if name not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; valid methods: {', '.join(_REGISTRY)}")
    method = _REGISTRY[name]()
    valid = set(method.hyperparameters())
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise MPTError(
            f"method {name!r} has no hyperparameter {', '.join(map(repr, unknown))}; "
            f"it has: {', '.join(sorted(valid)) or 'none'}"
        )
    method = dataclasses.replace(method, **overrides)
    _validate(method)
    return method


def _validate(method: Method) -> None:
    params = method.hyperparameters()
    for key in ("bias", "alpha", "beta", "weight", "old_weight", "ensemble_weight"):
        if key in params and float(params[key]) < 0:
            raise MPTError(f"{method.name}: {key} must be >= 0, got {params[key]}")
    if "tau" in params and float(params["tau"]) <= 0:
        raise MPTError(f"{method.name}: tau must be > 0, got {params['tau']}")
    if "form" in params and params["form"] not in ("kl", "lm"):
        raise MPTError(f"{method.name}: form must be 'kl' or 'lm', got {params['form']!r}")
    if params.get("topk") is not None and int(params["topk"]) < 1:
        raise MPTError(f"{method.name}: topk must be >= 1, got {params['topk']}")
    if "ensemble_size" in params and int(params["ensemble_size"]) < 1:
        raise MPTError(f"{method.name}: ensemble_size must be >= 1")
    if "warmup_epochs" in params and int(params["warmup_epochs"]) < 0:
        raise MPTError(f"{method.name}: warmup_epochs must be >= 0")
