"""The model holder and the micro-batcher, without HTTP."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from mpt import models
from mpt.io import InputSpec
from service.errors import DeadlineExceeded, Overloaded
from service.serving.batcher import InputMismatch, MicroBatcher
from service.serving.holder import ModelHolder, NotLoaded, ServedModel, serving_device

SPEC = InputSpec(1, 8, 8, (0.5,), (0.25,))


def _served(version: int, num_classes: int = 3, seed: int = 0) -> ServedModel:
    torch.manual_seed(seed)
    model = models.create("mlp", num_classes, in_channels=1).eval()
    labels = tuple(f"c{i}" for i in range(num_classes))
    return ServedModel(release_id=version, version=version, labels=labels, spec=SPEC, model=model)


def test_holder_without_model_says_not_loaded() -> None:
    with pytest.raises(NotLoaded):
        ModelHolder().current()


def test_holder_swap_returns_previous_model() -> None:
    holder = ModelHolder()
    first, second = _served(1), _served(2, seed=1)
    assert holder.swap(first) is None
    assert holder.swap(second) is first and holder.current() is second


def test_holder_swap_refuses_model_with_wrong_class_count() -> None:
    holder = ModelHolder()
    holder.swap(_served(1))
    broken = ServedModel(2, 2, ("a", "b"), SPEC, models.create("mlp", 5, in_channels=1).eval())
    with pytest.raises(ValueError, match="expected"):
        holder.swap(broken)
    assert holder.current().version == 1


def test_batcher_coalesces_concurrent_requests() -> None:
    holder = ModelHolder()
    served = _served(1)
    holder.swap(served)
    inputs = [torch.randn(2, 1, 8, 8) for _ in range(8)]

    async def scenario() -> list:
        batcher = MicroBatcher(holder, max_size=64, max_wait=0.05)
        try:
            return await asyncio.gather(*(batcher.submit(x) for x in inputs))
        finally:
            await batcher.stop()

    results = asyncio.run(scenario())
    assert max(r.batch_size for r in results) > 2
    for x, result in zip(inputs, results, strict=True):
        assert torch.allclose(result.logits, served.logits(x), atol=1e-5)


def test_batcher_answers_every_request_during_swaps() -> None:
    holder = ModelHolder()
    candidates = {1: _served(1), 2: _served(2, seed=1)}
    holder.swap(candidates[1])

    async def scenario() -> list:
        batcher = MicroBatcher(holder, max_size=8, max_wait=0.001)

        async def swapper() -> None:
            for i in range(20):
                await asyncio.to_thread(holder.swap, candidates[2 - i % 2])

        try:
            x = torch.randn(1, 1, 8, 8)
            results = await asyncio.gather(swapper(), *(batcher.submit(x) for _ in range(200)))
            return [x, *results[1:]]
        finally:
            await batcher.stop()

    x, *results = asyncio.run(scenario())
    assert len(results) == 200
    for result in results:
        expected = candidates[result.served.version].logits(x)
        assert torch.allclose(result.logits, expected, atol=1e-5)


def test_batcher_fails_only_the_mismatched_request() -> None:
    holder = ModelHolder()
    holder.swap(_served(1))

    async def scenario() -> list:
        batcher = MicroBatcher(holder, max_wait=0.05)
        try:
            good = batcher.submit(torch.randn(1, 1, 8, 8))
            bad = batcher.submit(torch.randn(1, 3, 8, 8))
            return await asyncio.gather(good, bad, return_exceptions=True)
        finally:
            await batcher.stop()

    good, bad = asyncio.run(scenario())
    assert isinstance(bad, InputMismatch) and "(3, 8, 8)" in str(bad)
    assert good.logits.shape == (1, 3)


class _Gated(torch.nn.Module):
    """A model whose forward pass waits for `gate` and records each batch it was given."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.inner = models.create("mlp", num_classes, in_channels=1).eval()
        self.gate, self.entered = threading.Event(), threading.Event()
        self.batches: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) == 1 and not x.any():
            return self.inner(x)  # the warm-up's dummy input passes
        self.batches.append(x.clone())
        self.entered.set()
        assert self.gate.wait(timeout=60)
        return self.inner(x)


def _gated_holder() -> tuple[ModelHolder, _Gated]:
    model = _Gated()
    holder = ModelHolder()
    holder.swap(ServedModel(1, 1, ("a", "b", "c"), SPEC, model))
    return holder, model


def test_batcher_refuses_past_its_queue_limit() -> None:
    holder, model = _gated_holder()

    async def scenario() -> tuple[Overloaded, list]:
        batcher = MicroBatcher(holder, max_size=4, max_wait=0, max_queue=3)
        try:
            first = asyncio.ensure_future(batcher.submit(torch.ones(2, 1, 8, 8)))
            await asyncio.to_thread(model.entered.wait, 60)  # in its forward pass
            second = asyncio.ensure_future(batcher.submit(torch.ones(1, 1, 8, 8)))  # fits: 3
            while batcher.pending < 3:
                await asyncio.sleep(0)
            with pytest.raises(Overloaded) as refused:
                await batcher.submit(torch.ones(1, 1, 8, 8))  # 4 > 3
            model.gate.set()
            return refused.value, await asyncio.gather(first, second)
        finally:
            model.gate.set()
            await batcher.stop()

    refused, answered = asyncio.run(scenario())
    assert refused.status == 503 and refused.headers() == {"Retry-After": "1"}
    assert "3 inputs are waiting" in refused.detail
    assert [len(r.logits) for r in answered] == [2, 1]


def test_batcher_drops_an_expired_request_before_the_forward_pass() -> None:
    holder, model = _gated_holder()

    async def scenario() -> tuple[list, BaseException | None]:
        batcher = MicroBatcher(holder, max_size=4, max_wait=0)
        try:
            first = asyncio.ensure_future(batcher.submit(torch.full((1, 1, 8, 8), 1.0)))
            await asyncio.to_thread(model.entered.wait, 60)
            late = batcher.submit(torch.full((1, 1, 8, 8), 2.0), timeout=0.05)
            error = None
            try:
                await late
            except DeadlineExceeded as exc:
                error = exc
            model.gate.set()
            third = await batcher.submit(torch.full((1, 1, 8, 8), 3.0))
            return [await first, third], error
        finally:
            model.gate.set()
            await batcher.stop()

    answered, error = asyncio.run(scenario())
    assert isinstance(error, DeadlineExceeded) and error.status == 504
    assert len(answered) == 2
    seen = sorted(float(v) for batch in model.batches for v in batch[:, 0, 0, 0])
    assert seen == [1.0, 3.0]  # the expired request never reached the model


def test_batcher_refuses_a_request_whose_deadline_has_passed() -> None:
    holder, model = _gated_holder()
    model.gate.set()

    async def scenario() -> None:
        batcher = MicroBatcher(holder)
        try:
            await batcher.submit(torch.ones(1, 1, 8, 8), timeout=0)
        finally:
            await batcher.stop()

    with pytest.raises(DeadlineExceeded):
        asyncio.run(scenario())
    assert model.batches == []


def test_serving_device_auto_is_the_cpu_without_cuda(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert serving_device("auto") == torch.device("cpu")
    assert serving_device("cpu") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        serving_device("cuda")


def test_serving_device_auto_takes_cuda_when_there_is_one(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert serving_device("auto") == torch.device("cuda")
    assert serving_device("cpu") == torch.device("cpu")


def test_served_model_moves_the_batch_once_and_answers_on_the_cpu(monkeypatch) -> None:
    served = _served(1)
    moves: list[torch.device] = []
    to = torch.Tensor.to

    def recorded(self, *args, **kwargs):
        moves.append(args[0] if args else kwargs.get("device"))
        return to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", recorded)
    logits = served.logits(torch.randn(4, 1, 8, 8))
    assert moves == [served.device]
    assert logits.device.type == "cpu" and logits.dtype == torch.float32


def test_batcher_runs_a_lone_request_without_waiting_for_a_batch() -> None:
    holder = ModelHolder()
    holder.swap(_served(1))

    async def scenario() -> int:
        batcher = MicroBatcher(holder, max_size=64, max_wait=600)  # would wait 10 minutes
        try:
            result = await asyncio.wait_for(batcher.submit(torch.randn(1, 1, 8, 8)), 120)
            return result.batch_size
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()) == 1


def test_batcher_holds_a_batch_open_for_a_request_on_its_way() -> None:
    holder = ModelHolder()
    holder.swap(_served(1))

    async def scenario() -> list[int]:
        batcher = MicroBatcher(holder, max_size=64, max_wait=600)
        try:
            with batcher.arriving_request():  # A is reading its body
                first = asyncio.ensure_future(batcher.submit(torch.randn(1, 1, 8, 8)))  # B
                for _ in range(20):
                    await asyncio.sleep(0)
                assert not first.done()
                second = asyncio.ensure_future(batcher.submit(torch.randn(2, 1, 8, 8)))
                while batcher.pending < 3:  # A has submitted
                    await asyncio.sleep(0)
            results = await asyncio.wait_for(asyncio.gather(first, second), 120)
            return [r.batch_size for r in results]
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()) == [3, 3]
