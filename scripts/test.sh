#!/usr/bin/env bash
# Install what the tests need and run them all: lint, types, unit, contract and e2e tests.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test || exit 1
status=0
echo "== ruff"; .venv/bin/ruff check src tests bench || status=1
echo "== mypy"; .venv/bin/mypy src || status=1
echo "== import layers (pyproject.toml [tool.importlinter], drawn in docs/architecture.md)"
.venv/bin/lint-imports --no-cache || status=1
echo "== pytest, with a coverage report (not a gate)"
.venv/bin/python -m pytest -q -p no:cacheprovider --cov --cov-report=term "$@"
code=$?
[ "$code" = 0 ] || status=$code
exit $status
