"""The losses of Margin Preserving Training and of the baselines it is compared with.

Shapes: `logits` (B, C) from the model being trained, `ref_logits` (B, C_ref) from a frozen
reference, `targets` (B,) class indices. Where a reference covers fewer classes (the old model),
the caller slices `logits[:, :C_old]` first; the functions themselves demand equal shapes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mpt.errors import ShapeError

__all__ = [
    "FocalDistillationKL",
    "FocalDistillationLM",
    "MarginCalibratedCrossEntropy",
    "focal_distillation_kl",
    "focal_distillation_lm",
    "focal_weights",
    "logit_matching",
    "margin_calibrated_cross_entropy",
    "topk_mask",
]


def _check_logits(logits: Tensor, targets: Tensor | None = None) -> None:
    if logits.dim() != 2:
        raise ShapeError(f"logits must be (B, C), got shape {tuple(logits.shape)}")
    if targets is None:
        return
    if targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
        raise ShapeError(
            f"targets must be (B,) with B={logits.shape[0]}, got shape {tuple(targets.shape)}"
        )


def _check_pair(logits: Tensor, ref_logits: Tensor, targets: Tensor | None = None) -> None:
    _check_logits(logits, targets)
    if logits.shape != ref_logits.shape:
        raise ShapeError(
            f"logits {tuple(logits.shape)} and ref_logits {tuple(ref_logits.shape)} must have "
            "the same shape; slice logits[:, :C_ref] to distill from a model with fewer classes"
        )


def margin_calibrated_cross_entropy(
    logits: Tensor, targets: Tensor, num_old: int, bias: float
) -> Tensor:
    """Cross-entropy with `bias` added to every new-class logit (columns `num_old..C-1`).

    Old-class samples thereby learn a margin of `bias` against the new classes. Used in
    training only; inference reads the raw logits. `bias=0` is plain cross-entropy.
    """
    _check_logits(logits, targets)
    num_classes = logits.shape[1]
    if not 1 <= num_old <= num_classes:
        raise ShapeError(f"num_old must be in 1..{num_classes}, got {num_old}")
    if bias < 0:
        raise ShapeError(f"bias must be >= 0, got {bias}")
    shift = torch.zeros(num_classes, dtype=logits.dtype, device=logits.device)
    shift[num_old:] = bias
    return F.cross_entropy(logits + shift, targets)


def focal_weights(ref_logits: Tensor, targets: Tensor, alpha: float, beta: float) -> Tensor:
    """Per-sample weights `alpha + beta * [argmax ref_logits == target]`, shape (B,)."""
    hits = ref_logits.argmax(dim=1) == targets
    return alpha + beta * hits.to(ref_logits.dtype)


def focal_distillation_kl(
    logits: Tensor,
    ref_logits: Tensor,
    targets: Tensor,
    alpha: float = 1.0,
    beta: float = 5.0,
    tau: float = 5.0,
) -> Tensor:
    """Focal KL distillation: `mean_i w_i * KL(softmax(ref/tau) || softmax(logits/tau))`.

    The KL divergence is summed over classes and averaged over the batch; there is no
    `tau**2` factor. `beta=0` gives plain (non-focal) distillation weighted by `alpha`.
    """
    _check_pair(logits, ref_logits, targets)
    ref_log_probs = F.log_softmax(ref_logits.detach() / tau, dim=1)
    log_probs = F.log_softmax(logits / tau, dim=1)
    kl = (ref_log_probs.exp() * (ref_log_probs - log_probs)).sum(dim=1)  # (B,)
    weights = focal_weights(ref_logits.detach(), targets, alpha, beta)
    return (weights * kl).mean()


def focal_distillation_lm(
    logits: Tensor, ref_logits: Tensor, targets: Tensor, alpha: float = 1.0, beta: float = 5.0
) -> Tensor:
    """Focal logit matching: `mean_i w_i * mean_j (logits_ij - ref_ij)**2 / 2`."""
    _check_pair(logits, ref_logits, targets)
    squared = (logits - ref_logits.detach()).pow(2).mean(dim=1) / 2  # (B,)
    weights = focal_weights(ref_logits.detach(), targets, alpha, beta)
    return (weights * squared).mean()


def logit_matching(logits: Tensor, ref_logits: Tensor, mask: Tensor | None = None) -> Tensor:
    """L2 logit matching: the mean over samples and logits of `(logits - ref)**2 / 2`.

    With a boolean `mask` of the same shape, only the masked logits count (ELODI's top-k).
    """
    _check_pair(logits, ref_logits)
    squared = (logits - ref_logits.detach()).pow(2) / 2
    if mask is None:
        return squared.mean()
    if mask.shape != squared.shape:
        raise ShapeError(f"mask {tuple(mask.shape)} must match logits {tuple(logits.shape)}")
    return (squared * mask).sum() / mask.sum().clamp(min=1)


def topk_mask(ref_logits: Tensor, k: int) -> Tensor:
    """A boolean mask of each row's `k` largest reference logits."""
    k = min(k, ref_logits.shape[1])
    index = ref_logits.topk(k, dim=1).indices
    return torch.zeros_like(ref_logits, dtype=torch.bool).scatter_(1, index, True)


class MarginCalibratedCrossEntropy(nn.Module):
    """Module form of `margin_calibrated_cross_entropy`."""

    def __init__(self, num_old: int, bias: float) -> None:
        super().__init__()
        self.num_old, self.bias = num_old, bias

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return margin_calibrated_cross_entropy(logits, targets, self.num_old, self.bias)


class FocalDistillationKL(nn.Module):
    """Module form of `focal_distillation_kl`."""

    def __init__(self, alpha: float = 1.0, beta: float = 5.0, tau: float = 5.0) -> None:
        super().__init__()
        self.alpha, self.beta, self.tau = alpha, beta, tau

    def forward(self, logits: Tensor, ref_logits: Tensor, targets: Tensor) -> Tensor:
        return focal_distillation_kl(logits, ref_logits, targets, self.alpha, self.beta, self.tau)


class FocalDistillationLM(nn.Module):
    """Module form of `focal_distillation_lm`."""

    def __init__(self, alpha: float = 1.0, beta: float = 5.0) -> None:
        super().__init__()
        self.alpha, self.beta = alpha, beta

    def forward(self, logits: Tensor, ref_logits: Tensor, targets: Tensor) -> Tensor:
        return focal_distillation_lm(logits, ref_logits, targets, self.alpha, self.beta)
