#!/usr/bin/env bash
# Writes the lock files: every package at one exact version, from pyproject.toml's ranges.
#   requirements/lock.txt     what CI and development install (the dev extra: all of it)
#   requirements/service.txt  the API image (the service extra)
#   requirements/worker.txt   the worker image (the worker extra)
# Versions already locked stay unless they no longer fit the ranges; pass pip-compile's
# `--upgrade` or `--upgrade-package NAME` to move them. The service and worker locks are
# constrained by lock.txt, so all three agree on every version they share.
#
# pip-compile resolves with pip, so it finds the torch wheel pip itself would install (the
# local CPU build here). Locks name torch without its local label (`torch==2.13.0`, not
# `+cpu`): the API image installs that version's CPU build, the worker image its CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export CUSTOM_COMPILE_COMMAND="scripts/lock.sh"
compile() {
  # `--unsafe-package mpt-upgrades`: the dev and service extras name the project itself (its
  # other extras); without it pip-compile would lock `mpt-upgrades @ file:///<checkout>`.
  pip-compile --quiet --strip-extras --unsafe-package mpt-upgrades \
    --no-emit-index-url --no-emit-find-links --no-emit-trusted-host "$@" pyproject.toml
}
compile --extra dev --output-file requirements/lock.txt "$@"
compile --extra service --constraint requirements/lock.txt --output-file requirements/service.txt
compile --extra worker --constraint requirements/lock.txt --output-file requirements/worker.txt
# `torch==2.13.0+cpu` -> `torch==2.13.0` (and torchvision's likewise, if locked).
sed -i -E 's/^(torch|torchvision)==([^+[:space:]]+)\+[[:alnum:].]+/\1==\2/' requirements/*.txt
# Reinstall .venv from the new lock the next time setup.sh runs.
rm -f .venv/.installed-*
