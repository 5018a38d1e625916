"""Training whole models and upgrades: the workflow behind `mpt train` and `mpt upgrade`.

The worker and the benchmark use the same functions, so a job and a CLI run train alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from mpt import methods, models
from mpt.data import ImageDataset, Split, align_classes, with_validation
from mpt.errors import DatasetError, MPTError
from mpt.evaluate import predict_logits
from mpt.io import InputSpec, Manifest, ModelPackage
from mpt.metrics import FlipReport, flip_report, negative_flip_rate
from mpt.train import Hooks, Teacher, TrainConfig, TrainResult, fit

__all__ = [
    "Candidate",
    "UpgradeResult",
    "input_spec_for",
    "select_candidate",
    "train_package",
    "upgrade",
]


def input_spec_for(data: Split) -> InputSpec:
    """Per-channel mean and std of a training split, as an input spec."""
    x = data.x.float() / 255  # (N, C, H, W)
    mean = x.mean(dim=(0, 2, 3)).tolist()
    std = x.std(dim=(0, 2, 3)).clamp(min=1e-3).tolist()
    _, c, h, w = data.x.shape
    return InputSpec(int(c), int(h), int(w), tuple(mean), tuple(std))


def train_package(
    dataset: ImageDataset,
    *,
    arch: str,
    config: TrainConfig,
    method: methods.Method | None = None,
    num_old: int | None = None,
    spec: InputSpec | None = None,
    old: ModelPackage | None = None,
    reference: Teacher | None = None,
    hooks: Hooks | None = None,
    info: dict[str, Any] | None = None,
) -> tuple[ModelPackage, TrainResult]:
    """Train one model from scratch on all classes of `dataset` and package it."""
    method = method or methods.get("no_treatment")
    spec = spec or input_spec_for(dataset.splits["train"])
    torch.manual_seed(config.seed)
    model = models.create(arch, dataset.num_classes, in_channels=spec.channels)
    old_teacher = None if old is None else Teacher.single(old.model, old.manifest.input)
    result = fit(
        model,
        dataset.splits["train"],
        method=method,
        config=replace(config, augment=dataset.augment),
        spec=spec,
        num_old=num_old or dataset.num_classes,
        old_teacher=old_teacher if method.uses_old else None,
        ref_teacher=reference if method.reference != "none" else None,
        hooks=hooks,
        val=dataset.splits.get("val"),
    )
    meta = {
        "method": method.name,
        "hyperparameters": method.hyperparameters(),
        "train": config.to_dict(),
        "dataset": dataset.name,
        **(info or {}),
    }
    manifest = Manifest(arch, dataset.num_classes, list(dataset.classes), spec, info=meta)
    return ModelPackage(manifest, model.cpu().eval()), result


@dataclass
class Candidate:
    """One trained candidate and how it did on the validation split."""

    bias: float | None
    package: ModelPackage
    train: TrainResult
    val_nfr: float
    val_error: float


@dataclass
class UpgradeResult:
    """Every model an upgrade trained, the chosen one, and the test-split flip reports."""

    dataset: ImageDataset  # aligned: old classes first, with a validation split
    reference: ModelPackage
    candidates: list[Candidate]
    chosen: Candidate
    report: FlipReport  # chosen candidate vs old model, test split
    reference_report: FlipReport  # phi_new vs old model: what no treatment would ship
    extra: dict[str, Any] = field(default_factory=dict)


def select_candidate(candidates: Sequence[Candidate], max_nfr: float | None = None) -> Candidate:
    """The most accurate candidate within `max_nfr`, else the one with the lowest NFR."""
    passing = [c for c in candidates if max_nfr is not None and c.val_nfr <= max_nfr]
    if passing:
        return min(passing, key=lambda c: (c.val_error, c.val_nfr))
    return min(candidates, key=lambda c: (c.val_nfr, c.val_error))


def prepare_dataset(old: ModelPackage, dataset: ImageDataset, seed: int) -> ImageDataset:
    """Old classes first in the old model's order, new ones after, with a validation split."""
    aligned = align_classes(dataset, old.manifest.labels)
    spec = old.manifest.input
    if aligned.image_shape != (spec.channels, spec.height, spec.width):
        raise DatasetError(
            f"dataset images are {aligned.image_shape} (C, H, W) but the old model expects "
            f"{(spec.channels, spec.height, spec.width)}"
        )
    if aligned.num_classes <= len(old.manifest.labels):
        raise DatasetError("the dataset adds no new classes to the old model's labels")
    return with_validation(aligned, seed=seed)


def _candidate_methods(
    method: str, biases: Sequence[float] | None, overrides: dict[str, Any]
) -> list[tuple[float | None, methods.Method]]:
    base = methods.get(method, **overrides)
    if "bias" not in base.hyperparameters():
        if biases is not None:
            raise MPTError(f"method {method!r} has no bias; leave the bias out")
        return [(None, base)]
    if biases is None:
        return [(float(base.hyperparameters()["bias"]), base)]
    if not biases:
        raise MPTError("give at least one bias value")
    return [(float(b), methods.get(method, **{**overrides, "bias": float(b)})) for b in biases]


def _val_scores(
    package: ModelPackage, old: ModelPackage, val: Split, num_old: int
) -> tuple[float, float]:
    new_logits = predict_logits(package.model, val.x, package.manifest.input)
    old_logits = predict_logits(old.model, val.x, old.manifest.input)
    error = float((new_logits.argmax(dim=1) != val.y).float().mean())
    nfr = negative_flip_rate(old_logits, new_logits, val.y, num_old)
    return (0.0 if math.isnan(nfr) else nfr), error


def _test_report(package: ModelPackage, old: ModelPackage, dataset: ImageDataset) -> FlipReport:
    test = dataset.splits["test"]
    old_logits = predict_logits(old.model, test.x, old.manifest.input)
    new_logits = predict_logits(package.model, test.x, package.manifest.input)
    return flip_report(old_logits, new_logits, test.y, len(old.manifest.labels), dataset.classes)


def upgrade(
    old: ModelPackage,
    dataset: ImageDataset,
    *,
    method: str = "mpt_kl",
    biases: Sequence[float] | None = None,
    arch: str = "small_cnn",
    config: TrainConfig | None = None,
    overrides: dict[str, Any] | None = None,
    reference: ModelPackage | None = None,
    ensemble: Sequence[ModelPackage] = (),
    max_nfr: float | None = None,
    hooks_for: Callable[[str], Hooks] | None = None,
    checkpoint_dir: Path | None = None,
) -> UpgradeResult:
    """Upgrade `old` to the classes of `dataset` with `method`, one candidate per bias.

    Trains the reference `phi_new` unless given, each candidate, selects on the validation
    split (`select_candidate`) and reports the chosen one and the reference on the test split.
    `biases=None` uses the method's default bias. `hooks_for(stage)` gives the hooks of each
    training run ("reference", "candidate:<bias>"); with `checkpoint_dir` every run
    checkpoints each epoch to `<stage>.pt` there and resumes from it.
    """
    config = config or TrainConfig()
    staged = _stage_configs(config, checkpoint_dir)
    data = prepare_dataset(old, dataset, config.seed)
    num_old, spec = len(old.manifest.labels), old.manifest.input
    hooks = hooks_for or (lambda stage: Hooks())
    if reference is None:
        reference, _ = train_package(
            data,
            arch=arch,
            config=staged("reference"),
            spec=spec,
            hooks=hooks("reference"),
            info={"role": "reference"},
        )
    _check_reference(reference, data)
    teacher = _reference_teacher(
        methods.get(method, **(overrides or {})), reference, ensemble, data, arch, staged
    )
    candidates = []
    for bias, meth in _candidate_methods(method, biases, overrides or {}):
        package, result = train_package(
            data,
            arch=arch,
            config=staged(f"candidate-{bias}"),
            method=meth,
            num_old=num_old,
            spec=spec,
            old=old,
            reference=teacher,
            hooks=hooks(f"candidate:{bias}"),
            info={"role": "candidate"},
        )
        nfr, error = _val_scores(package, old, data.splits["val"], num_old)
        candidates.append(Candidate(bias, package, result, nfr, error))
    chosen = select_candidate(candidates, max_nfr)
    return UpgradeResult(
        data,
        reference,
        candidates,
        chosen,
        _test_report(chosen.package, old, data),
        _test_report(reference, old, data),
    )


def _check_reference(reference: ModelPackage, data: ImageDataset) -> None:
    if reference.manifest.labels != data.classes:
        raise DatasetError("the reference model's labels differ from the upgraded label list")


def _stage_configs(config: TrainConfig, folder: Path | None) -> Callable[[str], TrainConfig]:
    def staged(stage: str) -> TrainConfig:
        path = None if folder is None else folder / f"{stage}.pt"
        return replace(config, checkpoint_path=path)

    return staged


def _reference_teacher(
    method: methods.Method,
    reference: ModelPackage,
    ensemble: Sequence[ModelPackage],
    data: ImageDataset,
    arch: str,
    staged: Callable[[str], TrainConfig],
) -> Teacher:
    if method.reference != "ensemble":
        return Teacher.single(reference.model, reference.manifest.input)
    members = [reference, *ensemble]
    size = int(method.hyperparameters()["ensemble_size"])
    for offset in range(len(members), size):
        config = staged(f"ensemble-{offset}")
        member, _ = train_package(
            data,
            arch=arch,
            config=replace(config, seed=config.seed + offset),
            spec=reference.manifest.input,
            info={"role": "ensemble"},
        )
        members.append(member)
    return Teacher([m.model for m in members[:size]], reference.manifest.input)
