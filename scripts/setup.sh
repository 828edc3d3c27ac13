#!/usr/bin/env bash
# Set up .venv with everything the project needs. Re-running when nothing changed takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STAMP=.venv/.setup-stamp
want=$(cat requirements.txt requirements-dev.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
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
echo "$want" > "$STAMP"
echo "set-up done: .venv" >&2
