#!/usr/bin/env bash
# The main job: set-up, then the whole pipeline on demo/scene_0, ending with the path of the video.
# GPU presets when CUDA is available, CPU presets otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SCENE=${1:-demo/scene_0}
PY=.venv/bin/python
$PY scripts/generate_mask.py --input_dir "$SCENE"
$PY train_motion.py --input_dir "$SCENE"
$PY train_4DGS.py --input_dir "$SCENE" --flow_scale 2
$PY render_4DGS.py --input_dir "$SCENE"
echo "videos: $SCENE/video/   report: $SCENE/report.html"
