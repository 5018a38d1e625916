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
from mpt.train import (
    EpochStats,
    Hooks,
    StepStats,
    Teacher,
    TeacherCache,
    TrainConfig,
    TrainingStopped,
    fit,
)
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


@pytest.fixture
def teachers() -> tuple[torch.nn.Module, torch.nn.Module]:
    """A frozen old model (2 classes) and reference (4 classes), the same for every run."""
    torch.manual_seed(0)
    return models.create("mlp", 2, in_channels=1), models.create("mlp", 4, in_channels=1)


def _mpt_run(
    data: Split,
    teachers: tuple[torch.nn.Module, torch.nn.Module],
    cache: TeacherCache | None,
    *,
    seed: int = 0,
    bias: float = 1.0,
) -> torch.nn.Module:
    old, ref = teachers
    config = TrainConfig(epochs=2, batch_size=16, seed=seed, augment="crop", device="cpu")
    torch.manual_seed(1)
    model = models.create("mlp", 4, in_channels=1)
    fit(
        model, data, method=methods.get("mpt_kl", bias=bias), spec=SPEC, num_old=2,
        config=config, old_teacher=Teacher.single(old, SPEC),
        ref_teacher=Teacher.single(ref, SPEC), teacher_cache=cache,
    )  # fmt: skip
    return model


def test_teacher_cache_gives_the_same_runs_with_one_teacher_pass(data, teachers) -> None:
    """Runs of one recipe (the candidates of a bias sweep) sharing a cache train exactly as
    without it; every step of the runs after the first reads the teachers' logits back."""
    cache = TeacherCache()
    first = _mpt_run(data, teachers, cache, bias=0.5)
    second = _mpt_run(data, teachers, cache, bias=2.0)
    assert cache.hits == 2 * 4  # epochs x batches of the second run
    assert cache.bytes == 2 * 64 * (2 + 4) * 4  # float32 logits of both teachers, 2 epochs
    assert _same_weights(first, _mpt_run(data, teachers, None, bias=0.5))
    assert _same_weights(second, _mpt_run(data, teachers, None, bias=2.0))


def test_teacher_cache_keeps_no_more_than_its_budget(data, teachers) -> None:
    cache = TeacherCache(max_bytes=3 * 16 * (2 + 4) * 4)  # three steps' logits
    _mpt_run(data, teachers, cache)
    again = _mpt_run(data, teachers, cache)
    assert cache.bytes == cache.max_bytes and cache.hits == 3
    assert _same_weights(again, _mpt_run(data, teachers, None))


def test_teacher_cache_refuses_a_run_that_draws_other_batches(data, teachers) -> None:
    cache = TeacherCache()
    _mpt_run(data, teachers, cache, seed=0)
    with pytest.raises(MPTError, match="one recipe"):
        _mpt_run(data, teachers, cache, seed=1)
