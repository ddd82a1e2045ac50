#!/usr/bin/env bash
# Creates .venv in the repo root if none is there and installs swift-ext into it with its test
# extra, pinned to the known-good set in constraints.txt. Re-installs only when setup.cfg or
# constraints.txt changes.
#
#   source scripts/setup_env.sh    # also puts .venv/bin on PATH and switches the model hubs off
#   bash scripts/setup_env.sh      # only installs; then `source .venv/bin/activate`
#
# Sourcing it leaves your shell's options alone: the strict mode (set -euo pipefail) applies
# inside a subshell that does the installing, never to the shell that sourced this file.
_swift_ext_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

_swift_ext_install() (
  set -euo pipefail
  ROOT="$1"
  PY="${PYTHON:-python3}"
  if [ ! -x "$ROOT/.venv/bin/python" ]; then
    echo "[setup] creating $ROOT/.venv with $("$PY" --version 2>&1)"
    "$PY" -m venv "$ROOT/.venv"
  fi
  STAMP="$ROOT/.venv/.swift-ext-installed"
  # torchcodec (transformers' video decoder) only beside the OS FFmpeg: without it every video fails.
  EXTRAS="test,video"
  # Read whole, not piped into `grep -q`: grep's early exit kills ldconfig with SIGPIPE, and pipefail then made the
  # test false on some runs (torchcodec left out, its tests not collected).
  if grep -q 'libavutil\.so' <<<"$(ldconfig -p 2>/dev/null)"; then EXTRAS="$EXTRAS,video-hf"; fi
  WANT="$( (cat "$ROOT/setup.cfg" "$ROOT/constraints.txt"; echo "$EXTRAS") | sha1sum | cut -d' ' -f1)"
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    return 0
  fi
  echo "[setup] installing swift-ext and its pinned dependencies into .venv"
  echo "[setup] (the first time: about 6 GB, 3-5 minutes; pip shows each download below)"
  # torch/torchvision come pinned from constraints.txt as the package index's pair: the
  # CPU-only torch wheel some machines' pip also sees (torch 2.13.0+cpu) breaks torchvision.
  set +e
  "$ROOT/.venv/bin/python" -m pip install --disable-pip-version-check --progress-bar on \
    -c "$ROOT/constraints.txt" -e "$ROOT[$EXTRAS]" 2>&1 \
    | grep --line-buffered -vE '^(WARNING: Location|Requirement already satisfied)'
  status="${PIPESTATUS[0]}"  # pip's; grep's is 1 when every line was filtered out
  set -e
  [ "$status" -eq 0 ] || { echo "[setup] pip install failed (output above)" >&2; return 1; }
  echo "[setup] checking that the libraries import"
  "$ROOT/.venv/bin/python" -c "import torchvision, qwen_vl_utils, swift, msgspec, swift_ext.plugin"
  echo "$WANT" > "$STAMP"
  echo "[setup] done"
)

if _swift_ext_install "$_swift_ext_root"; then
  # No model hub at run time: everything is built locally.
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 MODELSCOPE_OFFLINE=1 USE_HF=1
  case ":$PATH:" in
    *":$_swift_ext_root/.venv/bin:"*) ;;
    *) export PATH="$_swift_ext_root/.venv/bin:$PATH" ;;
  esac
  unset -f _swift_ext_install
  unset _swift_ext_root
else
  unset -f _swift_ext_install
  unset _swift_ext_root
  # `return` when sourced (keeps the caller's shell open), `exit` when run as a script.
  return 1 2>/dev/null || exit 1
fi
