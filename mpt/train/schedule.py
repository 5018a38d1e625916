"""The optimiser and its learning-rate schedule: SGD over parameter groups, warmup then cosine."""

from __future__ import annotations

import math

import torch
from torch import nn

from mpt.train.config import TrainConfig

__all__ = ["lr_factor", "make_optimizer", "make_scheduler"]


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Multiplier of the base learning rate after `step` optimisation steps.

    Rises linearly over the first `warmup` steps (from 1/warmup to 1), then follows a cosine
    from 1 to 0 over the remaining steps.
    """
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(step - warmup, span) / span))


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD with weight decay on weight matrices and kernels only, unless `decay_norms`.

    Decaying norm scales and biases pulls them towards zero for no regularising benefit
    (the torchvision and timm reference recipes exclude them).
    """
    decay: list[nn.Parameter] = []
    plain: list[nn.Parameter] = []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (decay if parameter.ndim > 1 or config.decay_norms else plain).append(parameter)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]
    return torch.optim.SGD(
        [g for g in groups if g["params"]], lr=config.lr, momentum=config.momentum
    )


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule of `lr_factor` over the whole run."""
    total = config.epochs * steps_per_epoch
    warmup = min(total // 2, round(config.warmup_epochs * steps_per_epoch))  # a cosine remains
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, warmup))
