#!/usr/bin/env bash
# Install corral and bring up the quickstart fleet, attached (Ctrl-C stops it gracefully).
# In a non-interactive run (no terminal, e.g. CI=true) it runs the fleet for DEMO_SECONDS
# (default 20), shows `corral ps`, then `corral down`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
corral=".venv/bin/corral -f examples/quickstart/corral.yaml"
if [ -t 0 ] && [ -t 1 ] && [ -z "${CI:-}" ]; then
  exec $corral up
fi
$corral up -d
sleep "${DEMO_SECONDS:-20}"
$corral ps
$corral logs --tail 20
$corral down
