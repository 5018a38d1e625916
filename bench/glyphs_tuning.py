"""Calibrate the `glyphs` difficulty: train `small_cnn` on several settings, print accuracy.

    python -m bench.glyphs_tuning --epochs 15 --preset default --preset hard

Each preset is a set of `make_glyphs` keyword overrides (see `PRESETS`). Datasets are drawn
in parallel processes (one per preset), then each is trained in turn with the reference
recipe (SGD lr 0.1, momentum 0.9, weight decay 5e-4, cosine schedule, batch 128, random
crops of 4-pixel padding, no flips) on the first CUDA device, or the CPU. The target for the
defaults: 40-85% test accuracy on 100 classes after about 15 epochs.
"""

from __future__ import annotations

import argparse
import math
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from mpt.data import ImageDataset, make_glyphs
from mpt.data.fonts import font_dir
from mpt.models import create

PRESETS: dict[str, dict[str, Any]] = {
    "clean": {"rotation": 0.0, "shear": 0.0, "stretch": 0.0, "translate": 0.0, "clutter": 0,
              "noise": 0.0, "blur": 0.0, "gradient": 0.0, "min_contrast": 0.5},
    "easy": {"rotation": 10.0, "shear": 0.15, "clutter": 0, "noise": 0.05, "blur": 0.5},
    "lighter": {"noise": 0.1, "blur": 1.0},
    "default": {},
    "low_contrast": {"noise": 0.12, "blur": 1.2, "min_contrast": 0.2},
    "harder": {"rotation": 25.0, "shear": 0.35, "clutter": 3, "noise": 0.12, "blur": 1.1,
               "min_contrast": 0.2},
    "hard": {"rotation": 30.0, "shear": 0.4, "scale": (0.4, 0.9), "clutter": 4, "noise": 0.15,
             "blur": 1.3, "min_contrast": 0.15},
    "fewer_samples": {"train_per_class": 100},
}  # fmt: skip


def _build(args: tuple[str, int, int]) -> tuple[str, ImageDataset, float]:
    preset, num_classes, seed = args
    start = time.perf_counter()
    dataset = make_glyphs(num_classes=num_classes, seed=seed, **PRESETS[preset])
    return preset, dataset, time.perf_counter() - start


def _random_crop(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    batch, _, height, width = images.shape  # (B, C, H, W)
    padded = F.pad(images, (pad, pad, pad, pad))
    shifts = torch.randint(0, 2 * pad + 1, (2, batch), generator=generator).to(images.device)
    rows = shifts[0][:, None] + torch.arange(height, device=images.device)  # (B, H)
    cols = shifts[1][:, None] + torch.arange(width, device=images.device)  # (B, W)
    index = torch.arange(batch, device=images.device)[:, None, None]
    cropped = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]
    return cropped.permute(0, 3, 1, 2)  # (B, C, H, W)


def train_and_test(dataset: ImageDataset, epochs: int, device: torch.device, seed: int) -> float:
    """Test accuracy of `small_cnn` after `epochs` of the reference recipe."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    train, test = dataset.splits["train"], dataset.splits["test"]
    x_train = train.x.to(device).float() / 255.0
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True)
    x_train, y_train = (x_train - mean) / std, train.y.to(device)
    x_test, y_test = (test.x.to(device).float() / 255.0 - mean) / std, test.y.to(device)
    model = create("small_cnn", dataset.num_classes, dataset.image_shape[0]).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    steps = epochs * math.ceil(len(train) / 128)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / steps, 1.0)))
    )
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train), generator=generator).to(device)
        for batch in order.split(128):
            images = _random_crop(x_train[batch], 4, generator)
            loss = F.cross_entropy(model(images), y_train[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.inference_mode():
        correct = sum(
            int((model(x_test[i : i + 1000]).argmax(1) == y_test[i : i + 1000]).sum())
            for i in range(0, len(test), 1000)
        )
    return correct / len(test)


def sample_sheet(dataset: ImageDataset, path: str, per_class: int = 2, zoom: int = 2) -> None:
    """Save a PNG grid: per class, its name over its first `per_class` train images."""
    x, y = dataset.splits["train"].x, dataset.splits["train"].y
    side = dataset.image_shape[1] * zoom
    cell_w, cell_h, columns = per_class * side + 6, side + 18, 10
    rows = math.ceil(dataset.num_classes / columns)
    sheet = Image.new("RGB", (columns * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.truetype(str(font_dir() / "DejaVuSans.ttf"), 12)
    for label, name in enumerate(dataset.classes):
        left, top = (label % columns) * cell_w + 3, (label // columns) * cell_h
        draw.text((left, top + 1), f"{label}: {name}", fill="black", font=font)
        for slot, index in enumerate((y == label).nonzero().flatten()[:per_class].tolist()):
            tile = Image.fromarray(x[index].permute(1, 2, 0).numpy()).resize((side, side), 0)
            sheet.paste(tile, (left + slot * side, top + 16))
    sheet.quantize(64, dither=Image.Dither.NONE).save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", choices=sorted(PRESETS))
    parser.add_argument("--num-classes", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sheet", metavar="PNG", help="only save a sample sheet of the defaults")
    args = parser.parse_args()
    if args.sheet:
        sample_sheet(make_glyphs(args.num_classes, 4, 1, seed=args.seed), args.sheet)
        return
    presets = args.preset or ["default"]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    jobs = [(preset, args.num_classes, args.seed) for preset in presets]
    with ProcessPoolExecutor(max_workers=len(jobs)) as pool:
        built = list(pool.map(_build, jobs))
    print(f"| preset | train/test | build s | train s | test acc ({args.epochs} ep, {device}) |")
    print("|---|---|---|---|---|")
    for preset, dataset, build_s in built:
        start = time.perf_counter()
        accuracy = train_and_test(dataset, args.epochs, device, args.seed)
        sizes = f"{len(dataset.splits['train'])}/{len(dataset.splits['test'])}"
        train_s = time.perf_counter() - start
        print(
            f"| {preset} | {sizes} | {build_s:.1f} | {train_s:.1f} | {accuracy:.3f} |", flush=True
        )


if __name__ == "__main__":
    main()
