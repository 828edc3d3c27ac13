"""Timing of render_4DGS.py: rasterization FPS (rendering only) and the total time to render and encode.

    # this machine: per-frame time at 640x360 (synthetic scenes, a few frames of one path)
    .venv/bin/python scripts/benchmark_render.py --resolution 640x360 --gaussians 20000 100000 --frames 3 --paths side
    # ... or Gaussians initialised from a stage-1 scene (train_motion.py's output), as train_4DGS.py starts
    .venv/bin/python scripts/benchmark_render.py --resolution 640x360 --points demo/scene_0 --frames 3 --paths side
    # GPU machine: a trained scene at 1280x720, every default path, one loop each (+ synthetic sizes)
    python scripts/benchmark_render.py --scene ../shared/scenes/mom_scene_0 --resolution 1280x720 --gaussians 200000 1000000

Targets (issue 8): GPU, mom_scene_0 at 1280x720: >= 300 FPS rasterization and every default path encoded
in <= 30 s in total; this machine: <= 2 s per 640x360 frame. Synthetic scenes are tests/render/stand_in.py's
stand-in (random Gaussians filling the view at depths 2..10, a third of them swaying, SH degree 3).
Prints a Markdown table; "total" is bake + rasterization + encoding of all videos (written to a temporary
folder), "ms/frame" and "FPS" are rasterization only (after one untimed warm-up frame on CUDA); medians over
--repeats runs.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from render.camera_paths import DEFAULT_PATHS, resolve_presets
from render.videos import LoopModel, RenderOptions, render_videos
from scene.cameras import image_size
from scene.paths import ScenePaths
from tests.render.stand_in import StandInLoop
from utils.cli import make_parser, run_main
from utils.device import resolve_device

HEADER = "| scene | Gaussians | device | backend | size | paths x frames | ms/frame | FPS | bake s | total s |"


def _row(name: str, model: LoopModel, options: RenderOptions, device: torch.device, repeats: int = 1) -> str:
    """One table row: medians over ``repeats`` full runs (bake + render + encode into a temporary folder)."""
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            summary = render_videos(model, Path(tmp), options, device)
            runs.append((summary, time.perf_counter() - start))
    summary = runs[0][0]
    ms = statistics.median(1000.0 * s.raster_s / s.frames for s, _ in runs)
    w, h = summary.size
    return (
        f"| {name} | {summary.n_gaussians} | {device} | {options.backend} | {w}x{h} | "
        f"{len(summary.results)} x {summary.results[0].frames} | {ms:.1f} | {1000.0 / ms:.1f} | "
        f"{statistics.median(s.bake_s for s, _ in runs):.2f} | {statistics.median(t for _, t in runs):.2f} |"
    )


def _from_points(folder: str, n_frames: int, max_points: int, sh_degree: int) -> LoopModel:
    """Untrained Gaussians initialised from a stage-1 scene exactly as train_4DGS.py starts (point subsample,
    3-NN scales, opacity 0.5): a realistic count and size distribution without the training time."""
    import numpy as np

    from gaussians4d.deformation import DeformationConfig
    from gaussians4d.model import init_gaussians
    from motion.config import VideoConfig
    from scene.io import read_cameras, read_npy, read_points

    m = ScenePaths(folder).motion
    cloud, cameras = read_points(m.points), read_cameras(m.cameras)
    motion = read_npy(m.motion3d, (len(cloud), 3)) if m.motion3d.is_file() else np.zeros((len(cloud), 3), np.float32)
    schedule = VideoConfig(n_frames=n_frames).schedule(0, (cameras[0].width, cameras[0].height))
    model = init_gaussians(
        cloud, motion, schedule, cameras[0], max_points=max_points, sh_degree=sh_degree, init_opacity=0.5,
        deformation=DeformationConfig(), flow_scale=1.0,
    ).export()  # fmt: skip
    model.cameras = cameras
    return model


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__.splitlines()[0], prog="benchmark_render.py")
    parser.add_argument("--scene", action="append", default=[], help="a trained scene folder (repeatable)")
    parser.add_argument("--points", action="append", default=[], help="a stage-1 scene: untrained init (repeatable)")
    parser.add_argument("--max_points", type=int, default=60000, help="Gaussians of a --points scene")
    parser.add_argument("--gaussians", type=int, nargs="*", default=[], help="synthetic scene sizes")
    parser.add_argument("--frames", type=int, default=60, help="frames per loop of the synthetic scenes")
    parser.add_argument("--resolution", default="640x360")
    parser.add_argument("--paths", nargs="+", default=list(DEFAULT_PATHS))
    parser.add_argument("--loops", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "gsplat"))
    parser.add_argument("--repeats", type=int, default=1, help="runs per row (medians are reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    size = image_size(args.resolution, 16, 16, upscale=True)  # WxH: exactly that size
    options = RenderOptions(paths=tuple(resolve_presets(args.paths)), loops=args.loops, size=size, backend=args.backend)
    rows = []
    for folder in args.scene:
        from gaussians4d.model import load_trained

        scene = ScenePaths(folder)
        rows.append(_row(scene.root.name, load_trained(scene, device=device), options, device, args.repeats))
        print(rows[-1], flush=True)
    for folder in args.points:
        model = _from_points(folder, args.frames, args.max_points, sh_degree=1)
        rows.append(_row(f"{Path(folder).name} (init)", model, options, device, args.repeats))
        print(rows[-1], flush=True)
    for n in args.gaussians:
        model = StandInLoop(n_gaussians=n, width=size[0], height=size[1], n_frames=args.frames, sh_degree=3)
        rows.append(_row(f"synthetic {n}", model, options, device, args.repeats))
        print(rows[-1], flush=True)
    print()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads" + (
        f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""))  # fmt: skip
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
