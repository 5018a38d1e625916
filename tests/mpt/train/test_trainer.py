"""The trainer: determinism, hooks, stop requests, checkpoints and resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mpt import methods, models
from mpt.data import Split
from mpt.errors import MPTError
from mpt.evaluate import predict_logits
from mpt.io import InputSpec
from mpt.metrics import negative_flip_rate
from mpt.train import EpochStats, Hooks, StepStats, Teacher, TrainConfig, TrainingStopped, fit
from mpt.train.augment import augment_batch

SPEC = InputSpec(1, 8, 8, (0.5,), (0.25,))


@pytest.fixture
def data() -> Split:
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(64) % 4
    x = (torch.rand(64, 1, 8, 8, generator=gen) * 60).to(torch.uint8)
    x[torch.arange(64), 0, y * 2, y * 2] = 255  # a class-dependent bright pixel: learnable
    return Split(x, y)


def _train(
    data: Split,
    *,
    epochs: int = 2,
    seed: int = 0,
    hooks: Hooks | None = None,
    checkpoint: Path | None = None,
    method: str = "no_treatment",
) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = models.create("mlp", 4, in_channels=1)
    config = TrainConfig(
        epochs=epochs,
        batch_size=16,
        seed=seed,
        augment="crop",
        device="cpu",
        checkpoint_path=checkpoint,
    )
    fit(model, data, method=methods.get(method), config=config, spec=SPEC, num_old=4, hooks=hooks)
    return model


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(
        torch.equal(p, q)
        for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


class Recorder(Hooks):
    def __init__(self, stop_after: int | None = None) -> None:
        self.steps: list[StepStats] = []
        self.epochs: list[EpochStats] = []
        self.stop_after = stop_after

    def on_step(self, stats: StepStats) -> None:
        self.steps.append(stats)

    def on_epoch_end(self, stats: EpochStats) -> None:
        self.epochs.append(stats)

    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.steps) >= self.stop_after


def test_fit_same_seed_gives_same_weights(data) -> None:
    assert _same_weights(_train(data, seed=3), _train(data, seed=3))


def test_fit_other_seed_gives_other_weights(data) -> None:
    assert not _same_weights(_train(data, seed=3), _train(data, seed=4))


def test_fit_reports_every_step_and_epoch(data) -> None:
    recorder = Recorder()
    _train(data, epochs=2, hooks=recorder)
    assert len(recorder.steps) == 2 * 4 and [e.epoch for e in recorder.epochs] == [0, 1]
    assert recorder.steps[-1].fraction == pytest.approx(1.0)


def test_fit_learns_a_learnable_task(data) -> None:
    recorder = Recorder()
    _train(data, epochs=15, hooks=recorder)
    assert recorder.epochs[-1].train_accuracy > 0.9


def test_fit_stops_between_steps_on_request(data) -> None:
    with pytest.raises(TrainingStopped) as stopped:
        _train(data, epochs=3, hooks=Recorder(stop_after=5))
    assert (stopped.value.epoch, stopped.value.step) == (1, 1)


def test_fit_resumes_from_checkpoint_with_identical_result(data, tmp_path) -> None:
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(TrainingStopped):
        _train(data, epochs=3, checkpoint=checkpoint, hooks=Recorder(stop_after=9))
    recorder = Recorder()
    resumed = _train(data, epochs=3, checkpoint=checkpoint, hooks=recorder)
    assert [e.epoch for e in recorder.epochs] == [2]  # epochs 0 and 1 were not redone
    assert _same_weights(resumed, _train(data, epochs=3))


def test_fit_without_required_teacher_is_refused(data) -> None:
    with pytest.raises(MPTError, match="needs the old model"):
        _train(data, method="mpt_kl")


def test_fit_with_teachers_trains_mpt(data) -> None:
    """MPT learns with both teachers, reports the NFR the metric gives, and the teachers
    change what it learns compared with plain cross-entropy from the same seed."""
    torch.manual_seed(0)
    old = models.create("mlp", 2, in_channels=1)
    ref = models.create("mlp", 4, in_channels=1)
    config = TrainConfig(epochs=8, batch_size=16, augment="none", device="cpu")
    torch.manual_seed(1)
    model = models.create("mlp", 4, in_channels=1)
    result = fit(
        model, data, method=methods.get("mpt_kl"), spec=SPEC, num_old=2, config=config,
        old_teacher=Teacher.single(old, SPEC), ref_teacher=Teacher.single(ref, SPEC), val=data,
    )  # fmt: skip
    torch.manual_seed(1)
    plain = models.create("mlp", 4, in_channels=1)
    fit(plain, data, method=methods.get("no_treatment"), spec=SPEC, num_old=2, config=config)

    last = result.epochs[-1].val
    old_logits, new_logits = predict_logits(old, data.x, SPEC), predict_logits(model, data.x, SPEC)
    assert last["nfr"] == pytest.approx(negative_flip_rate(old_logits, new_logits, data.y, 2))
    assert last["error"] < result.epochs[0].val["error"]
    assert not _same_weights(model, plain)


def test_augment_crop_keeps_shape_and_dtype(data) -> None:
    out = augment_batch(data.x, "crop_flip", torch.Generator().manual_seed(0))
    assert out.shape == data.x.shape and out.dtype == torch.uint8


def test_augment_crop_moves_content(data) -> None:
    out = augment_batch(data.x, "crop", torch.Generator().manual_seed(0))
    assert not torch.equal(out, data.x)


def test_augment_none_is_identity(data) -> None:
    assert augment_batch(data.x, "none", torch.Generator()) is data.x


def test_train_config_rejects_zero_epochs() -> None:
    with pytest.raises(MPTError, match="epochs"):
        TrainConfig(epochs=0)
