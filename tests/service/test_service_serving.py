"""The model holder and the micro-batcher, without HTTP."""

from __future__ import annotations

import asyncio

import pytest
import torch

from mpt import models
from mpt.io import InputSpec
from service.serving.batcher import InputMismatch, MicroBatcher
from service.serving.holder import ModelHolder, NotLoaded, ServedModel

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
