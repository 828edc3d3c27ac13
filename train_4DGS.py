"""Stage 2: stage 1's point cloud, views, 3D motion and looping video -> 4D Gaussians that loop.

    python train_4DGS.py --input_dir SCENE --flow_scale 2            # preset: gpu with CUDA, else cpu
    python train_4DGS.py --input_dir SCENE --preset cpu --resolution 320

Writes SCENE/gaussians/ (point_cloud/iteration_N/{point_cloud.ply, deformation.safetensors,
deformation.json}, config.json, metrics.json, cameras.json, previews/, checkpoints/) and
manifests/gaussians.json last. Re-running resumes from the last checkpoint (--fresh to start over).
Every option is a field of gaussians4d/config.py::TrainConfig; formats: docs/scene_format.md.
"""

from __future__ import annotations

import argparse
import sys
import typing
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gaussians4d.config import PRESETS, TrainConfig, field_help, preset
from scene.paths import ScenePaths
from utils.cli import make_parser, run_main
from utils.console import info
from utils.errors import UserError


def _preset_value(name: str, field: str) -> object:
    value = PRESETS[name].get(field, TrainConfig.__dataclass_fields__[field].default)
    return list(value) if isinstance(value, tuple) else value


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per config field, typed from its annotation (defaults come from the preset)."""
    helps = field_help()
    for name, hint in typing.get_type_hints(TrainConfig).items():
        flag = f"--{name}"
        defaults = ", ".join(f"{p}: {_preset_value(p, name)}" for p in sorted(PRESETS))
        kwargs: dict = {"default": None, "help": f"{helps.get(name, '')} [{defaults}]".replace("%", "%%")}
        origin = typing.get_origin(hint)
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif origin is typing.Literal:
            parser.add_argument(flag, choices=typing.get_args(hint), **kwargs)
        elif origin is tuple:
            parser.add_argument(flag, type=int, nargs="+", **kwargs)
        else:
            parser.add_argument(flag, type=hint, **kwargs)


def build_config(args: argparse.Namespace) -> TrainConfig:
    overrides = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None}
    if "grid_multires" in overrides:
        overrides["grid_multires"] = tuple(overrides["grid_multires"])
    name = args.preset
    if name is None:
        import torch

        wants_cpu = overrides.get("device") == "cpu" or not torch.cuda.is_available()
        name = "cpu" if wants_cpu else "gpu"
    return preset(name, **overrides)


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__.splitlines()[0], prog="train_4DGS.py")
    parser.add_argument("--input_dir", required=True, help="scene folder (after train_motion.py)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None, help="gpu with CUDA, else cpu")
    parser.add_argument("--fresh", action="store_true", help="ignore existing checkpoints and start over")
    _add_config_options(parser)
    args = parser.parse_args(argv)
    scene = ScenePaths(args.input_dir)
    if not scene.root.is_dir():
        raise UserError(f"{scene.root} is not a folder", "give the scene folder with --input_dir")
    cfg = build_config(args)
    from gaussians4d.trainer import train

    metrics = train(scene, cfg, fresh=args.fresh)
    if metrics is None:
        return 0
    held = metrics["psnr_heldout"]
    info(
        f"{scene.root}: {metrics['n_gaussians']} Gaussians ({metrics['n_moving']} moving), "
        f"PSNR train {metrics['psnr_train']:.2f} dB, held-out {'n/a' if held is None else f'{held:.2f} dB'}, "
        f"loop of {metrics['n_frames']} frames -> {scene.gaussians.dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
