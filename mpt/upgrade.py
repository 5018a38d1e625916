"""Training whole models and upgrades: the workflow behind `mpt train` and `mpt upgrade`.

The worker and the benchmark use the same functions, so a job and a CLI run train alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from mpt import methods, models
from mpt.biases import BiasSweep, median_margin, takes_bias
from mpt.candidates import Candidate, UpgradeResult
from mpt.data import ImageDataset, Split, align_classes, with_validation
from mpt.errors import DatasetError, MPTError
from mpt.io import InputSpec, Manifest, ModelPackage
from mpt.lineage import Judge, golden_split
from mpt.selection import select_candidate
from mpt.train import Hooks, Teacher, TeacherCache, TrainConfig, TrainResult, fit

__all__ = [
    "Candidate",
    "UpgradeResult",
    "input_spec_for",
    "planned_runs",
    "prepare_dataset",
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
    teacher_cache: TeacherCache | None = None,
) -> tuple[ModelPackage, TrainResult]:
    """Train one model from scratch on all classes of `dataset` and package it.

    Runs that share a `teacher_cache` (same data, config and teachers) compute the teachers'
    logits of each step once between them."""
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
        teacher_cache=teacher_cache,
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


def prepare_dataset(
    old: ModelPackage, dataset: ImageDataset, seed: int, val_fraction: float = 0.1
) -> ImageDataset:
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
    return with_validation(aligned, fraction=val_fraction, seed=seed)


def old_margin(old: ModelPackage, data: ImageDataset) -> float:
    """The old model's median top-1 margin over the old-class training images."""
    train = data.splits["train"]
    images = train.x[train.y < len(old.manifest.labels)]
    return median_margin(old.model, images, old.manifest.input)


def _candidate_methods(
    method: str, sweep: BiasSweep | None, margin: float | None, overrides: dict[str, Any]
) -> list[tuple[float | None, float | None, methods.Method]]:
    """(absolute bias, relative bias, configured method) for each candidate to train."""
    if sweep is None:
        return [(None, None, methods.get(method, **overrides))]
    absolute = sweep.absolute(margin if sweep.relative and margin is not None else 1.0)
    relative = sweep.grid if sweep.relative else [None] * len(absolute)
    return [
        (b, r, methods.get(method, **{**overrides, "bias": b}))
        for b, r in zip(absolute, relative, strict=True)
    ]


def upgrade(
    old: ModelPackage,
    dataset: ImageDataset,
    *,
    method: str = "mpt_kl",
    sweep: BiasSweep | None = None,
    arch: str = "small_cnn",
    config: TrainConfig | None = None,
    overrides: dict[str, Any] | None = None,
    reference: ModelPackage | None = None,
    ensemble: Sequence[ModelPackage] = (),
    gate: Mapping[str, Any] | None = None,
    hooks_for: Callable[[str], Hooks] | None = None,
    on_phase: Callable[[str], None] | None = None,
    checkpoint_dir: Path | None = None,
    val_fraction: float = 0.1,
    baselines: Sequence[ModelPackage] = (),
    golden: ImageDataset | None = None,
) -> UpgradeResult:
    """Upgrade `old` to the classes of `dataset` with `method`, one candidate per bias.

    Trains the reference `phi_new` unless given (and the rest of an ELODI ensemble), each
    candidate, selects on the validation split with `mpt.selection.select_candidate` under
    the `gate` policy, and reports the chosen one and the reference on the test split.
    `sweep=None` trains the default relative sweep for methods with a bias. `hooks_for(stage)`
    gives the hooks of each training run ("reference", "ensemble:<i>", "candidate:<bias>");
    `on_phase` hears "selecting" and "evaluating" when those steps begin. With
    `checkpoint_dir` every run checkpoints each epoch to `<stage>.pt` there and resumes.
    `baselines` (earlier releases of the lineage) and a `golden` set add the evidence of the
    gate's `max_cumulative_nfr` and `max_golden_flips` rules, in selection and in the result.
    """
    config = config or TrainConfig()
    sweep = _sweep_for(method, sweep)
    if sweep is not None and "bias" in (overrides or {}):
        raise MPTError("the bias is swept: give it as bias values (--bias / --relative-bias)")
    staged = _stage_configs(config, checkpoint_dir)
    data = prepare_dataset(old, dataset, config.seed, val_fraction)
    num_old, spec = len(old.manifest.labels), old.manifest.input
    hooks = hooks_for or (lambda stage: Hooks())
    phase = on_phase or (lambda name: None)
    reference_train = None
    if reference is None:
        reference, reference_train = train_package(
            data, arch=arch, config=staged("reference"), spec=spec,
            hooks=hooks("reference"), info={"role": "reference"},
        )  # fmt: skip
    _check_reference(reference, data)
    meth = methods.get(method, **(overrides or {}))
    members = _ensemble(meth, reference, ensemble, data, arch, staged, hooks)
    teacher = Teacher([m.model for m in members], reference.manifest.input)
    margin = old_margin(old, data) if sweep is not None and sweep.relative else None
    golden_data = None if golden is None else golden_split(golden, data.classes)
    judge = Judge(old, data, baselines, golden_data)
    reference_val = judge.report(reference, "val")
    candidates, contexts = [], []
    planned = _candidate_methods(method, sweep, margin, overrides or {})
    # The candidates draw the same batches from the same teachers: run those once.
    cache = TeacherCache() if len(planned) > 1 else None
    for bias, relative, candidate_method in planned:
        package, result = train_package(
            data, arch=arch, config=staged(f"candidate-{bias}"), method=candidate_method,
            num_old=num_old, spec=spec, old=old, reference=teacher,
            hooks=hooks(f"candidate:{bias}"), info={"role": "candidate"}, teacher_cache=cache,
        )  # fmt: skip
        val_report, context = judge.assess(package, "val", reference_val)
        candidates.append(Candidate(bias, relative, package, result, val_report))
        contexts.append(context)
    phase("selecting")
    selection = select_candidate(candidates, reference_val, gate, contexts)
    phase("evaluating")
    chosen = candidates[selection.index].package
    reference_test = judge.report(reference, "test")
    report, evidence = judge.assess(chosen, "test", reference_test)
    return UpgradeResult(
        data, reference, candidates, selection, report, reference_test, reference_val, margin,
        reference_train, members if meth.reference == "ensemble" else [], evidence,
    )  # fmt: skip


def planned_runs(
    method: str,
    sweep: BiasSweep | None = None,
    *,
    reference_given: bool = False,
    overrides: dict[str, Any] | None = None,
) -> int:
    """How many training runs `upgrade` will make with these arguments (for progress)."""
    meth = methods.get(method, **(overrides or {}))
    resolved = _sweep_for(method, sweep)
    runs = len(resolved.grid) if resolved is not None else 1
    if meth.reference == "ensemble":
        runs += int(meth.hyperparameters()["ensemble_size"]) - 1
    return runs + (0 if reference_given else 1)


def _sweep_for(method: str, sweep: BiasSweep | None) -> BiasSweep | None:
    has_bias = takes_bias(method)
    if sweep is not None and not has_bias:
        raise MPTError(f"method {method!r} has no bias; leave the bias out")
    return (sweep or BiasSweep()) if has_bias else None


def _check_reference(reference: ModelPackage, data: ImageDataset) -> None:
    if reference.manifest.labels != data.classes:
        raise DatasetError("the reference model's labels differ from the upgraded label list")


def _stage_configs(config: TrainConfig, folder: Path | None) -> Callable[[str], TrainConfig]:
    def staged(stage: str) -> TrainConfig:
        path = None if folder is None else folder / f"{stage}.pt"
        return replace(config, checkpoint_path=path)

    return staged


def _ensemble(
    method: methods.Method,
    reference: ModelPackage,
    ensemble: Sequence[ModelPackage],
    data: ImageDataset,
    arch: str,
    staged: Callable[[str], TrainConfig],
    hooks: Callable[[str], Hooks],
) -> list[ModelPackage]:
    """The reference teacher's models: `phi_new` alone, or an ELODI ensemble completed with
    independently seeded plain retrains."""
    if method.reference != "ensemble":
        return [reference]
    members = [reference, *ensemble]
    size = int(method.hyperparameters()["ensemble_size"])
    for offset in range(len(members), size):
        config = staged(f"ensemble-{offset}")
        member, _ = train_package(
            data,
            arch=arch,
            config=replace(config, seed=config.seed + 1000 * offset),
            spec=reference.manifest.input,
            hooks=hooks(f"ensemble:{offset}"),
            info={"role": "ensemble"},
        )
        members.append(member)
    return members[:size]
