"""The serving path on CUDA, once, on a GPU machine: `MPT_SERVING_DEVICE` resolves to the GPU,
the micro-batcher's batches run there, each batch is copied to the GPU once and its logits
back once, and the answers match the CPU's.

    python -m bench.gpu_serving

No HTTP (the service's other dependencies need not be installed there beyond FastAPI,
pydantic-settings and SQLAlchemy); prints what it checked and the forward-pass rates.
"""

from __future__ import annotations

import asyncio
import time

import torch

from bench.servers import CIFAR_SPEC
from mpt import models
from service.serving.batcher import MicroBatcher
from service.serving.holder import ModelHolder, ServedModel, serving_device


def _served(arch: str, device: torch.device) -> ServedModel:
    torch.manual_seed(0)
    model = models.create(arch, 10, in_channels=3).eval().to(device)
    labels = tuple(f"class-{i}" for i in range(10))
    return ServedModel(1, 1, labels, CIFAR_SPEC, model, device)


def _copies(served: ServedModel, inputs: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
    """The logits of one batch, and the devices `Tensor.to` was asked for meanwhile."""
    moves: list[str] = []
    to = torch.Tensor.to

    def recorded(self: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        moves.append(str(args[0] if args else kwargs.get("device")))
        return to(self, *args, **kwargs)  # type: ignore[arg-type]

    torch.Tensor.to = recorded  # type: ignore[method-assign]
    try:
        return served.logits(inputs), moves
    finally:
        torch.Tensor.to = to  # type: ignore[method-assign]


async def _batched(served: ServedModel, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    holder = ModelHolder()
    holder.swap(served)
    batcher = MicroBatcher(holder, max_size=64, max_wait=0.005)
    try:
        results = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        print(f"  batch sizes formed: {sorted({r.batch_size for r in results})}")
        return [r.logits for r in results]
    finally:
        await batcher.stop()


def _rate(served: ServedModel, batch: int, seconds: float = 2.0) -> float:
    inputs = torch.randn(batch, 3, 32, 32)
    for _ in range(5):
        served.logits(inputs)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        served.logits(inputs)
        runs += 1
    return runs * batch / (time.perf_counter() - start)


def main() -> None:
    device = serving_device("auto")
    print(f"auto -> {device}; cuda -> {serving_device('cuda')}")
    assert device.type == "cuda", "no CUDA device seen"
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    for arch in ("small_cnn", "resnet18", "cifar_resnet18"):
        gpu, cpu = _served(arch, device), _served(arch, torch.device("cpu"))
        gpu.warm_up()
        logits, moves = _copies(gpu, torch.randn(32, 3, 32, 32))
        print(f"{arch}: Tensor.to calls for one batch: {moves}; logits on {logits.device}")
        inputs = [torch.randn(1, 3, 32, 32) for _ in range(200)]
        answers = asyncio.run(_batched(gpu, inputs))
        expected = [cpu.logits(x) for x in inputs]
        worst = max(float((a - e).abs().max()) for a, e in zip(answers, expected, strict=True))
        agree = sum(
            int(a.argmax()) == int(e.argmax()) for a, e in zip(answers, expected, strict=True)
        )
        print(f"  vs CPU: max |logit diff| {worst:.2e}, argmax agrees {agree}/200")
        rates = {b: round(_rate(gpu, b)) for b in (1, 8, 32, 64)}
        print(f"  GPU forward incl. both copies, images/s by batch: {rates}")


if __name__ == "__main__":
    main()
