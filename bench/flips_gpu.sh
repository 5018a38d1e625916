#!/usr/bin/env bash
# The flip benchmark at CIFAR scale on one GPU: glyphs, 100 classes, 500 training images per
# class, 50 -> 100, cifar_resnet18 (3x3 stem, no max-pool), every headline method, 3 seeds.
# Sized for one 10-minute run on an H100-class GPU: bf16 autocast, channels-last, the data on
# the GPU, a loss read-back every 25 steps only. It first times two epochs of each variant
# (bench/epoch_time.py), prints the projected total, then runs the preset under a time limit.
#   OUT=var/gpu-flips bench/flips_gpu.sh          (LIMIT=seconds, default 540)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-var/gpu-flips}" limit="${LIMIT:-540}" py="${PYTHON:-python3}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
epochs=6 old_epochs=10 batch=256 lr=0.2
"$py" -m bench.epoch_time --arch cifar_resnet18 --train-per-class 500 --batch-size "$batch" \
  --epochs 2 --repeat 10 --out "$out/epoch-time.md"
"$py" - "$out/epoch-time.md" "$epochs" "$old_epochs" <<'PY'
import re, sys
text, epochs, old_epochs = open(sys.argv[1]).read(), int(sys.argv[2]), int(sys.argv[3])
median = {m[0]: float(m[1]) for m in re.findall(r"^\| ([^|]+?) \| ([\d.]+) \|", text, re.M)}
plain, mpt = median["plain retrain"], median["mpt_kl, default teachers"]
# per seed: old model (half the classes), plain retrain + ELODI member, 4 MPT candidates,
# PCT-KL, PCT-LM and ELODI (about one teacher pass less than MPT: counted as MPT)
per_seed = old_epochs * plain / 2 + epochs * (2 * plain + 7 * mpt)
print(f"projected: {3 * per_seed / 60:.1f} min for 3 seeds "
      f"(plain epoch {plain:.2f} s, MPT epoch {mpt:.2f} s)")
PY
timeout "$limit" "$py" -m mpt.cli bench flips --dataset glyphs --num-old 50 --seeds 3 \
  --epochs "$epochs" --old-epochs "$old_epochs" --train-per-class 500 \
  --arch cifar_resnet18 --batch-size "$batch" --lr "$lr" --ensemble-size 2 \
  --device cuda --cache-dir "$out/cache" --out "$out" --quiet
