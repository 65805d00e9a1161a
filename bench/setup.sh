#!/usr/bin/env bash
# Install the competitor tools for bench/run.py into bench/.work/ (git-ignored).
#   bench/.work/venv  - uv venv with supervisor, circus, honcho
#   bench/.work/npm   - pm2 from the npm registry
# Idempotent: re-running only fills in what is missing.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="$HERE/.work"
PY="${BENCH_PYTHON:-$(command -v python3)}"
# uv is one of corral's own dependencies: take the project venv's copy when none is on PATH
UV="$(command -v uv || true)"
[ -n "$UV" ] || UV="$HERE/../.venv/bin/uv"
[ -x "$UV" ] || { echo "setup.sh: uv not found: run bash scripts/install.sh first" >&2; exit 1; }

mkdir -p "$WORK"
if [ ! -x "$WORK/venv/bin/python" ]; then
  "$UV" venv --python "$PY" "$WORK/venv"
fi
"$UV" pip install --python "$WORK/venv/bin/python" supervisor circus honcho psutil

if [ ! -x "$WORK/npm/node_modules/.bin/pm2" ]; then
  mkdir -p "$WORK/npm"
  npm install --prefix "$WORK/npm" --no-audit --no-fund pm2
fi

echo "setup.sh: ok"
"$WORK/venv/bin/supervisord" --version | sed 's/^/  supervisord /'
"$WORK/venv/bin/python" -c 'import circus; print("  circus", circus.__version__)'
"$WORK/venv/bin/honcho" --version | sed 's/^/  /'
# read the version from package.json: `pm2 --version` would spawn a daemon
node -p 'require(process.argv[1]).version' "$WORK/npm/node_modules/pm2/package.json" | sed 's/^/  pm2 /'
