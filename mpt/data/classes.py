"""Class subsets, alignment to a deployed model's labels, and validation hold-outs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch

from mpt.data.dataset import ImageDataset, Split
from mpt.errors import DatasetError

__all__ = ["align_classes", "parse_class_selection", "split_classes", "with_validation"]


def _relabel(dataset: ImageDataset, order: list[int]) -> ImageDataset:
    """Keep the classes `order` names; class `order[k]` becomes label `k`."""
    lookup = torch.full((dataset.num_classes,), -1, dtype=torch.int64)
    lookup[torch.tensor(order, dtype=torch.int64)] = torch.arange(len(order))
    splits: dict[str, Split] = {}
    for name, split in dataset.splits.items():
        labels = lookup[split.y]
        keep = labels >= 0
        if not bool(keep.any()):
            raise DatasetError(
                f"dataset {dataset.name!r}: split {name!r} has no samples of the selected classes"
            )
        splits[name] = Split(split.x[keep], labels[keep])
    classes = [dataset.classes[i] for i in order]
    return ImageDataset(dataset.name, classes, splits, dataset.augment, dict(dataset.meta))


def split_classes(dataset: ImageDataset, classes: Sequence[int]) -> ImageDataset:
    """Only the samples of `classes` (indices), relabelled 0..k-1 in the given order.

    Class names travel with their samples. Raises `DatasetError` for an empty selection,
    an index outside the dataset's classes, or a repeated index.
    """
    order = list(classes)
    if not order:
        raise DatasetError("class selection is empty")
    for index in order:
        if isinstance(index, bool) or not isinstance(index, int):
            raise DatasetError(f"class indices must be integers, got {index!r}")
        if not 0 <= index < dataset.num_classes:
            raise DatasetError(
                f"class index {index} is outside 0..{dataset.num_classes - 1} "
                f"(dataset {dataset.name!r} has {dataset.num_classes} classes)"
            )
    repeated = sorted(i for i, n in Counter(order).items() if n > 1)
    if repeated:
        raise DatasetError(f"class selection repeats index(es) {repeated}")
    return _relabel(dataset, order)


def align_classes(dataset: ImageDataset, old_labels: Sequence[str]) -> ImageDataset:
    """Reorder classes so `old_labels` come first, in that order, then the rest.

    The remaining (new) classes keep the dataset's order, so label `k < len(old_labels)`
    means the old model's class `k`. Raises `DatasetError` listing every old label the
    dataset lacks.
    """
    old = list(old_labels)
    repeated = sorted(label for label, n in Counter(old).items() if n > 1)
    if repeated:
        raise DatasetError(f"old labels repeat {repeated}")
    position = {name: i for i, name in enumerate(dataset.classes)}
    missing = [label for label in old if label not in position]
    if missing:
        raise DatasetError(
            f"dataset {dataset.name!r} lacks {len(missing)} of the old model's labels: {missing}"
        )
    first = [position[label] for label in old]
    taken = set(first)
    rest = [i for i in range(dataset.num_classes) if i not in taken]
    return _relabel(dataset, first + rest)


def with_validation(dataset: ImageDataset, fraction: float = 0.1, seed: int = 0) -> ImageDataset:
    """Hold out a stratified, seeded `fraction` of train as `val` (unchanged if `val` exists).

    Each class with at least two train samples gives `round(fraction * n)` of them (at
    least one, never all); the rest stay in train in their original order.
    """
    if "val" in dataset.splits:
        return dataset
    if not 0.0 < fraction < 1.0:
        raise DatasetError(f"validation fraction must be in (0, 1), got {fraction}")
    train = dataset.splits["train"]
    generator = torch.Generator().manual_seed(seed)
    held = torch.zeros(len(train), dtype=torch.bool)
    for label in range(dataset.num_classes):
        members = (train.y == label).nonzero().flatten()
        if len(members) < 2:
            continue
        count = min(max(1, round(fraction * len(members))), len(members) - 1)
        held[members[torch.randperm(len(members), generator=generator)[:count]]] = True
    if not bool(held.any()):
        raise DatasetError(
            f"dataset {dataset.name!r}: too few train samples per class "
            "to hold out a validation split"
        )
    splits = {**dataset.splits, "train": train.subset(~held), "val": train.subset(held)}
    meta = {**dataset.meta, "validation": {"fraction": fraction, "seed": seed}}
    return ImageDataset(dataset.name, list(dataset.classes), splits, dataset.augment, meta)


def _parse_index(text: str, part: str, num_classes: int, *, end: bool = False) -> int:
    if not text.strip().isdigit():
        raise DatasetError(f"class selection {part!r}: {text.strip()!r} is not a class index")
    value = int(text)
    upper = num_classes if end else num_classes - 1
    if value > upper:
        raise DatasetError(
            f"class selection {part!r}: {value} is outside 0..{upper} ({num_classes} classes)"
        )
    return value


def parse_class_selection(text: str, num_classes: int) -> list[int]:
    """Class indices from `"start:stop"` (stop excluded; either end may be left out),
    `"0,3,7"`, or a comma list mixing both (`"0:5,9"`), in the order written.

    Raises `DatasetError` for empty text, non-integers, indices outside `0..num_classes-1`,
    empty ranges and repeats.
    """
    if not text.strip():
        raise DatasetError("class selection is empty; expected e.g. '0:50' or '0,3,7'")
    chosen: list[int] = []
    for raw_part in text.split(","):
        part = raw_part.strip()
        if part.count(":") > 1:
            raise DatasetError(f"class selection {part!r}: expected 'start:stop'")
        if ":" in part:
            start_text, stop_text = part.split(":")
            start = _parse_index(start_text or "0", part, num_classes)
            stop = _parse_index(stop_text or str(num_classes), part, num_classes, end=True)
            if stop <= start:
                raise DatasetError(f"class selection {part!r}: empty range")
            chosen.extend(range(start, stop))
        else:
            chosen.append(_parse_index(part, part, num_classes))
    repeated = sorted(i for i, n in Counter(chosen).items() if n > 1)
    if repeated:
        raise DatasetError(f"class selection {text!r} repeats class index(es) {repeated}")
    return chosen
