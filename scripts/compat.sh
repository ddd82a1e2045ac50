#!/usr/bin/env bash
# Usage: bash scripts/compat.sh MS_SWIFT_VERSION   (e.g. 4.0.0)
#
# Runs swift-ext's core subset against another ms-swift release, in a separate environment
# (.venv/compat/ms-swift-VERSION) that reuses everything in .venv and downloads only what
# that release needs on top (ms-swift itself and the versions of transformers / trl / peft /
# datasets it accepts). torch and torchvision are never downloaded again: the environment
# sees .venv's packages through a .pth file, and constraints hold torch at .venv's build.
#
# The core subset (tests/compat/compat_core.py plus three existing test files):
#   - template encode parity: every family with a tiny checkpoint whose parent template this
#     ms-swift has, `<parent>_geo` encodes byte-for-byte like `<parent>`;
#   - rewards and scoring: tests/unit/test_rewards.py, tests/unit/test_scoring.py;
#   - one tiny GRPO through `--external_plugins "$(swift-ext plugin-path)"` with geo_iou,
#     geo_format and geo_log; one tiny SFT with the plugin and geo_log;
#   - GRPO with per-row chat_template_kwargs (tests/e2e/test_grpo.py, qwen2.5 defaults).
# The last line printed is the table row: `| VERSION | pass/FAIL (counts) | DATE |`.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="${1:-}"
if [[ ! "$VERSION" =~ ^4\.[0-9]+\.[0-9]+$ ]]; then
  echo "usage: bash scripts/compat.sh MS_SWIFT_VERSION  (a 4.x release such as 4.0.0; got '${VERSION}')" >&2
  exit 2
fi
BASE="$ROOT/.venv"
if [ ! -x "$BASE/bin/python" ]; then
  echo "compat.sh: $BASE is missing; run 'source scripts/setup_env.sh' first." >&2
  exit 2
fi
ENV="$BASE/compat/ms-swift-$VERSION"
BASE_SITE="$("$BASE/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

if [ ! -x "$ENV/bin/python" ]; then
  echo "[compat] creating $ENV (reuses $BASE_SITE)"
  "$BASE/bin/python" -m venv "$ENV" || exit 1
fi
SITE="$("$ENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# addsitedir (not a bare path line) so .venv's own .pth files run too: the editable swift-ext.
# The environment's own site-packages stays first on sys.path, so what pip installs here wins.
echo "import site; site.addsitedir('$BASE_SITE')" > "$SITE/_swift_ext_base.pth"

# Keep torch / torchvision exactly as .venv has them; everything else may move to what this
# ms-swift declares (pip installs those into $ENV; .venv itself is never modified).
PINS="$ENV/pins.txt"
"$BASE/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null \
  | grep -iE '^(torch|torchvision)==' > "$PINS"
if [ "$("$ENV/bin/python" -c 'from importlib.metadata import version as v; print(v("ms-swift"))' 2>/dev/null)" \
     != "$VERSION" ]; then
  echo "[compat] installing ms-swift==$VERSION and what it needs beyond .venv (torch kept: $(tr '\n' ' ' < "$PINS"))"
  "$ENV/bin/python" -m pip install --disable-pip-version-check --progress-bar on -c "$PINS" \
    "ms-swift==$VERSION" msgspec 2>&1 | grep -vE '^(WARNING: Location|Requirement already satisfied)'
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "[compat] pip install failed for ms-swift==$VERSION" >&2; exit 1; }
fi
# When VERSION is .venv's own ms-swift nothing was installed here, so no `swift` command either:
# the tests call $ENV/bin/swift, which must run under this environment's python.
if [ ! -x "$ENV/bin/swift" ]; then
  printf '#!%s\nimport sys\nfrom swift.cli.main import cli_main\nsys.exit(cli_main())\n' "$ENV/bin/python" \
    > "$ENV/bin/swift"
  chmod +x "$ENV/bin/swift"
fi
"$ENV/bin/python" - <<'EOF' || exit 1
from importlib.metadata import version
import os, sys, torch, swift, swift_ext
print('[compat] python', sys.executable)
for lib in ('ms-swift', 'transformers', 'trl', 'peft', 'datasets', 'torch', 'torchvision', 'qwen-vl-utils'):
    print(f'[compat]   {lib} {version(lib)}')
print('[compat]   swift from', os.path.dirname(swift.__file__))
EOF

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 MODELSCOPE_OFFLINE=1 USE_HF=1
export PATH="$ENV/bin:$PATH"
cd "$ROOT" || exit 1
LOG="$ENV/pytest.log"
echo "[compat] running the core subset (log: $LOG)"
"$ENV/bin/python" -m pytest -p no:cacheprovider -q -rs --durations=5 \
  tests/compat/compat_core.py tests/unit/test_rewards.py tests/unit/test_scoring.py \
  'tests/e2e/test_grpo.py::test_grpo_qwen25_defaults_and_row_limits' 2>&1 | tee "$LOG"
STATUS=${PIPESTATUS[0]}
COUNTS="$(grep -E '^[=]* ?[0-9]+ (passed|failed)' "$LOG" | tail -1 | sed -E 's/=+//g; s/ in [0-9.]+s.*//; s/, [0-9]+ warnings?//; s/^ +| +$//g')"
RESULT=$([ "$STATUS" -eq 0 ] && echo pass || echo FAIL)
echo "| $VERSION | $RESULT ($COUNTS) | $(date -u +%Y-%m-%d) |"
exit "$STATUS"
