"""`mpt.upgrade`: label alignment, candidates per bias, selection and refusals."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mpt.data import ImageDataset, load_dataset, split_classes
from mpt.errors import DatasetError, MPTError
from mpt.io import ModelPackage
from mpt.train import TrainConfig
from mpt.upgrade import Candidate, select_candidate, train_package, upgrade

CONFIG = TrainConfig(epochs=1, batch_size=64, device="cpu")


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def old(digits: ImageDataset) -> ModelPackage:
    package, _ = train_package(split_classes(digits, [3, 1, 4]), arch="small_cnn", config=CONFIG)
    return package


def _candidate(nfr: float, error: float) -> Candidate:
    return Candidate(bias=None, package=None, train=None, val_nfr=nfr, val_error=error)  # type: ignore[arg-type]


def test_select_candidate_prefers_accuracy_within_nfr_limit() -> None:
    a, b, c = _candidate(0.01, 0.30), _candidate(0.03, 0.20), _candidate(0.08, 0.10)
    assert select_candidate([a, b, c], max_nfr=0.05) is b


def test_select_candidate_falls_back_to_lowest_nfr() -> None:
    a, b = _candidate(0.02, 0.30), _candidate(0.08, 0.10)
    assert select_candidate([a, b], max_nfr=0.01) is a
    assert select_candidate([a, b]) is a


def test_upgrade_extends_old_labels_in_old_order(old, digits) -> None:
    result = upgrade(old, digits, biases=[0.0, 2.0], config=CONFIG)
    labels = result.chosen.package.manifest.labels
    assert labels[:3] == ["3", "1", "4"] and sorted(labels) == sorted(digits.classes)
    assert [c.bias for c in result.candidates] == [0.0, 2.0]
    assert result.report.num_old == 3 and result.reference_report.num_old == 3


def test_upgrade_keeps_old_input_normalisation(old, digits) -> None:
    result = upgrade(old, digits, method="no_treatment", config=CONFIG)
    assert result.chosen.package.manifest.input == old.manifest.input


def test_upgrade_checkpoints_every_stage(old, digits, tmp_path) -> None:
    upgrade(old, digits, biases=[1.0], config=CONFIG, checkpoint_dir=tmp_path)
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
        upgrade(old, digits, method="pct_kl", biases=[1.0], config=CONFIG)
