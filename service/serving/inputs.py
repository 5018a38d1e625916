"""Turning /predict request bodies into model-ready tensors, and logits into answers."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mpt.data import ImageError, decode_image, image_pixels
from mpt.io import InputSpec, preprocess
from service.errors import PayloadTooLarge, Unprocessable

__all__ = ["InputError", "images_to_inputs", "json_to_inputs", "numbers", "predictions"]


class InputError(Unprocessable):
    """One or more inputs are unusable; `errors` says which and why."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        first = errors[0]
        super().__init__(f"input {first['input']}: {first['problem']}", errors=errors)


def _expected(spec: InputSpec) -> tuple[int, int, int]:
    return spec.channels, spec.height, spec.width


def numbers(data: Any) -> np.ndarray[Any, Any] | None:
    """`data` (nested lists) as one rectangular array of numbers, or None when it is not.
    numpy reads nested lists several times faster than `torch.tensor`; its own leniency
    (numeric strings, objects) is refused by the dtype check."""
    try:
        array = np.array(data)
    except (TypeError, ValueError, OverflowError):
        return None
    return array if array.dtype.kind in _NUMERIC else None


_NUMERIC = frozenset("biuf")


def json_to_inputs(inputs: Sequence[Any], spec: InputSpec) -> Tensor:
    """`inputs`: a list of (C, H, W) nested number lists, already normalised for the model."""
    batch = numbers(inputs)
    if batch is not None and batch.ndim == 4 and batch.shape[1:] == _expected(spec):
        tensor = torch.from_numpy(batch.astype(np.float32))  # (N, C, H, W)
        if bool(torch.isfinite(tensor).all()):
            return tensor
    return _one_by_one(inputs, spec)  # the slow path, naming each unusable input


def _one_by_one(inputs: Sequence[Any], spec: InputSpec) -> Tensor:
    tensors, errors = [], []
    for i, item in enumerate(inputs):
        array = numbers(item)
        if array is None:
            errors.append({"input": i, "problem": "not a rectangular array of numbers"})
            continue
        tensor = torch.from_numpy(array.astype(np.float32))
        if tuple(tensor.shape) != _expected(spec):
            errors.append(
                {
                    "input": i,
                    "problem": f"shape {tuple(tensor.shape)}, expected {_expected(spec)} (C, H, W)",
                }
            )
        elif not bool(torch.isfinite(tensor).all()):
            errors.append({"input": i, "problem": "contains NaN or infinite values"})
        else:
            tensors.append(tensor)
    if errors:
        raise InputError(errors)
    if not tensors:
        raise InputError([{"input": 0, "problem": "no inputs given"}])
    return torch.stack(tensors)  # (N, C, H, W)


def _check_total(images: Sequence[tuple[str, bytes]], max_total: int) -> None:
    """413 when the images' headers add up to more than `max_total` pixels (decoding the
    images is the costly part: it is refused before any starts)."""
    total = 0
    for _, data in images:
        with contextlib.suppress(ImageError):  # an unreadable image is named later
            total += image_pixels(data)
    if total > max_total:
        raise PayloadTooLarge(
            f"the images hold {total} pixels together, over the limit of {max_total} per request"
        )


def images_to_inputs(
    images: Sequence[tuple[str, bytes]], spec: InputSpec, max_pixels: int, max_total: int
) -> Tensor:
    """Encoded images (name, bytes): decoded by `mpt.data.decode_image`, converted and resized
    to the spec, normalised; at most `max_total` pixels in all."""
    _check_total(images, max_total)
    decoded, errors = [], []
    size = (spec.height, spec.width)
    for i, (name, data) in enumerate(images):
        try:
            decoded.append(
                decode_image(data, channels=spec.channels, size=size, max_pixels=max_pixels)
            )
        except ImageError as exc:
            errors.append({"input": i, "file": name, "problem": str(exc)})
    if errors:
        raise InputError(errors)
    if not decoded:
        raise InputError([{"input": 0, "problem": "no images given"}])
    return preprocess(torch.stack(decoded), spec)


def predictions(logits: Tensor, labels: Sequence[str], top_k: int) -> list[dict[str, Any]]:
    """Per row: the argmax label, its index and softmax score, and the `top_k` best."""
    probabilities = logits.softmax(dim=1)  # (N, C)
    k = min(top_k, probabilities.shape[1])
    scores, indices = probabilities.topk(k, dim=1)
    out = []
    for row_scores, row_indices in zip(scores.tolist(), indices.tolist(), strict=True):
        top = [
            {"label": labels[j], "index": j, "score": s}
            for s, j in zip(row_scores, row_indices, strict=True)
        ]
        out.append({**top[0], "top_k": top})
    return out
