#!/usr/bin/env bash
# The test command README gives: set up .venv if needed, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
