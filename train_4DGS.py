"""Stage 2: stage 1's point cloud, views, 3D motion and looping video -> 4D Gaussians that loop.

    python train_4DGS.py --input_dir SCENE --flow_scale 2            # preset: gpu with CUDA, else cpu
    python train_4DGS.py --input_dir SCENE --preset cpu --resolution 320

Writes SCENE/gaussians/ (point_cloud/iteration_N/{point_cloud.ply, deformation.safetensors,
deformation.json}, config.json, metrics.json, cameras.json, previews/, checkpoints/) and
manifests/gaussians.json last. Re-running resumes from the last checkpoint (--fresh to start over).
Every option is a field of gaussians4d/config.py; the stage is gaussians4d/stage.py; formats:
docs/scene_format.md.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from utils.cli import config_from_args, config_parser, run_main  # the standard library only: errors stay one line

RESUMES = "interrupted; re-run the same command to resume from the last checkpoint (--fresh to start over)."


def build_config(argv: Sequence[str] | None = None):
    """The command line -> the resolved config: the preset (auto: gpu with CUDA, else cpu), then the options typed."""
    from gaussians4d.config import TrainConfig, machine_preset, preset, preset_defaults
    from utils.config import given

    parser = config_parser(TrainConfig, "train_4DGS.py", __doc__, defaults=preset_defaults())
    args = parser.parse_args(argv)
    typed = given(args, TrainConfig)
    name = typed.pop("preset", "auto")
    name = machine_preset(typed.get("device", "auto")) if name == "auto" else name
    return replace(config_from_args(preset(name), args), preset=name)


def main(argv: Sequence[str] | None = None) -> int:
    config = build_config(argv)
    from gaussians4d.stage import run
    from utils.console import info

    metrics = run(config)
    if metrics is None:
        return 0
    held = metrics["psnr_heldout"]
    info(
        f"{config.input_dir}: {metrics['n_gaussians']} Gaussians ({metrics['n_moving']} moving), "
        f"PSNR train {metrics['psnr_train']:.2f} dB, held-out {'n/a' if held is None else f'{held:.2f} dB'}, "
        f"loop of {metrics['n_frames']} frames -> {Path(config.input_dir) / 'gaussians'}; "
        f"report: {Path(config.input_dir) / 'report.html'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, interrupted=RESUMES))
