#!/usr/bin/env bash
# The test command: set-up, lint, type checks, layering contract, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/services.sh
set -e
ruff check .
ruff format --check .
lint-imports
mypy
pytest "$@"
