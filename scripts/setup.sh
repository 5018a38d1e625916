#!/usr/bin/env bash
# Creates .venv (Python 3.11) and installs the locked dependencies (requirements/lock.txt:
# exact versions, dev tools included), then the project itself in editable mode, when the lock
# or pyproject.toml changed since the last install. Sourced by scripts/run.sh and
# scripts/test.sh; scripts/lock.sh rewrites the lock.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
fi
stamp="$venv/.installed-$(cat "$root/pyproject.toml" "$root/requirements/lock.txt" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  "$venv/bin/pip" install --quiet -r "$root/requirements/lock.txt"
  "$venv/bin/pip" install --quiet --no-deps -e "$root"
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
# The dashboard's browser tests drive Debian's Chromium: install it when missing and allowed.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } \
    || echo "setup: could not install chromium; the browser tests will fail" >&2
fi
