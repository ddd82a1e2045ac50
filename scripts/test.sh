#!/usr/bin/env bash
# The test command README gives: set up .venv if needed, lint, then run the whole suite and
# list the 25 slowest tests (CI's time budget: the suite must stay well inside 90 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
# --- lint ------------------------------------------------------------------------------------
# The lint step goes here (ruff, configured in pyproject.toml's [tool.ruff]); it runs before the
# tests so a style error fails fast. Skipped with SWIFT_EXT_SKIP_LINT=1.
if [ "${SWIFT_EXT_SKIP_LINT:-0}" != 1 ]; then
  echo "[lint] ruff check ."
  .venv/bin/ruff check .
fi
# --- tests -----------------------------------------------------------------------------------
# Two workers (the machine has 2 cores; most of a tiny swift run is single-threaded start-up), one
# test file per worker so module fixtures are built once. SWIFT_EXT_TEST_WORKERS=0 runs serially.
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=25 \
  -n "${SWIFT_EXT_TEST_WORKERS:-2}" --dist loadfile "$@"
