#!/usr/bin/env bash
# The main job. Until the service lands it runs a small flip benchmark on the bundled digits
# dataset (a few minutes on 2 cores) and prints its table; results go to var/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
mpt bench flips --dataset digits --num-old 5 --seeds 1 --epochs 20 --ensemble-size 2 \
  --out var/results "$@"
cat var/results/flips-digits.md
