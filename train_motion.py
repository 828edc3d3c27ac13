"""Stage 1: one photo -> depth -> point cloud -> inpainted multi-view images (part 1) -> flows, 3D motion, video (part 2).

    python train_motion.py --input_dir SCENE                       # weight-free defaults
    python train_motion.py --input_dir SCENE --depth_model ckpts/depth-anything-v2-small \\
        --inpaint_model ckpts/sd2-inpainting --device cuda

Reads SCENE/image_rgb.png, regions.png, hints.json (scripts/generate_mask.py); writes SCENE/motion/
(built as SCENE/.motion.partial and swapped in when complete), then manifests/motion.json.
Formats: docs/scene_format.md ("train_motion: views").
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2
import numpy as np

from scene.io import (
    Camera,
    Hint,
    read_hints,
    read_labels,
    read_rgb,
    to_uint8,
    write_cameras,
    write_labels,
    write_mask,
    write_npy,
    write_png,
    write_points,
)
from scene.manifest import StageRun, check_writable, require_stage, staged_dir
from scene.paths import MASK_CMD, MotionPaths, ScenePaths
from utils.cli import make_parser, run_main
from utils.console import info, track, warn
from utils.errors import UserError
from utils.failpoints import hold

if TYPE_CHECKING:
    from motion.multiview import Points, View


@dataclass
class MotionConfig:
    """Options of train_motion.py (part 1: depth and views)."""

    input_dir: str
    depth: str = "auto"  # auto | prior | model
    depth_model: str | None = None  # local folder or hub id of a transformers depth model
    inpaint: str = "auto"  # auto | opencv | model
    inpaint_model: str | None = None  # local folder or hub id of a diffusers SD inpainting pipeline
    inpaint_steps: int = 25
    inpaint_prompt: str | None = None
    inpaint_size: int = 512  # the learned inpainter works at this longer side (pixels, multiple of 8)
    resolution: str | None = None  # None = the photo's size; "N" = longest side N; "WxH" = exactly
    n_views: int = 25
    view_span: float = 1.0  # scales every angle of the view set (1.0 = the paper's)
    pivot_depth: float = 4.3  # scene units: centre of the orbit views
    fov: float | None = None  # vertical FOV in degrees; None = 582.69 px * H / 512
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # CPU threads for torch; 0 = torch's default (one per core)
    seed: int = 0
    part2: dict = field(default_factory=dict)  # flows, 3D motion, video: motion.stage.Part2Config


@dataclass
class Part1:
    """What part 1 hands to part 2 (all at the working resolution, in memory)."""

    scene: ScenePaths
    photo: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 scene units
    regions: np.ndarray  # (H, W) int32
    hints: list[Hint]  # in working-resolution pixels (scaled from the photo's)
    scale: tuple[float, float]  # working pixels per photo pixel (x, y)
    views: list[View]  # view 0 = the photo
    cameras: list[Camera]
    points: Points  # torch, on ``device``; rows = points.ply rows
    device: str


# ----------------------------------------------------------------------------- CLI


def add_part1_args(parser: argparse.ArgumentParser) -> None:
    d = MotionConfig(input_dir="")
    parser.add_argument("--input_dir", required=True, help="scene folder (after scripts/generate_mask.py)")
    parser.add_argument(
        "--depth",
        choices=("auto", "prior", "model"),
        default=d.depth,
        help="depth source: auto = --depth_model if given, else the geometric landscape prior",
    )
    parser.add_argument("--depth_model", default=None, help="transformers depth model: local folder or hub id")
    parser.add_argument(
        "--inpaint",
        choices=("auto", "opencv", "model"),
        default=d.inpaint,
        help="hole filling: auto = --inpaint_model if given, else OpenCV (Telea)",
    )
    parser.add_argument(
        "--inpaint_model", default=None, help="diffusers SD inpainting pipeline: local folder or hub id"
    )
    parser.add_argument("--inpaint_steps", type=int, default=d.inpaint_steps, help="diffusion steps per view")
    parser.add_argument("--inpaint_prompt", default=None, help="text prompt of the learned inpainter")
    parser.add_argument(
        "--inpaint_size",
        type=int,
        default=d.inpaint_size,
        help="longer side in pixels at which the learned inpainter runs (512 for SD 1.5/2)",
    )
    parser.add_argument(
        "--resolution",
        default=None,
        help="working size: N = longest side N pixels (never upscaled), or WxH; default: the photo's",
    )
    parser.add_argument("--n_views", type=int, default=d.n_views, help="number of views, 1..25 (view 0 = the photo)")
    parser.add_argument(
        "--view_span",
        type=float,
        default=d.view_span,
        help="scale of the view set's angles (1.0 = +-20 deg yaw, +-22.5 deg pitch, +-5 deg orbit)",
    )
    parser.add_argument("--pivot_depth", type=float, default=d.pivot_depth, help="orbit centre, scene units")
    parser.add_argument("--fov", type=float, default=None, help="vertical field of view in degrees (default ~47.4)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device)
    parser.add_argument(
        "--threads",
        type=int,
        default=d.threads,
        help="CPU threads for torch (0 = torch's default, one per core; 1 is faster on a CPU busy with other jobs); "
        "a speed knob only: the outputs are the same for every count",
    )
    parser.add_argument("--seed", type=int, default=d.seed)


def config_from_args(args: argparse.Namespace) -> MotionConfig:
    from motion.stage import parse_video_views, part2_config

    fields = MotionConfig.__dataclass_fields__
    config = MotionConfig(**{k: v for k, v in vars(args).items() if k in fields})
    config.part2 = asdict(part2_config(args))
    parse_video_views(config.part2["video_views"], config.n_views)  # fail before part 1, not after
    return config


def parse_resolution(text: str | None, width: int, height: int) -> tuple[int, int]:
    """``--resolution`` -> working (W, H): None = (width, height); "N" = longest side N; "WxH" = exactly."""
    if text is None or str(text).strip().lower() in ("", "full", "none"):
        return width, height
    text = str(text).strip().lower()
    if m := re.fullmatch(r"(\d+)\s*[x×,]\s*(\d+)", text):
        w, h = int(m[1]), int(m[2])
    elif text.isdigit():
        n = int(text)
        scale = min(1.0, n / max(width, height))
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
    else:
        raise UserError(f"--resolution {text!r} is not N or WxH", "give e.g. --resolution 640 or --resolution 1280x720")
    if min(w, h) < 16 or max(w, h) > 8192:
        raise UserError(f"--resolution {w}x{h} is out of range", "use sizes between 16 and 8192 pixels")
    return w, h


def pick_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked but CUDA is not available", "use --device cpu (or auto)")
    return name


def check_config(config: MotionConfig) -> None:
    if not 1 <= config.n_views <= 25:
        raise UserError(f"--n_views {config.n_views} is out of range", "use 1 to 25")
    if not 0.0 <= config.view_span <= 3.0:
        raise UserError(f"--view_span {config.view_span} is out of range", "use 0 to 3 (1 = the paper's angles)")
    if config.pivot_depth <= 0:
        raise UserError(f"--pivot_depth {config.pivot_depth} must be positive", "use e.g. 4.3")
    if config.inpaint_steps < 1:
        raise UserError("--inpaint_steps must be at least 1", "use e.g. 25")
    if not 8 <= config.inpaint_size <= 2048:
        raise UserError(f"--inpaint_size {config.inpaint_size} is out of range", "use 8 to 2048 (512 for SD 2)")
    if config.fov is not None and not 10.0 <= config.fov <= 150.0:
        raise UserError(f"--fov {config.fov} is out of range", "use 10 to 150 degrees")
    if config.threads < 0:
        raise UserError(f"--threads {config.threads} is negative", "use 0 (default) or a positive count")
    if config.inpaint == "model" and not config.inpaint_model:
        raise UserError("--inpaint model needs a model", "add --inpaint_model PATH_OR_HUB_ID, or use --inpaint opencv")
    if config.depth == "model" and not config.depth_model:
        raise UserError("--depth model needs a model", "add --depth_model PATH_OR_HUB_ID, or use --depth prior")
    from thirdparty.depth_transformers import resolve_source

    # A local model path that does not exist fails here, before any work (hub ids are tried when loading).
    if config.depth_model and config.depth != "prior":
        resolve_source(config.depth_model, "depth model")
    if config.inpaint_model and config.inpaint != "opencv":
        resolve_source(config.inpaint_model, "inpainting model")


# ----------------------------------------------------------------------------- inputs


def read_inputs(
    scene: ScenePaths, size_arg: str | None
) -> tuple[np.ndarray, np.ndarray, list[Hint], tuple[float, float]]:
    """Photo (uint8), regions and hints at the working resolution, and the scale from photo pixels."""
    made_by = MASK_CMD.replace("SCENE", str(scene.root))
    photo = to_uint8(read_rgb(scene.photo, made_by))
    regions = read_labels(scene.regions, made_by)
    hints = read_hints(scene.hints, made_by)
    h, w = photo.shape[:2]
    if regions.shape != (h, w):
        raise UserError(
            f"{scene.regions} is {regions.shape[1]}x{regions.shape[0]}, the photo {w}x{h}", f"re-run {made_by}"
        )
    ww, wh = parse_resolution(size_arg, w, h)
    if (ww, wh) != (w, h):
        photo = cv2.resize(photo, (ww, wh), interpolation=cv2.INTER_AREA if ww < w else cv2.INTER_CUBIC)
        regions = cv2.resize(regions.astype(np.uint16), (ww, wh), interpolation=cv2.INTER_NEAREST).astype(np.int32)
    sx, sy = ww / w, wh / h
    scaled = [
        Hint((h_.start[0] * sx, h_.start[1] * sy), (h_.end[0] * sx, h_.end[1] * sy), h_.region, h_.label)
        for h_ in hints
    ]
    return photo, regions, scaled, (sx, sy)


def make_inpainter(config: MotionConfig, device: str):
    """The hole filler chosen by --inpaint / --inpaint_model (OpenCV unless a model is named and loads)."""
    from motion.multiview import inpaint_opencv

    if config.inpaint == "opencv" or not config.inpaint_model:
        return inpaint_opencv, "opencv"
    from thirdparty.depth_transformers import ModelUnavailable
    from thirdparty.inpaint_diffusers import DEFAULT_PROMPT, DiffusersInpainter

    try:
        model = DiffusersInpainter(
            config.inpaint_model,
            device,
            config.inpaint_steps,
            config.inpaint_prompt or DEFAULT_PROMPT,
            config.seed,
            config.inpaint_size,
        )
    except ModelUnavailable as exc:
        if config.inpaint == "model":
            raise UserError(str(exc), "download it into ckpts/ and pass the folder, or use --inpaint opencv") from None
        warn(f"{exc}; using the classical OpenCV inpainter instead")
        return inpaint_opencv, "opencv"
    return model, f"model:{config.inpaint_model}"


# ----------------------------------------------------------------------------- outputs


def write_views(out: MotionPaths, part1: Part1) -> None:
    """depth.npy/png, cameras.json, views/NN*, points.ply, views.png.

    PNGs are written with fast zlib settings (level 1) in up to 9 threads: zlib releases the GIL.
    """
    from motion.depth import depth_preview
    from motion.multiview import contact_sheet

    write_npy(out.depth, part1.depth.astype(np.float32))
    write_png(out.depth_preview, depth_preview(part1.depth), compress_level=1)
    write_cameras(out.cameras, part1.cameras)
    out.views_dir.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> None:
        v = part1.views[i]
        write_png(out.view_image(i), v.image, compress_level=1)
        write_npy(out.view_depth(i), v.depth.astype(np.float32))
        write_mask(out.view_valid(i), v.valid)
        write_labels(out.view_regions(i), v.regions)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1) + 1) as pool:
        cloud = pool.submit(lambda: write_points(out.points, part1.points.to_cloud()))
        sheet = pool.submit(lambda: write_png(out.views_sheet, contact_sheet([v.image for v in part1.views])))
        list(pool.map(one, range(len(part1.views))))
        cloud.result()
        sheet.result()


# ----------------------------------------------------------------------------- the stage


def motion_part1(scene: ScenePaths, config: MotionConfig, run: StageRun, device: str) -> Part1:
    """Depth, cameras, views with inpainted holes and the merged point cloud (in memory)."""
    from motion.depth import estimate_depth
    from motion.multiview import build_views
    from motion.views import view_cameras
    from scene.cameras import source_camera

    photo, regions, hints, scale = read_inputs(scene, config.resolution)
    h, w = photo.shape[:2]
    source = source_camera(w, h, config.fov)
    with run.step("depth"):
        result = estimate_depth(photo, float(source.K[1, 1]), config.depth, config.depth_model, device)
    if result.method == "prior" and "fallback_from" not in result.info:  # a fallback has warned already
        warn(
            "depth: no depth model given or loaded; using the geometric landscape prior (sky far, ground "
            "receding to the horizon). Pass --depth_model for learned depth."
        )
    run.info["depth"] = {"method": result.method, **result.info}
    if result.method == "prior":  # shown as a banner in report.html
        source_model = result.info.get("fallback_from")
        run.info.setdefault("warnings", []).append(
            f"the depth prior replaced the depth model {source_model} (it could not be loaded)"
            if source_model
            else "depth from the geometric landscape prior (no depth model given): pass --depth_model for learned depth"
        )
    cameras = view_cameras(source, config.n_views, config.view_span, config.pivot_depth)
    with run.step("inpainter"):
        inpaint, inpaint_name = make_inpainter(config, device)
    with run.step("views"):
        views, points = build_views(photo, result.depth, regions, cameras, inpaint, device, track)
    run.info["backends"] = {"depth": result.method, "inpaint": inpaint_name, "device": str(device)}
    run.info["views"] = {
        "size": [w, h],
        "inpaint": inpaint_name,
        "points": len(points.xyz),
        "points_from_photo": h * w,
        "holes": [v.info["holes"] for v in views],
        "hole_fraction": [v.info["hole_fraction"] for v in views],
        "photo_fraction": [v.info["photo_fraction"] for v in views],
    }
    return Part1(scene, photo, result.depth, regions, hints, scale, views, cameras, points, device)


def motion_part2(out: MotionPaths, part1: Part1, config: MotionConfig, run: StageRun) -> None:
    """PART 2 HOOK (issue #6): 2D flow per view, 3D motion optimisation, looping video, written into ``out``."""
    from motion.stage import Part2Inputs, part2_config, run_part2

    run_part2(out, Part2Inputs.from_part1(part1), part2_config(config.part2), part1.device, run)


def run_stage(config: MotionConfig) -> dict:
    import torch

    scene = ScenePaths(config.input_dir)
    if not scene.root.is_dir():
        raise UserError(f"{scene.root} is not a folder", "give the scene folder with --input_dir")
    require_stage(scene, "mask")
    check_writable(scene.root)
    check_config(config)
    device = pick_device(config.device)
    if config.threads > 0:  # 0 keeps torch's default (one thread per core); results do not depend on it
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    run = StageRun(scene, "motion", asdict(config), inputs=[scene.photo, scene.mask, scene.regions, scene.hints])
    run.info["threads"] = torch.get_num_threads()
    try:
        part1 = motion_part1(scene, config, run, device)
        with staged_dir(scene.motion.dir) as tmp:
            out = MotionPaths(tmp)
            with run.step("write views"):
                write_views(out, part1)
            hold("motion:views")
            motion_part2(out, part1, config, run)
            run.invalidate()  # the previous outputs are about to be replaced
    except torch.cuda.OutOfMemoryError:
        raise UserError(
            f"out of GPU memory at {config.resolution or 'full'} resolution",
            "lower --resolution (e.g. --resolution 960)",
        ) from None
    return run.finish(outputs=[scene.motion.dir])


def build_parser() -> argparse.ArgumentParser:
    """The CLI: part 1's options (part 2 adds its own here)."""
    parser = make_parser(__doc__.splitlines()[0], prog="train_motion.py")
    add_part1_args(parser)
    from motion.stage import add_part2_args

    add_part2_args(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    config = config_from_args(build_parser().parse_args(argv))
    manifest = run_stage(config)
    views = manifest["info"]["views"]
    info(
        f"{config.input_dir}: {views['size'][0]}x{views['size'][1]}, {len(views['hole_fraction'])} views, "
        f"{views['points']} points (depth {manifest['info']['depth']['method']}, inpaint {views['inpaint']}) "
        f"in {manifest['timings_s']['total']:.1f} s -> {Path(config.input_dir) / 'motion'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
