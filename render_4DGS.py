"""Stage 3: render the trained 4D Gaussian scene along camera paths into looping videos.

    python render_4DGS.py --input_dir SCENE                         # every looping preset, one loop each
    python render_4DGS.py --input_dir SCENE --paths circle side --loops 2 --resolution 1280x720 --gif
    python render_4DGS.py --input_dir SCENE --camera_path my_path.json --export_ply

Writes SCENE/video/<path>.mp4 (and <path>.gif, frames/<path>/NNNN.png, ply/frame_NNNN.ply on request),
then manifests/render.json last. Camera paths and the custom path format: docs/camera_paths.md. On any
problem with the input: one line, exit code 2, nothing written.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from render.camera_paths import DEFAULT_PATHS, PRESETS, CameraPath, load_camera_path, resolve_presets
from render.videos import GIF_MAX_WIDTH, LoopModel, RenderOptions, parse_resolution, render_videos, resolve_device
from scene.io import remove_stale_temps
from scene.manifest import StageRun, check_writable, require_stage
from scene.paths import ScenePaths
from utils.cli import make_parser, run_main
from utils.console import info
from utils.errors import UserError


def _parser():
    parser = make_parser(__doc__.splitlines()[0], prog="render_4DGS.py")
    add = parser.add_argument
    add("--input_dir", required=True, help="scene folder (after train_4DGS.py)")
    add(
        "--paths",
        nargs="+",
        default=None,
        metavar="NAME",
        help=f"presets to render (space or comma separated; 'all' = {' '.join(DEFAULT_PATHS)}); "
        f"known: {', '.join(PRESETS)}. Default: all, or none when --camera_path is given",
    )
    add("--camera_path", default=None, metavar="FILE.json", help="a custom keyframed path (docs/camera_paths.md)")
    add("--loops", type=int, default=1, help="scene loops per video (default 1); frames = loops x frames per loop")
    add("--fps", type=float, default=30.0, help="video frame rate (default 30)")
    add("--resolution", default=None, help="WIDTHxHEIGHT or a scale of the photo's size (default: the photo's size)")
    add("--gif", action="store_true", help=f"also write <path>.gif (at most {GIF_MAX_WIDTH} pixels wide)")
    add("--save_frames", action="store_true", help="also write every frame as PNG under video/frames/<path>/")
    add("--export_ply", action="store_true", help="also write one standard 3DGS PLY per loop frame under video/ply/")
    add("--background", default="black", help="black, white or R,G,B in [0, 1] (default black)")
    add("--path_scale", type=float, default=None, help="unit of the presets' amplitudes (default: auto, see docs)")
    add("--iteration", type=int, default=None, help="trained iteration to load (default: the last)")
    add("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    add("--backend", default="auto", choices=("auto", "torch", "gsplat"), help="rasterizer (default auto)")
    return parser


def select_paths(names: list[str] | None, camera_path: str | None) -> tuple[CameraPath, ...]:
    """The presets named (``all`` = every looping preset) followed by the custom path, validated."""
    custom = load_camera_path(camera_path) if camera_path else None
    if names is None:
        names = [] if custom else list(DEFAULT_PATHS)
    flat = [n.strip() for name in names for n in name.split(",") if n.strip()]
    flat = [n for name in flat for n in (DEFAULT_PATHS if name == "all" else (name,))]
    paths: list[CameraPath] = list(resolve_presets(flat))
    if custom is not None:
        if custom.name in {p.name for p in paths}:
            raise UserError(
                f"the custom path's name {custom.name!r} clashes with a preset",
                'rename the file or set "name" in it',
            )
        paths.append(custom)
    if not paths:
        raise UserError("no camera path to render", f"give --paths (e.g. {DEFAULT_PATHS[0]}) or --camera_path")
    return tuple(paths)


def parse_background(text: str) -> tuple[float, float, float]:
    named = {"black": (0.0, 0.0, 0.0), "white": (1.0, 1.0, 1.0)}
    if text in named:
        return named[text]
    try:
        rgb = tuple(float(v) for v in text.split(","))
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in rgb):
        raise UserError(f"bad --background {text!r}", "use black, white or R,G,B with values in [0, 1]")
    return rgb  # type: ignore[return-value]


def check_numbers(loops: int, fps: float, path_scale: float | None) -> None:
    if loops < 1 or loops > 1000:
        raise UserError(f"--loops must be between 1 and 1000, got {loops}", "give a whole number of loops, e.g. 1")
    if not math.isfinite(fps) or fps <= 0 or fps > 240:
        raise UserError(f"--fps must be in (0, 240], got {fps:g}", "e.g. --fps 30")
    if path_scale is not None and (not math.isfinite(path_scale) or path_scale <= 0):
        raise UserError(f"--path_scale must be positive, got {path_scale:g}", "omit it for the automatic scale")


def load_model(scene: ScenePaths, device: Any, iteration: int | None) -> LoopModel:
    """The trained 4D scene (train_4DGS.py's outputs)."""
    from gaussians4d.model import load_trained

    return load_trained(scene, device=device, iteration=iteration)


def _config(args, options: RenderOptions, device: Any) -> dict[str, Any]:
    return {
        "paths": [p.name for p in options.paths],
        "camera_path": str(args.camera_path) if args.camera_path else None,
        "loops": options.loops,
        "fps": options.fps,
        "size": list(options.size) if options.size else None,
        "gif": options.gif,
        "save_frames": options.save_frames,
        "export_ply": options.export_ply,
        "background": list(options.background),
        "path_scale": options.path_scale,
        "iteration": args.iteration,
        "device": str(device),
        "backend": options.backend,
    }


def main(argv: Sequence[str] | None = None) -> int:
    start = time.perf_counter()
    args = _parser().parse_args(argv)
    scene = ScenePaths(args.input_dir)
    if not scene.root.is_dir():
        raise UserError(f"{scene.root} is not a folder", "give the scene folder with --input_dir")
    # Everything the user typed is checked before the model loads and before anything is written.
    check_numbers(args.loops, args.fps, args.path_scale)
    paths = select_paths(args.paths, args.camera_path)
    background = parse_background(args.background)
    device = resolve_device(args.device)
    require_stage(scene, "gaussians")
    check_writable(scene.root)
    model = load_model(scene, device, args.iteration)
    if not model.cameras:
        raise UserError(
            f"{scene.root} has no cameras for the trained model", "re-run train_motion.py and train_4DGS.py"
        )
    photo = model.cameras[0]
    options = RenderOptions(
        paths=paths,
        loops=args.loops,
        fps=args.fps,
        size=parse_resolution(args.resolution, photo.width, photo.height),
        gif=args.gif,
        save_frames=args.save_frames,
        export_ply=args.export_ply,
        background=background,
        backend=args.backend,
        path_scale=args.path_scale,
    )
    run = StageRun(scene, "render", _config(args, options, device), inputs=[scene.manifest("gaussians")])
    run.invalidate()
    remove_stale_temps(scene.video_dir)  # half-written videos of a killed run
    with run.step("render"):
        summary = render_videos(model, scene.video_dir, options, device)
    run.timings["bake"] = summary.bake_s
    run.timings["rasterize"] = summary.raster_s
    run.info.update(summary.info())
    run.finish(outputs=summary.outputs())
    w, h = summary.size
    info(
        f"{len(summary.results)} path(s) x {summary.results[0].frames} frames at {w}x{h}: "
        f"rendering {summary.render_fps:.1f} FPS ({summary.frames} frames in {summary.raster_s:.2f} s of "
        f"rasterization); total {time.perf_counter() - start:.1f} s -> {scene.video_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
