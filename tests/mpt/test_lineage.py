"""Flips across a lineage and on a golden set: three chained upgrades (5 -> 7 -> 9 -> 10 digit
classes), their cumulative and golden reports checked against a direct computation."""

from __future__ import annotations

import pytest
import torch

from mpt.data import ImageDataset, load_dataset, split_classes
from mpt.errors import DatasetError
from mpt.evaluate import predict_logits
from mpt.gate import evaluate_gate
from mpt.io import ModelPackage
from mpt.lineage import check_baselines, golden_split
from mpt.train import TrainConfig
from mpt.upgrade import UpgradeResult, train_package, upgrade

CONFIG = TrainConfig(epochs=1, batch_size=64, device="cpu")


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def chain(digits: ImageDataset) -> list[tuple[ModelPackage, UpgradeResult | None]]:
    """v1 on 0..4, then upgrades to 0..6, 0..8 and 0..9; each against every release before
    it as a baseline, the last one also on a golden set (v1's classes, from the test split)."""
    torch.manual_seed(0)
    v1, _ = train_package(split_classes(digits, range(5)), arch="mlp", config=CONFIG)
    releases: list[tuple[ModelPackage, UpgradeResult | None]] = [(v1, None)]
    for top, golden in ((7, None), (9, None), (10, _golden(digits))):
        old = releases[-1][0]
        result = upgrade(
            old, split_classes(digits, range(top)), method="no_treatment", arch="mlp",
            config=CONFIG, baselines=[package for package, _ in releases], golden=golden,
        )  # fmt: skip
        releases.append((result.chosen.package, result))
    return releases


def _golden(digits: ImageDataset) -> ImageDataset:
    return split_classes(digits, range(5))


def _direct_nfr(
    baseline: ModelPackage, new: ModelPackage, x: torch.Tensor, y: torch.Tensor
) -> tuple[int, int]:
    """(flips, samples) on the baseline's classes, from the two models' predictions."""
    known = y < len(baseline.manifest.labels)
    old = predict_logits(baseline.model, x, baseline.manifest.input).argmax(1)
    now = predict_logits(new.model, x, new.manifest.input).argmax(1)
    flips = known & (old == y) & (now != y)
    return int(flips.sum()), int(known.sum())


def test_cumulative_reports_match_a_direct_computation(chain) -> None:
    for step in (1, 2, 3):
        package, result = chain[step]
        assert result is not None
        test = result.dataset.splits["test"]
        assert len(result.cumulative_reports) == step  # one per earlier release
        for (baseline, _), report in zip(chain[:step], result.cumulative_reports, strict=True):
            flips, n = _direct_nfr(baseline, package, test.x, test.y)
            assert (report.nfr.old.count, report.nfr.old.n) == (flips, n)
            assert report.num_old == len(baseline.manifest.labels)


def test_the_last_step_against_its_parent_is_the_ordinary_report(chain) -> None:
    _, result = chain[3]
    assert result is not None
    assert result.cumulative_reports[-1].nfr == result.report.nfr


def test_golden_report_counts_the_golden_flips(chain, digits) -> None:
    (parent, _), (package, result) = chain[2], chain[3]
    assert result is not None and result.golden_report is not None
    golden = _golden(digits).splits["test"]
    flips, _ = _direct_nfr(parent, package, golden.x, golden.y)
    assert result.golden_report.nfr.all.count == flips
    assert result.golden_report.nfr.all.n == len(golden.y)
    verdict = evaluate_gate({"max_golden_flips": flips}, result.report, result.evidence)
    assert verdict.passed and verdict.rules[0].value == flips


def test_a_baseline_from_another_lineage_is_refused(chain, digits) -> None:
    v1, _ = chain[0]
    with pytest.raises(DatasetError, match="not the first labels"):
        check_baselines([v1], ["9", "8", "7", "6", "5", "4"])


def test_golden_classes_must_be_known(digits) -> None:
    golden = split_classes(digits, [0, 9])
    with pytest.raises(DatasetError, match=r"does not know: \['9'\]"):
        golden_split(golden, [str(i) for i in range(5)])
