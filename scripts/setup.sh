#!/usr/bin/env bash
# Set up .venv with everything the project needs. Re-running when nothing changed takes seconds.
#   bash scripts/setup.sh              the pipeline and the tests
#   bash scripts/setup.sh --annotate   also labelme, the annotation tool (brings Qt, ~700 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
annotate=0
for arg in "$@"; do
  case "$arg" in
    --annotate) annotate=1 ;;
    *) echo "error: unknown option $arg. Fix: use bash scripts/setup.sh [--annotate]." >&2; exit 2 ;;
  esac
done
annotate_tool() {
  [ "$annotate" = 1 ] || return 0
  local stamp=.venv/.annotate-stamp want_tool
  want_tool=$(sha256sum requirements-annotate.txt | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_tool" ]; then return 0; fi
  echo "installing labelme into .venv..." >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-annotate.txt
  echo "$want_tool" > "$stamp"
  echo "labelme installed: .venv/bin/labelme path/to/scene/image.png" >&2
}
STAMP=.venv/.setup-stamp
want=$(cat requirements.txt requirements-dev.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  annotate_tool
  exit 0
fi
echo "setting up .venv (first run takes a few minutes)..." >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # torch first, on its own: 2.13.0 is a CPU build on this project's machines (and a CUDA build from PyPI
  # elsewhere); any torch >= 2.11 works.
  .venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0" \
    || .venv/bin/python -m pip install -q --disable-pip-version-check "torch>=2.11"
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
if .venv/bin/python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  # With a GPU, build gsplat's CUDA extension now (about 75 s, once) rather than inside the first run,
  # and compile the SSIM loss's Triton kernels (a few seconds, cached by Triton).
  .venv/bin/python -c "from gaussian_renderer.gsplat_backend import load_extension; load_extension()" \
    || echo "warning: gsplat's CUDA extension did not build; train_4DGS/render_4DGS will retry (or use --device cpu)" >&2
  .venv/bin/python -c "from gaussians4d.losses import warm_up; warm_up('cuda')" \
    || echo "warning: the SSIM loss's Triton kernels did not compile; train_4DGS will use its PyTorch path" >&2
fi
echo "$want" > "$STAMP"
echo "set-up done: .venv" >&2
annotate_tool
