#!/usr/bin/env bash
# The main job: the service in the embedded default (API + a Celery worker beside it, SQLite,
# local artifacts; no servers to install), and the demo in the background beside it:
#   1. draw the 100-class `glyphs` dataset (16x16, small enough for a CPU) into var/demo/;
#   2. train the old model on its first 50 classes with `mpt train`;
#   3. `python -m mptctl.demo`: register it as release 1, upload the dataset, submit an MPT
#      upgrade with the default bias sweep, follow it, print the verdict, the flip report
#      beside the plain retrain and what it says, one prediction, and where the dashboard is.
# Minutes on two CPU cores (docs/results/demo.md). A second run reuses all of it.
# `--no-demo` or MPT_DEMO=0 starts the service alone.
set -euo pipefail
cd "$(dirname "$0")/.."
demo="${MPT_DEMO:-1}"
for arg in "$@"; do
  case "$arg" in
    --no-demo) demo=0 ;;
    *) echo "usage: scripts/run.sh [--no-demo]" >&2; exit 2 ;;
  esac
done
source scripts/setup.sh
mkdir -p var/demo
key_hint="the MPT_ADMIN_TOKEN you set"
if [ -z "${MPT_ADMIN_TOKEN:-}" ]; then
  [ -f var/demo/admin-token ] || python -c 'import secrets; print(secrets.token_urlsafe(24))' > var/demo/admin-token
  MPT_ADMIN_TOKEN="$(cat var/demo/admin-token)"
  key_hint="$PWD/var/demo/admin-token"
fi
export MPT_ADMIN_TOKEN
# Threads that wait for work sleep instead of spinning: on a machine whose cores are busy
# with other work, torch's spinning threads made training 5 to 15 times slower.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
host="${MPT_HOST:-127.0.0.1}" port="${MPT_PORT:-8000}"
local_host="$host"; [ "$host" = 0.0.0.0 ] && local_host=127.0.0.1
url="http://$local_host:$port"

# The extended dataset and a test image of a new class to ask /predict about.
make_dataset() {
  python - <<'PY'
from PIL import Image
from mpt.data import make_glyphs, save_npz

glyphs = make_glyphs(100, train_per_class=150, test_per_class=50, size=16)
test, new_class = glyphs.splits["test"], 75
image = test.x[test.y == new_class][0]  # (C, H, W) uint8
Image.fromarray(image.permute(1, 2, 0).numpy()).save("var/demo/sample.png")
open("var/demo/sample.label", "w").write(glyphs.classes[new_class] + "\n")
save_npz(glyphs, "var/demo/glyphs.npz")
PY
}

run_demo() {
  [ -f var/demo/glyphs.npz ] || { echo "demo: drawing the glyphs dataset"; make_dataset; }
  if [ ! -f var/demo/v1.zip ]; then
    echo "demo: training v1 on the first 50 classes"
    mpt train --dataset var/demo/glyphs.npz --classes 0:50 --arch small_cnn --epochs 15 \
      --batch-size 64 --seed 0 --out var/demo/v1.partial.zip
    mv var/demo/v1.partial.zip var/demo/v1.zip
  fi
  MPT_KEY="$MPT_ADMIN_TOKEN" python -m mptctl.demo --url "$url" --dir var/demo --epochs 8 \
    --batch-size 64 --key-hint "$key_hint"
}

echo "mpt-upgrades on http://$host:$port (OpenAPI: /docs, dashboard: /dashboard); admin key: $key_hint"
if [ "$demo" != 0 ]; then
  # The demo shares the terminal: the service logs warnings and errors only, unless told.
  export MPT_LOG_LEVEL="${MPT_LOG_LEVEL:-WARNING}"
  run_demo &
fi
exec mpt-service serve --host "$host" --port "$port"
