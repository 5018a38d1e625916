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
# Debian packages the tests drive, installed when missing and allowed: Chromium for the
# dashboard's browser tests, and a compose client that checks docker-compose.yml.
debian_package() {  # package, command it provides, what fails without it
  command -v "$2" >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 0
  apt-get install -y -q "$1" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$1" >/dev/null 2>&1; } \
    || echo "setup: could not install $1; $3 will fail" >&2
}
debian_package chromium chromium "the browser tests"
docker compose version >/dev/null 2>&1 \
  || debian_package docker-compose docker-compose "the compose file check"
