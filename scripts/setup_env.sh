#!/usr/bin/env bash
# Creates .venv in the repo root if none is there and installs swift-ext with its test extra.
# Sourced by scripts/test.sh and scripts/demo.sh. Re-installs only when setup.cfg changes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  "$PY" -m venv "$ROOT/.venv"
fi
STAMP="$ROOT/.venv/.swift-ext-installed"
WANT="$(sha1sum "$ROOT/setup.cfg" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  # torch/torchvision are pinned to a pair from the package index: the CPU-only torch wheel
  # this machine's pip also sees (torch 2.13.0+cpu) breaks `import torchvision`.
  "$ROOT/.venv/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[test]" 2>&1 \
    | grep -v "^WARNING: Location" || true
  "$ROOT/.venv/bin/python" -c "import torchvision, qwen_vl_utils, swift, msgspec" 
  echo "$WANT" > "$STAMP"
fi
# No model hub at run time: everything is built locally.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 MODELSCOPE_OFFLINE=1 USE_HF=1
export PATH="$ROOT/.venv/bin:$PATH"
