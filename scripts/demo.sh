#!/usr/bin/env bash
# The main job: set-up, then the whole pipeline on demo/scene_0, ending with the path of the video.
# GPU presets when CUDA is available, CPU presets otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SCENE=${1:-demo/scene_0}
PY=.venv/bin/python
for stage in scripts/generate_mask.py train_motion.py train_4DGS.py render_4DGS.py; do
  if [ ! -f "$stage" ]; then
    echo "error: $stage is not implemented yet; the pipeline stops before it." >&2
    exit 2
  fi
done
$PY scripts/generate_mask.py --input_dir "$SCENE"
$PY train_motion.py --input_dir "$SCENE"
$PY train_4DGS.py --input_dir "$SCENE" --flow_scale 2
$PY render_4DGS.py --input_dir "$SCENE"
echo "video: $SCENE/video/"
