"""`mpt.upgrade`: label alignment, candidates per bias, selection and refusals."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import mpt.upgrade
from mpt.biases import BiasSweep
from mpt.data import ImageDataset, load_dataset, split_classes
from mpt.errors import DatasetError, MPTError
from mpt.io import ModelPackage
from mpt.train import Hooks, TeacherCache, TrainConfig
from mpt.upgrade import old_margin, prepare_dataset, train_package, upgrade

CONFIG = TrainConfig(epochs=1, batch_size=64, device="cpu")


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def old(digits: ImageDataset) -> ModelPackage:
    package, _ = train_package(split_classes(digits, [3, 1, 4]), arch="small_cnn", config=CONFIG)
    return package


def test_upgrade_extends_old_labels_in_old_order(old, digits) -> None:
    result = upgrade(old, digits, sweep=BiasSweep((0.0, 2.0), relative=False), config=CONFIG)
    labels = result.chosen.package.manifest.labels
    assert labels[:3] == ["3", "1", "4"] and sorted(labels) == sorted(digits.classes)
    assert [c.bias for c in result.candidates] == [0.0, 2.0]
    assert result.report.num_old == 3 and result.reference_report.num_old == 3


def test_upgrade_keeps_old_input_normalisation(old, digits) -> None:
    result = upgrade(old, digits, method="no_treatment", config=CONFIG)
    assert result.chosen.package.manifest.input == old.manifest.input


def test_upgrade_checkpoints_every_stage(old, digits, tmp_path) -> None:
    upgrade(
        old, digits, sweep=BiasSweep((1.0,), relative=False), config=CONFIG, checkpoint_dir=tmp_path
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["candidate-1.0.pt", "reference.pt"]


def test_upgrade_dataset_missing_old_classes_names_them(old, digits) -> None:
    partial = split_classes(digits, [0, 1, 2, 5, 6])
    with pytest.raises(DatasetError, match=r"'3'.*'4'|'4'.*'3'"):
        upgrade(old, partial, config=CONFIG)


def test_upgrade_dataset_without_new_classes_is_refused(old, digits) -> None:
    with pytest.raises(DatasetError, match="no new classes"):
        upgrade(old, split_classes(digits, [3, 1, 4]), config=CONFIG)


def test_upgrade_image_shape_mismatch_is_refused(old, digits) -> None:
    splits = {
        k: dataclasses.replace(v, x=torch.nn.functional.pad(v.x, (0, 1)))
        for k, v in digits.splits.items()
    }
    with pytest.raises(DatasetError, match="old model expects"):
        upgrade(old, dataclasses.replace(digits, splits=splits), config=CONFIG)


def test_upgrade_bias_for_method_without_bias_is_refused(old, digits) -> None:
    with pytest.raises(MPTError, match="has no bias"):
        upgrade(
            old, digits, method="pct_kl", sweep=BiasSweep((1.0,), relative=False), config=CONFIG
        )


def test_upgrade_default_sweep_is_relative_to_the_old_margin(old, digits) -> None:
    result = upgrade(old, digits, config=CONFIG)

    margin = old_margin(old, prepare_dataset(old, digits, CONFIG.seed))
    assert result.margin == pytest.approx(margin) and margin > 0
    assert [c.relative_bias for c in result.candidates] == [0.0, 0.125, 0.25, 0.5]
    assert [c.bias for c in result.candidates] == pytest.approx(
        [r * margin for r in (0.0, 0.125, 0.25, 0.5)], abs=1e-5
    )


def test_upgrade_selection_and_summary_agree(old, digits) -> None:
    result = upgrade(old, digits, sweep=BiasSweep((0.0, 4.0), relative=False), config=CONFIG)

    summary = result.summary()
    rows = summary["candidates"]
    assert [r["chosen"] for r in rows].count(True) == 1
    assert rows[result.selection.index]["chosen"]
    assert summary["selection"]["best_error"] == min(
        [summary["no_treatment_val"]["val_error"], *(r["val_error"] for r in rows)]
    )
    val_old = int((result.dataset.splits["val"].y < 3).sum())
    assert all(r["val_old_samples"] == val_old for r in rows)


def test_upgrade_ensemble_members_report_progress(old, digits) -> None:
    stages: list[str] = []

    def hooks_for(stage: str) -> Hooks:
        stages.append(stage)
        return Hooks()

    upgrade(old, digits, method="elodi", config=CONFIG, overrides={"ensemble_size": 2},
            hooks_for=hooks_for)  # fmt: skip

    assert stages == ["reference", "ensemble:1", "candidate:None"]


def test_upgrade_reports_its_phases(old, digits) -> None:
    phases: list[str] = []

    upgrade(old, digits, method="pct_kl", config=CONFIG, on_phase=phases.append)

    assert phases == ["selecting", "evaluating"]


def test_upgrade_refuses_a_bias_override_beside_a_sweep(old, digits) -> None:
    with pytest.raises(MPTError, match="the bias is swept"):
        upgrade(old, digits, config=CONFIG, overrides={"bias": 2.0})


def test_upgrade_runs_the_teachers_for_the_first_candidate_only(old, digits, monkeypatch) -> None:
    """The candidates of a sweep share one `TeacherCache`: every step of the second reads
    the teachers' logits that the first computed, and it trains as it would alone."""
    caches: list[TeacherCache] = []

    def recorded() -> TeacherCache:
        caches.append(TeacherCache())
        return caches[-1]

    monkeypatch.setattr(mpt.upgrade, "TeacherCache", recorded)
    sweep = BiasSweep((0.0, 2.0), relative=False)
    result = upgrade(old, digits, sweep=sweep, config=CONFIG)

    steps = math.ceil(len(result.dataset.splits["train"]) / CONFIG.batch_size)
    assert len(caches) == 1 and caches[0].hits == CONFIG.epochs * steps
    alone = upgrade(old, digits, sweep=BiasSweep((2.0,), relative=False), config=CONFIG)
    assert not caches[1:]  # one candidate: no cache
    shared = result.candidates[1].package.model.state_dict()
    own = alone.candidates[0].package.model.state_dict()
    assert all(torch.equal(shared[k], own[k]) for k in own)
