"""The method registry and each objective's composition from the losses."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from mpt import losses, methods
from mpt.errors import MPTError
from mpt.methods import LossInputs

NUM_OLD = 3


@pytest.fixture
def inputs() -> LossInputs:
    gen = torch.Generator().manual_seed(1)
    return LossInputs(
        logits=torch.randn(8, 6, generator=gen),
        targets=torch.tensor([0, 1, 2, 3, 4, 5, 0, 1]),
        num_old=NUM_OLD,
        old_logits=torch.randn(8, NUM_OLD, generator=gen),
        ref_logits=torch.randn(8, 6, generator=gen),
        epoch=3,
    )


def test_registry_has_every_design_method() -> None:
    assert set(methods.names()) == {
        "no_treatment",
        "pct_naive",
        "pct_kl",
        "pct_lm",
        "elodi",
        "elodi_topk",
        "mpt_kl",
        "mpt_lm",
        "mpt_nodistill",
        "mpt_kl_nobias",
        "mpt_lm_nobias",
    }


def test_get_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(KeyError, match="mpt_kl"):
        methods.get("mpt_xx")


def test_get_unknown_hyperparameter_is_refused() -> None:
    with pytest.raises(MPTError, match="no hyperparameter 'gamma'"):
        methods.get("mpt_kl", gamma=1.0)


def test_get_negative_bias_is_refused() -> None:
    with pytest.raises(MPTError, match="bias must be >= 0"):
        methods.get("mpt_kl", bias=-1)


def test_get_overrides_hyperparameters() -> None:
    method = methods.get("mpt_kl", bias=2.0, beta=3.0)
    assert method.hyperparameters()["bias"] == 2.0 and method.hyperparameters()["beta"] == 3.0


@pytest.mark.parametrize("name", methods.names())
def test_every_method_gives_a_finite_differentiable_loss(name, inputs) -> None:
    logits = inputs.logits.clone().requires_grad_(True)
    loss = methods.get(name).loss(dataclasses.replace(inputs, logits=logits))
    loss.backward()
    assert torch.isfinite(loss) and logits.grad is not None


def test_no_treatment_is_cross_entropy(inputs) -> None:
    got = methods.get("no_treatment").loss(inputs)
    assert torch.allclose(got, F.cross_entropy(inputs.logits, inputs.targets))


def test_mpt_kl_nobias_is_ce_plus_two_focal_terms(inputs) -> None:
    z, y = inputs.logits, inputs.targets
    expected = (
        F.cross_entropy(z, y)
        + losses.focal_distillation_kl(z[:, :NUM_OLD], inputs.old_logits, y, 1.0, 5.0, 5.0)
        + losses.focal_distillation_kl(z, inputs.ref_logits, y, 1.0, 5.0, 5.0)
    )
    assert torch.allclose(methods.get("mpt_kl_nobias").loss(inputs), expected)


def test_mpt_kl_adds_margin_to_new_classes_only_in_ce(inputs) -> None:
    z, y = inputs.logits, inputs.targets
    expected = (
        losses.margin_calibrated_cross_entropy(z, y, NUM_OLD, 4.0)
        + losses.focal_distillation_kl(z[:, :NUM_OLD], inputs.old_logits, y)
        + losses.focal_distillation_kl(z, inputs.ref_logits, y)
    )
    assert torch.allclose(methods.get("mpt_kl").loss(inputs), expected)


def test_mpt_lm_weights_terms_by_point_four(inputs) -> None:
    z, y = inputs.logits, inputs.targets
    expected = (
        losses.margin_calibrated_cross_entropy(z, y, NUM_OLD, 4.0)
        + 0.4 * losses.focal_distillation_lm(z[:, :NUM_OLD], inputs.old_logits, y)
        + 0.4 * losses.focal_distillation_lm(z, inputs.ref_logits, y)
    )
    assert torch.allclose(methods.get("mpt_lm").loss(inputs), expected)


def test_mpt_nodistill_is_margin_ce(inputs) -> None:
    expected = losses.margin_calibrated_cross_entropy(inputs.logits, inputs.targets, NUM_OLD, 4.0)
    assert torch.allclose(methods.get("mpt_nodistill").loss(inputs), expected)


def test_pct_naive_is_plain_distillation_from_old(inputs) -> None:
    z, y = inputs.logits, inputs.targets
    expected = F.cross_entropy(z, y) + losses.focal_distillation_kl(
        z[:, :NUM_OLD], inputs.old_logits, y, alpha=1.0, beta=0.0
    )
    assert torch.allclose(methods.get("pct_naive").loss(inputs), expected)


def test_elodi_is_ce_during_warmup(inputs) -> None:
    method = methods.get("elodi", warmup_epochs=5)
    assert torch.allclose(method.loss(inputs), F.cross_entropy(inputs.logits, inputs.targets))


def test_elodi_after_warmup_matches_both_references(inputs) -> None:
    z = inputs.logits
    expected = (
        F.cross_entropy(z, inputs.targets)
        + 0.6 * losses.logit_matching(z[:, :NUM_OLD], inputs.old_logits)
        + 0.4 * losses.logit_matching(z, inputs.ref_logits)
    )
    assert torch.allclose(methods.get("elodi").loss(inputs), expected)


def test_elodi_topk_masks_to_reference_topk(inputs) -> None:
    z, ref = inputs.logits, inputs.ref_logits
    method = methods.get("elodi_topk", topk=2)
    expected = (
        F.cross_entropy(z, inputs.targets)
        + 0.6
        * losses.logit_matching(
            z[:, :NUM_OLD], inputs.old_logits, losses.topk_mask(inputs.old_logits, 2)
        )
        + 0.4 * losses.logit_matching(z, ref, losses.topk_mask(ref, 2))
    )
    assert torch.allclose(method.loss(inputs), expected)


def test_method_without_its_teacher_says_what_is_missing(inputs) -> None:
    bare = LossInputs(inputs.logits, inputs.targets, NUM_OLD)
    with pytest.raises(MPTError, match="old-model"):
        methods.get("pct_kl").loss(bare)
