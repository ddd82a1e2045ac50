#!/usr/bin/env bash
# The main job README gives: set up .venv if needed, then a short GRPO grounding run.
# The terminal gets progress lines and the table; pip's output goes to demo_run/setup.log and
# ms-swift's to demo_run/swift.log (`swift-ext demo --verbose` shows ms-swift's instead).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p demo_run
echo "[demo] checking .venv (the first time it installs: about 6 GB, 3-5 minutes; pip's output goes to demo_run/setup.log)"
if ! source scripts/setup_env.sh > demo_run/setup.log 2>&1; then
  echo "[demo] setting up .venv failed; the end of demo_run/setup.log:" >&2
  tail -n 20 demo_run/setup.log >&2
  exit 1
fi
exec .venv/bin/swift-ext demo "$@"
