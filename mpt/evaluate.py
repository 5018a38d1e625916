"""Inference over whole splits, and flip reports between two model packages."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mpt.data import ImageDataset, align_classes
from mpt.errors import DatasetError
from mpt.io import InputSpec, ModelPackage, preprocess
from mpt.metrics import FlipReport, flip_report

__all__ = ["compare_packages", "predict_logits"]


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: Tensor,
    spec: InputSpec,
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
) -> Tensor:
    """Logits (N, C) as float32 on the CPU for uint8 `images` (N, C_in, H, W)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval().to(device)
    chunks = [
        model(preprocess(images[i : i + batch_size].to(device), spec)).float().cpu()
        for i in range(0, len(images), batch_size)
    ]
    model.train(was_training)
    return torch.cat(chunks)


def compare_packages(
    old: ModelPackage, new: ModelPackage, dataset: ImageDataset, split: str = "test"
) -> FlipReport:
    """The flip report of `new` against `old` on one split of `dataset`.

    Classes are matched by name: the old model's labels must be the first labels of the new
    model, and the dataset must contain every label of the new model.
    """
    old_labels, new_labels = old.manifest.labels, new.manifest.labels
    if new_labels[: len(old_labels)] != old_labels:
        raise DatasetError("the new model's labels do not start with the old model's labels")
    if split not in dataset.splits:
        raise DatasetError(f"dataset {dataset.name!r} has no {split!r} split")
    aligned = align_classes(dataset, new_labels)
    data = aligned.splits[split]
    known = data.y < len(new_labels)
    data = data.subset(known)
    old_logits = predict_logits(old.model, data.x, old.manifest.input)
    new_logits = predict_logits(new.model, data.x, new.manifest.input)
    return flip_report(old_logits, new_logits, data.y, len(old_labels), new_labels)
