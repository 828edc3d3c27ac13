"""How the stage-1 loop looks, as numbers: texture retention, pulse, seam and measured motion of view 0's video.

    python scripts/benchmark_loop.py --scene ../shared/scenes/mom_scene_0 --scene ../shared/scenes/cine_0 \\
        --scene demo/scene_0 --loops layers crossfade

For every scene (a folder with image.png + image.json, copied to a work folder: the source is never
written) it runs generate_mask and train_motion once, then animates view 0 again from the files under
each ``--loops`` schedule (scene/loop.py) and prints one table row each (scene/quality.py's figures).
``--strips DIR`` also writes frames 0, N/4 and N/2 side by side per row, to look at.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from utils.cli import make_parser, run_main  # noqa: E402
from utils.errors import UserError  # noqa: E402

HEADER = (
    "| scene | loop | frames | retention min / median / max | pulse | seam | speed ratio | direction cos | s/frame |"
)


def prepare(source: Path, work: Path, motion_args: list[str]) -> Path:
    """A copy of the scene's annotation, through generate_mask and train_motion."""
    folder = work / source.name
    folder.mkdir(parents=True)
    for name in ("image.json", "image.png", "image.jpg"):
        if (source / name).is_file():
            shutil.copy2(source / name, folder / name)
    for script, extra in (("scripts/generate_mask.py", []), ("train_motion.py", motion_args)):
        cmd = [sys.executable, str(ROOT / script), "--input_dir", str(folder), *extra]
        if subprocess.run(cmd, cwd=ROOT).returncode != 0:
            raise UserError(f"{script} failed on {folder}", "see its output above")
    return folder


def animate(folder: Path, mode: str, cycle: int, transition: float) -> tuple[list[np.ndarray], dict, float]:
    """View 0's loop under ``mode`` from the scene's files: frames (uint8), the inputs of the quality figures."""
    from motion.animate import LoopAnimator, view_animation_inputs
    from motion.config import VideoConfig
    from motion.outputs import read_views
    from scene.io import read_npy, to_uint8
    from scene.paths import ScenePaths

    scene = ScenePaths(folder)
    manifest = json.loads(scene.manifest("motion").read_text())
    views = read_views(scene, scene.motion)
    moving = manifest["info"]["motion"]["moving_regions"]
    flows = torch.as_tensor(read_npy(scene.motion.flow(0)))[None]
    motion = read_npy(scene.motion.motion3d)
    video = VideoConfig(n_frames=manifest["config"]["video"]["n_frames"], loop=mode, cycle=cycle, transition=transition)
    camera = views.photo.camera
    schedule = video.schedule(manifest["config"]["seed"], (camera.width, camera.height))
    inputs = view_animation_inputs(views, 0, flows, motion, moving, schedule, "cpu")
    animator = LoopAnimator(schedule=schedule, **inputs)
    start = time.perf_counter()
    frames = [to_uint8(f.numpy()) for f in animator.frames()]
    seconds = (time.perf_counter() - start) / len(frames)
    figures = {"photo": views.photo.image, "mask": inputs["mask"].numpy(), "flow": inputs["flow"].numpy()}
    return frames, figures | {"cycle": schedule.cycle}, seconds


def row(name: str, mode: str, frames, inputs: dict, seconds: float) -> str:
    from scene.quality import video_quality

    q = video_quality(frames, inputs["photo"], inputs["mask"], inputs["flow"])
    r, m = q["retention"], q["motion"]
    label = f"{mode} (C = {inputs['cycle']})" if mode == "layers" else mode
    return (
        f"| {name} | {label} | {len(frames)} | {r['min']:.2f} / {r['median']:.2f} / {r['max']:.2f} | "
        f"{r['pulse']:.2f} | {q['seam_ratio']:.2f} | {m['speed_ratio']:.2f} | {m['direction_cosine']:.3f} | {seconds:.2f} |"
    )


def strip(frames: list[np.ndarray], path: Path) -> None:
    """Frames 0, N/4 and N/2 side by side."""
    from scene.io import write_png

    n = len(frames)
    write_png(path, np.concatenate([frames[0], frames[n // 4], frames[n // 2]], axis=1))


def main(argv=None) -> int:
    parser = make_parser("Texture retention, pulse, seam and motion of the stage-1 loop of view 0.")
    parser.add_argument("--scene", type=Path, action="append", required=True, help="folder with image.png + image.json")
    parser.add_argument("--loops", nargs="+", default=["layers", "crossfade"], choices=["layers", "crossfade"])
    parser.add_argument("--cycle", type=int, default=0, help="as train_motion.py --cycle")
    parser.add_argument("--transition", type=float, default=0.1, help="as train_motion.py --transition")
    parser.add_argument("--motion_args", default="--video_views 0", help="extra train_motion.py options (quoted)")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--strips", type=Path, default=None, help="folder for frame strips (PNG)")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_loop_"))
    rows = [HEADER, "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for source in args.scene:
        folder = prepare(source, work, shlex.split(args.motion_args))
        for mode in args.loops:
            frames, inputs, seconds = animate(folder, mode, args.cycle, args.transition)
            rows.append(row(source.name, mode, frames, inputs, seconds))
            print(rows[-1], flush=True)
            if args.strips:
                args.strips.mkdir(parents=True, exist_ok=True)
                strip(frames, args.strips / f"{source.name}_{mode}.png")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
