#!/usr/bin/env bash
# The main job: the service in the embedded default (API + a Celery worker beside it, SQLite,
# local artifacts; no servers to install). It first makes a demo old model and dataset under
# var/demo/ and prints the curl lines that register, upload and upgrade with them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
mkdir -p var/demo
if [ -z "${MPT_ADMIN_TOKEN:-}" ]; then
  [ -f var/demo/admin-token ] || python -c 'import secrets; print(secrets.token_urlsafe(24))' > var/demo/admin-token
  MPT_ADMIN_TOKEN="$(cat var/demo/admin-token)"
fi
export MPT_ADMIN_TOKEN
[ -f var/demo/old.zip ] || mpt train --dataset digits --classes 0:5 --epochs 15 --quiet --out var/demo/old.zip
[ -f var/demo/digits.npz ] || python -c 'from mpt.data import load_dataset, save_npz; save_npz(load_dataset("digits"), "var/demo/digits.npz")'
host="${MPT_HOST:-127.0.0.1}" port="${MPT_PORT:-8000}"
url="http://$host:$port"
cat <<TXT

mpt-upgrades on $url (OpenAPI: $url/docs). In another terminal:

  export H="Authorization: Bearer $MPT_ADMIN_TOKEN"
  curl -sH "\$H" -H 'content-type: application/json' $url/v1/deployments -d '{"name": "default", "gate": {"max_nfr": 0.05}}'
  curl -sH "\$H" $url/v1/deployments/default/releases -F file=@var/demo/old.zip -F activate=true
  curl -sH "\$H" $url/v1/datasets -F file=@var/demo/digits.npz           # note the "id"
  curl -sH "\$H" -H 'content-type: application/json' $url/v1/deployments/default/upgrades \\
       -d '{"dataset_id": "<id>", "epochs": 20, "auto_promote": true}'   # sweeps the bias
  curl -sH "\$H" $url/v1/upgrades/<job id>                                # status, phase, progress
  curl -sH "\$H" $url/v1/deployments/default/releases/2/report            # the flip report
  # or open $url/dashboard in a browser and log in with the admin key
  curl -sH "\$H" -H 'content-type: application/json' $url/predict -d '{"inputs": [[[[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]]]}'

TXT
exec mpt-service serve --host "$host" --port "$port"
