"""Losses against hand-computed cases and the equivalences the method defines."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mpt import losses
from mpt.errors import ShapeError


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=gen)
    ref = torch.randn(6, 5, generator=gen)
    targets = torch.tensor([0, 1, 2, 3, 4, 0])
    return logits, ref, targets


def test_margin_ce_bias_zero_is_cross_entropy(batch) -> None:
    logits, _, targets = batch
    got = losses.margin_calibrated_cross_entropy(logits, targets, num_old=3, bias=0.0)
    assert torch.allclose(got, F.cross_entropy(logits, targets))


def test_margin_ce_hand_case() -> None:
    logits = torch.tensor([[1.0, 0.0, 0.0]])  # classes 0,1 old; 2 new
    got = losses.margin_calibrated_cross_entropy(logits, torch.tensor([0]), num_old=2, bias=2.0)
    expected = -math.log(math.e / (math.e + 1 + math.e**2))
    assert got.item() == pytest.approx(expected)


def test_margin_ce_shifts_only_new_columns(batch) -> None:
    logits, _, targets = batch
    shifted = logits.clone()
    shifted[:, 3:] += 1.5
    got = losses.margin_calibrated_cross_entropy(logits, targets, num_old=3, bias=1.5)
    assert torch.allclose(got, F.cross_entropy(shifted, targets))


def test_margin_ce_does_not_change_logits_in_place(batch) -> None:
    logits, _, targets = batch
    before = logits.clone()
    losses.margin_calibrated_cross_entropy(logits, targets, num_old=3, bias=4.0)
    assert torch.equal(logits, before)


def test_focal_kl_hand_case() -> None:
    logits = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    ref = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])  # ref probs (0.75, 0.25), (0.5, 0.5)
    targets = torch.tensor([0, 1])  # ref right on sample 0 only (argmax of a tie is 0)
    got = losses.focal_distillation_kl(logits, ref, targets, alpha=1.0, beta=5.0, tau=1.0)
    kl0 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert got.item() == pytest.approx((6.0 * kl0 + 1.0 * 0.0) / 2)


def test_focal_kl_beta_zero_is_plain_distillation(batch) -> None:
    logits, ref, targets = batch
    got = losses.focal_distillation_kl(logits, ref, targets, alpha=1.0, beta=0.0, tau=2.0)
    plain = F.kl_div(
        F.log_softmax(logits / 2, 1),
        F.log_softmax(ref / 2, 1),
        log_target=True,
        reduction="batchmean",
    )
    assert torch.allclose(got, plain, atol=1e-6)


def test_focal_kl_has_no_tau_squared_factor(batch) -> None:
    logits, ref, targets = batch
    tau = 5.0
    got = losses.focal_distillation_kl(logits, ref, targets, alpha=1.0, beta=0.0, tau=tau)
    p = F.softmax(ref / tau, 1)
    kl = (p * (p.log() - F.log_softmax(logits / tau, 1))).sum(1).mean()
    assert torch.allclose(got, kl, atol=1e-6)


def test_focal_kl_zero_when_logits_match(batch) -> None:
    _, ref, targets = batch
    assert losses.focal_distillation_kl(ref.clone(), ref, targets).item() == pytest.approx(
        0, abs=1e-6
    )


def test_focal_lm_hand_case() -> None:
    logits = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    ref = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    targets = torch.tensor([1, 1])  # ref right on sample 0 (argmax 1), wrong on sample 1
    got = losses.focal_distillation_lm(logits, ref, targets, alpha=1.0, beta=5.0)
    sample0 = (1 + 4) / 2 / 2  # mean over logits of squared diffs, halved
    sample1 = (4 + 0) / 2 / 2
    assert got.item() == pytest.approx((6 * sample0 + 1 * sample1) / 2)


def test_logit_matching_hand_case() -> None:
    got = losses.logit_matching(torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]]))
    assert got.item() == pytest.approx(1.0)


def test_logit_matching_mask_counts_only_masked() -> None:
    logits, ref = torch.tensor([[2.0, 10.0]]), torch.tensor([[0.0, 0.0]])
    mask = torch.tensor([[True, False]])
    assert losses.logit_matching(logits, ref, mask).item() == pytest.approx(2.0)


def test_topk_mask_marks_largest() -> None:
    mask = losses.topk_mask(torch.tensor([[0.1, 3.0, 2.0, -1.0]]), 2)
    assert mask.tolist() == [[False, True, True, False]]


def test_distillation_gradients_do_not_reach_reference(batch) -> None:
    logits, ref, targets = batch
    ref = ref.clone().requires_grad_(True)
    logits = logits.clone().requires_grad_(True)
    losses.focal_distillation_kl(logits, ref, targets).backward()
    assert ref.grad is None and logits.grad is not None


@pytest.mark.parametrize("fn", [losses.focal_distillation_kl, losses.focal_distillation_lm])
def test_distillation_shape_mismatch_names_both_shapes(fn, batch) -> None:
    logits, ref, targets = batch
    with pytest.raises(ShapeError, match=r"\(6, 5\).*\(6, 3\)"):
        fn(logits, ref[:, :3], targets)


def test_margin_ce_rejects_bad_num_old(batch) -> None:
    logits, _, targets = batch
    with pytest.raises(ShapeError, match="num_old"):
        losses.margin_calibrated_cross_entropy(logits, targets, num_old=0, bias=1.0)


def test_margin_ce_rejects_negative_bias(batch) -> None:
    logits, _, targets = batch
    with pytest.raises(ShapeError, match="bias"):
        losses.margin_calibrated_cross_entropy(logits, targets, num_old=2, bias=-1.0)


def test_losses_reject_targets_of_wrong_length(batch) -> None:
    logits, ref, targets = batch
    with pytest.raises(ShapeError, match="targets"):
        losses.focal_distillation_kl(logits, ref, targets[:3])


def test_modules_match_functions(batch) -> None:
    logits, ref, targets = batch
    assert torch.equal(
        losses.FocalDistillationKL(1, 2, 3)(logits, ref, targets),
        losses.focal_distillation_kl(logits, ref, targets, 1, 2, 3),
    )
    assert torch.equal(
        losses.FocalDistillationLM(1, 2)(logits, ref, targets),
        losses.focal_distillation_lm(logits, ref, targets, 1, 2),
    )
    assert torch.equal(
        losses.MarginCalibratedCrossEntropy(2, 1.0)(logits, targets),
        losses.margin_calibrated_cross_entropy(logits, targets, 2, 1.0),
    )
