"""Calibrate the `glyphs` difficulty: train `small_cnn` on several settings, print accuracy.

    python -m bench.glyphs_tuning --preset default --preset v1 --train-per-class 180 --epochs 10

Each preset is a set of `make_glyphs` keyword overrides (see `PRESETS`); `v1` and the
presets after it are the settings measured before the defaults were lightened (see
docs/datasets.md). Training is `mpt.upgrade.train_package` with its defaults (SGD lr 0.1,
momentum 0.9, weight decay 5e-4, cosine schedule, batch 128, crops, no flips) on CUDA when
present, else the CPU. The target: 40-85% test accuracy on 100 classes within the flip
benchmark's budget.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from mpt.bench.flips import subsample_train
from mpt.data import ImageDataset, make_glyphs
from mpt.data.fonts import font_dir
from mpt.evaluate import predict_logits
from mpt.train import TrainConfig
from mpt.upgrade import train_package

V1: dict[str, Any] = {"min_contrast": 0.25, "gradient": 0.3, "clutter": 2, "noise": 0.15,
                      "blur": 1.3}  # fmt: skip
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "clean": {"rotation": 0.0, "shear": 0.0, "stretch": 0.0, "translate": 0.0, "clutter": 0,
              "noise": 0.0, "blur": 0.0, "gradient": 0.0, "min_contrast": 0.5},
    "v1": V1,
    "v1_easy": {**V1, "rotation": 10.0, "shear": 0.15, "clutter": 0, "noise": 0.05, "blur": 0.5},
    "v1_lighter": {**V1, "noise": 0.1, "blur": 1.0},
    "v1_harder": {**V1, "rotation": 25.0, "shear": 0.35, "clutter": 3, "noise": 0.12,
                  "blur": 1.1, "min_contrast": 0.2},
}  # fmt: skip


def test_accuracy(dataset: ImageDataset, epochs: int, seed: int) -> float:
    """Test accuracy of `small_cnn` trained on `dataset` for `epochs`."""
    package, _ = train_package(dataset, arch="small_cnn", config=TrainConfig(epochs, seed=seed))
    test = dataset.splits["test"]
    logits = predict_logits(package.model, test.x, package.manifest.input)
    return float((logits.argmax(dim=1) == test.y).float().mean())


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
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--preset", action="append", choices=sorted(PRESETS))
    parser.add_argument("--num-classes", type=int, default=100)
    parser.add_argument("--train-per-class", type=int, default=180)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sheet", metavar="PNG", help="only save a sample sheet of the defaults")
    args = parser.parse_args()
    if args.sheet:
        sample_sheet(make_glyphs(args.num_classes, 4, 1, seed=args.seed), args.sheet)
        return
    print(f"| preset | train/test | train s | test acc ({args.epochs} epochs) |")
    print("|---|---|---|---|")
    for preset in args.preset or ["default"]:
        dataset = make_glyphs(args.num_classes, **PRESETS[preset])
        dataset = subsample_train(dataset, args.train_per_class)
        start = time.perf_counter()
        accuracy = test_accuracy(dataset, args.epochs, args.seed)
        sizes = f"{len(dataset.splits['train'])}/{len(dataset.splits['test'])}"
        seconds = time.perf_counter() - start
        print(f"| {preset} | {sizes} | {seconds:.0f} | {accuracy:.3f} |", flush=True)


if __name__ == "__main__":
    main()
