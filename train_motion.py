"""Stage 1: one photo -> depth -> multi-view images with filled holes -> 2D flows -> 3D motion -> looping video.

    python train_motion.py --input_dir SCENE                       # weight-free defaults
    python train_motion.py --input_dir SCENE --depth_model ckpts/depth-anything-v2-small \\
        --inpaint_model ckpts/sd2-inpainting --device cuda

Reads SCENE/image_rgb.png, regions.png, hints.json (scripts/generate_mask.py); writes SCENE/motion/
(built as SCENE/.motion.partial and swapped in when complete), then manifests/motion.json.
Every option is a field of motion/config.py; the stage is motion/stage.py; formats: docs/scene_format.md.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from utils.cli import config_from_args, config_parser, run_main  # the standard library only: errors stay one line


def _may_fetch_depth_model(args: Sequence[str]) -> bool:
    """Whether ``--depth auto`` may look for the default depth model on the hub (no model named, no other mode):
    a guess from the command line before it is parsed; a wrong guess costs only the overlap or one idle probe."""
    flat = " ".join(args)
    return "--depth_model" not in flat and not any(
        f"--depth{sep}{m}" in flat for sep in " =" for m in ("prior", "model")
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if _may_fetch_depth_model(args):
        from thirdparty.depth_transformers import start_hub_probe

        start_hub_probe()  # an offline machine's probe time overlaps with the imports below
    from motion.config import MotionConfig

    parser = config_parser(MotionConfig, "train_motion.py", __doc__)
    config = config_from_args(MotionConfig(), parser.parse_args(argv))
    from motion.stage import run
    from utils.console import info

    manifest = run(config)
    views, depth = manifest["info"]["views"], manifest["info"]["depth"]
    info(
        f"{config.input_dir}: {views['size'][0]}x{views['size'][1]}, {len(views['hole_fraction'])} views, "
        f"{views['points']} points (depth {depth['method']}, inpaint {views['inpaint']}) "
        f"in {manifest['timings_s']['total']:.1f} s -> {Path(config.input_dir) / 'motion'}; "
        f"report: {Path(config.input_dir) / 'report.html'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
