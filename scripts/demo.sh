#!/usr/bin/env bash
# The main job README gives: set up .venv if needed, then a short GRPO grounding run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
exec .venv/bin/swift-ext demo "$@"
