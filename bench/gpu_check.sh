#!/usr/bin/env bash
# The CUDA path, once, on a machine with an NVIDIA GPU and PyTorch installed (no project
# install needed: it runs from the source tree). Writes what it saw under ${OUT:-var/gpu}.
#   OUT=var/gpu bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-var/gpu}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py="${PYTHON:-python3}"
dataset="${DATASET:-glyphs}" num_old="${NUM_OLD:-50}" arch="${ARCH:-resnet18}"
epochs="${EPOCHS:-8}" device="${DEVICE:-cuda}"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"; } | tee "$out/gpu.txt"
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"

# Our resnet18 loads torchvision's state dict (when torchvision is there) and agrees with it.
"$py" - <<'PY' | tee -a "$out/gpu.txt"
import torch
from mpt import models
try:
    import torchvision
except ImportError:
    print("torchvision not installed: compatibility check skipped")
else:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=100).eval()
    ours = models.create("resnet18", 100).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(4, 3, 32, 32)
    same = torch.allclose(ours(x), reference(x), atol=1e-5)
    print("torchvision", torchvision.__version__, "resnet18 state dict loads strictly; outputs equal:", same)
PY

cache="$out/cache"
time "$py" -m mpt.cli train --dataset "$dataset" --classes "0:$num_old" --arch "$arch" \
  --epochs "$epochs" --device "$device" --cache-dir "$cache" --quiet --out "$out/old.zip"
time "$py" -m mpt.cli upgrade --old "$out/old.zip" --dataset "$dataset" --arch "$arch" \
  --method mpt_kl --bias 2 --bias 4 --epochs "$epochs" --device "$device" --cache-dir "$cache" --quiet \
  --out "$out/new.zip" --save-reference "$out/ref.zip" --report "$out/upgrade-report.json" \
  | tee "$out/upgrade.txt"
time "$py" -m mpt.cli bench flips --dataset "$dataset" --num-old "$num_old" --arch "$arch" \
  --seeds 1 --epochs "$epochs" --methods no_treatment mpt_kl --absolute-biases 4 \
  --device "$device" \
  --cache-dir "$cache" --out "$out" --quiet
rm -rf "$cache"
