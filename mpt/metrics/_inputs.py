"""Check the inputs every flip metric takes and turn them into predicted labels.

Each model's output may be float logits `(N, K)` (the prediction is the argmax over the
columns) or integer predicted labels `(N,)`. Targets are integer labels `(N,)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mpt.errors import MPTError, ShapeError

SUBSETS: tuple[str, ...] = ("old", "all")


@dataclass(frozen=True)
class Predictions:
    """Validated predictions of both models and the targets, int64 CPU tensors of shape (N,).

    `num_old` and `num_classes` are None where the inputs do not determine them
    (labels given and no explicit value).
    """

    old: Tensor
    new: Tensor
    targets: Tensor
    num_old: int | None
    num_classes: int | None

    def subset_mask(self, subset: str) -> Tensor:
        """Bool (N,): the samples in `subset` ("old": target < num_old, "all": every one)."""
        check_subset(subset)
        if subset == "all":
            return torch.ones_like(self.targets, dtype=torch.bool)
        if self.num_old is None:
            raise ShapeError('num_old is required for subset="old" when old_logits are labels')
        return self.targets < self.num_old


def check_subset(subset: str) -> None:
    """Raise MPTError unless `subset` is one of SUBSETS."""
    if subset not in SUBSETS:
        raise MPTError(f"subset must be one of {SUBSETS}, got {subset!r}")


def resolve(
    old_logits: Tensor,
    new_logits: Tensor,
    targets: Tensor,
    num_old: int | None = None,
    *,
    num_classes: int | None = None,
    need_num_old: bool = False,
) -> Predictions:
    """Validate both models' outputs against `targets` and return their predictions."""
    targets = check_labels("targets", targets)
    n = targets.shape[0]
    old_cols = check_outputs("old_logits", old_logits, n)
    new_cols = check_outputs("new_logits", new_logits, n)
    if old_cols is not None and new_cols is not None and old_cols > new_cols:
        raise ShapeError(
            f"old_logits has more columns than new_logits: {tuple(old_logits.shape)} vs "
            f"{tuple(new_logits.shape)}; the new model must cover every old class"
        )
    num_classes = _resolve_num_classes(new_cols, num_classes)
    num_old = _resolve_num_old(num_old, old_cols, num_classes, need_num_old)
    check_range("targets", targets, num_classes)
    old = predict("old_logits", old_logits, num_old)
    new = predict("new_logits", new_logits, num_classes)
    return Predictions(old, new, targets, num_old, num_classes)


def check_labels(name: str, labels: Tensor) -> Tensor:
    """Check that `labels` is a non-empty integer (N,) tensor; return it as int64 on CPU."""
    _check_tensor(name, labels)
    if not _is_integer(labels) or labels.dim() != 1:
        raise ShapeError(
            f"{name} must be integer labels of shape (N,), got {labels.dtype} "
            f"of shape {tuple(labels.shape)}"
        )
    if labels.shape[0] == 0:
        raise ShapeError(f"{name} is empty: need at least one sample")
    return labels.detach().to("cpu", torch.int64)


def predict(name: str, logits: Tensor, num_classes: int | None) -> Tensor:
    """Predicted labels (N,) int64 on CPU: argmax of logits, or the labels checked in range."""
    if logits.is_floating_point():
        return logits.detach().argmax(dim=1).to("cpu", torch.int64)
    labels = logits.detach().to("cpu", torch.int64)
    check_range(name, labels, num_classes)
    return labels


def check_range(name: str, labels: Tensor, num_classes: int | None) -> None:
    """Raise ShapeError unless every label lies in 0..num_classes-1 (or is >= 0 if None)."""
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        allowed = "0.." + ("" if num_classes is None else str(num_classes - 1))
        raise ShapeError(
            f"{name} has labels outside {allowed}: min {low}, max {high}"
            + ("" if num_classes is None else f" (num_classes={num_classes})")
        )


def check_outputs(name: str, outputs: Tensor, n: int) -> int | None:
    """Check one model's outputs against N targets; the logit column count, None for labels."""
    _check_tensor(name, outputs)
    is_logits = outputs.is_floating_point() and outputs.dim() == 2
    is_labels = _is_integer(outputs) and outputs.dim() == 1
    if not (is_logits or is_labels):
        raise ShapeError(
            f"{name} must be float logits of shape (N, K) or integer labels of shape (N,), "
            f"got {outputs.dtype} of shape {tuple(outputs.shape)}"
        )
    if outputs.shape[0] != n:
        raise ShapeError(
            f"{name} has {outputs.shape[0]} samples but targets has {n}: "
            f"shapes {tuple(outputs.shape)} and ({n},)"
        )
    if not is_logits:
        return None
    if outputs.shape[1] == 0:
        raise ShapeError(f"{name} has no columns: shape {tuple(outputs.shape)}")
    bad = int((~torch.isfinite(outputs)).sum())
    if bad:
        raise ShapeError(f"{name} contains {bad} NaN or infinite values out of {outputs.numel()}")
    return int(outputs.shape[1])


def _resolve_num_classes(new_cols: int | None, num_classes: int | None) -> int | None:
    if new_cols is not None and num_classes is not None and new_cols != num_classes:
        raise ShapeError(
            f"new_logits has {new_cols} columns but class_names has {num_classes} names "
            "(one per class)"
        )
    return new_cols if num_classes is None else num_classes


def _resolve_num_old(
    num_old: int | None, old_cols: int | None, num_classes: int | None, required: bool
) -> int | None:
    if num_old is None:
        if old_cols is None and required:
            raise ShapeError("num_old is required when old_logits are labels rather than logits")
        num_old = old_cols
    elif isinstance(num_old, bool) or not isinstance(num_old, int):
        raise ShapeError(f"num_old must be an int, got {num_old!r}")
    elif old_cols is not None and num_old != old_cols:
        raise ShapeError(f"num_old={num_old} does not match old_logits with {old_cols} columns")
    if num_old is None:
        return None
    if num_classes is None and num_old < 1:
        raise ShapeError(f"num_old must be at least 1, got {num_old}")
    if num_classes is not None and not 1 <= num_old <= num_classes - 1:
        raise ShapeError(
            f"num_old must be in 1..{num_classes - 1} (at least one old and one new class) "
            f"with num_classes={num_classes}, got {num_old}"
        )
    return num_old


def _check_tensor(name: str, value: object) -> None:
    if not isinstance(value, Tensor):
        raise ShapeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")


def _is_integer(tensor: Tensor) -> bool:
    return not tensor.is_floating_point() and not tensor.is_complex() and tensor.dtype != torch.bool
