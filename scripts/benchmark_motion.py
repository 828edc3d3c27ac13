"""Timing and memory of train_motion.py on a real scene (targets: mom_scene_0 at 1280x720, 25 views, default
backends: stage 1 part 1 <= 60 s on the development CPU, <= 5 s on one GPU).

    .venv/bin/python scripts/benchmark_motion.py                       # CPU
    .venv/bin/python scripts/benchmark_motion.py --device cuda         # GPU machine
    .venv/bin/python scripts/benchmark_motion.py --part1_only --repeats 2

Copies the scene into a temporary folder, runs generate_mask once, then the train_motion stage
in-process (``--repeats`` times) and prints a table: the seconds of every step the stage's manifest
records (medians; part 2's steps appear here too once it is plugged in), the stage total, peak host
memory (max RSS of this process) and peak GPU memory. Also times ``zbuffer_splat`` alone on 1 M points
(the forward splat the looping video uses), after a warm-up.
"""

from __future__ import annotations

import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "scenes"


def prepare_scene(source: Path, work: Path) -> Path:
    """A writable copy of ``source`` (photo + annotation) after generate_mask."""
    from scripts.generate_mask import main as generate_mask

    folder = work / source.name
    folder.mkdir(parents=True)
    for item in source.iterdir():
        if item.is_file() and item.name.startswith("image"):
            shutil.copy(item, folder / item.name)
    if generate_mask(["--input_dir", str(folder)]) != 0:
        raise SystemExit(f"generate_mask failed on {folder}")
    return folder


def time_splat(device: str, n_points: int = 1_000_000, width: int = 1280, height: int = 720) -> float:
    """Median seconds of one zbuffer_splat of ``n_points`` random points (3 runs after a warm-up)."""
    from motion.splat import zbuffer_splat

    g = torch.Generator().manual_seed(0)
    uv = (torch.rand(n_points, 2, generator=g) * torch.tensor([width * 1.1, height * 1.1]) - 20).to(device)
    z = (torch.rand(n_points, generator=g) * 10 + 1).to(device)
    values = torch.rand(n_points, 3, generator=g).to(device)
    zbuffer_splat(uv, z, values, height, width)  # warm-up (CUDA context, kernels)
    times = []
    for _ in range(3):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        zbuffer_splat(uv, z, values, height, width)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_once(folder: Path, args) -> dict:
    import motion.stage
    import train_motion
    from motion.config import MotionConfig
    from utils.cli import config_from_args, config_parser

    argv = ["--input_dir", str(folder), "--n_views", str(args.n_views), "--device", args.device]
    argv += ["--threads", str(args.threads)]
    if args.resolution:
        argv += ["--resolution", args.resolution]
    for flag in ("train_iteration", "n_frames", "video_views"):  # flows, 3D motion, video
        if getattr(args, flag, None) is not None:
            argv += [f"--{flag}", str(getattr(args, flag))]
    parser = config_parser(MotionConfig, "train_motion.py", train_motion.__doc__)
    config = config_from_args(MotionConfig(), parser.parse_args(argv))
    if args.part1_only:
        motion.stage.make_motion = lambda *a, **k: None  # this process only: time the views alone
    if args.device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    manifest = motion.stage.run(config)
    manifest["wall_s"] = time.perf_counter() - start
    return manifest


def table(runs: list[dict], splat_s: float, args, peak_host_mb: float, peak_gpu_mb: float | None) -> str:
    steps = list(runs[0]["timings_s"])
    views = runs[0]["info"]["views"]
    lines = [
        f"scene {args.scene.name}, {views['size'][0]}x{views['size'][1]}, {len(views['holes'])} views, "
        f"{views['points']} points, device {args.device}, torch threads {torch.get_num_threads()}, "
        f"{len(runs)} run(s), medians",
        "",
        "| step | seconds |",
        "| --- | ---: |",
    ]
    for step in steps:
        lines.append(f"| {step} | {statistics.median(r['timings_s'][step] for r in runs):.2f} |")
    lines.append(f"| wall (in-process, imports excluded) | {statistics.median(r['wall_s'] for r in runs):.2f} |")
    lines.append(f"| peak host memory (max RSS), MB | {peak_host_mb:.0f} |")
    if peak_gpu_mb is not None:
        lines.append(f"| peak GPU memory (allocated), MB | {peak_gpu_mb:.0f} |")
    lines.append(f"| zbuffer_splat, 1 M points at 1280x720 | {splat_s:.3f} |")
    fit = runs[0]["info"].get("motion")
    if fit and fit["epe_px_per_frame"] is not None:
        lines.append(
            f"\n3D motion: {fit['moving_points']} moving points, final multi-view EPE "
            f"{fit['epe_px_per_frame']:.4f} px/frame, videos of views {[v['view'] for v in fit['videos']]}"
        )
    return "\n".join(lines)


def convergence_table(device: str, n_points: int = 20000, steps: Sequence[int] = (0, 25, 50, 100, 200)) -> str:
    """Final EPE of the 3D motion optimisation vs steps on a problem with a known answer (motion/motion3d.py).

    Rows: ours (Gauss-Newton start + Adam), Adam from zero, and plain SGD on the mean-reduced L1 in
    world units from zero (the original's optimiser; lr 0.01).
    """
    from motion.config import FitConfig
    from motion.motion3d import end_point_error, fit_motion, projected_flow, synthetic_problem

    xyz, _, cams, targets, visible = synthetic_problem(n_points, 320, 180)
    xyz, targets, visible = xyz.to(device), targets.to(device), visible.to(device)
    lines = [
        f"3D motion optimisation, {n_points} points x {len(cams)} views, known motion (targets consistent), "
        f"device {device}: final EPE px/frame (seconds)",
        "",
        "| steps | " + " | ".join(str(s) for s in steps) + " |",
        "| --- |" + " ---: |" * len(steps),
    ]
    for name, init, lr in (("GN start + Adam (ours)", "gauss_newton", 0.02), ("Adam from zero", "zero", 0.2)):
        cells = []
        for n in steps:
            fit = fit_motion(
                xyz, cams, targets, visible, None, FitConfig(train_iteration=n, motion_init=init, motion_lr=lr)
            )
            cells.append(f"{fit.epe:.4f} ({fit.seconds:.1f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cells = []
    for n in steps:
        motion = torch.zeros_like(xyz, requires_grad=True)
        opt = torch.optim.SGD([motion], lr=0.01)
        start = time.perf_counter()
        for _ in range(n):
            pred = projected_flow(xyz, motion, cams)
            loss = ((pred - targets).abs().sum(-1)[visible]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            epe = end_point_error(projected_flow(xyz, motion, cams), targets, visible)
        cells.append(f"{epe:.4f} ({time.perf_counter() - start:.1f})")
    lines.append("| SGD, mean L1, world units (original) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from utils.cli import make_parser

    parser = make_parser(__doc__.splitlines()[0], prog="benchmark_motion.py")
    parser.add_argument("--scene", type=Path, default=SHARED / "mom_scene_0", help="folder with image.png + image.json")
    parser.add_argument("--resolution", default=None, help="as train_motion.py --resolution (default: full size)")
    parser.add_argument("--n_views", type=int, default=25)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--part1_only", action="store_true", help="skip part 2 (flows, 3D motion, video)")
    parser.add_argument("--train_iteration", type=int, default=None, help="part 2: 3D motion steps (default: its own)")
    parser.add_argument("--n_frames", type=int, default=None, help="part 2: frames of the loop (default: its own)")
    parser.add_argument("--video_views", default=None, help='part 2: views to animate ("0", "all"; default "0")')
    parser.add_argument(
        "--convergence", action="store_true", help="only print the 3D motion convergence table (synthetic, fast)"
    )
    args = parser.parse_args(argv)
    if not (args.scene / "image.json").is_file():
        raise SystemExit(f"{args.scene} has no image.json (set --scene)")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available here")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.convergence:
        print(convergence_table(args.device))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-motion-") as tmp:
        folder = prepare_scene(args.scene, Path(tmp))
        if args.device == "cuda":
            torch.zeros(1, device="cuda")  # CUDA context outside the timings
            torch.cuda.reset_peak_memory_stats()
        runs = [run_once(folder, args) for _ in range(max(1, args.repeats))]
        peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else None
    peak_host = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    splat_s = time_splat(args.device)
    print(table(runs, splat_s, args, peak_host, peak_gpu))
    return 0


if __name__ == "__main__":
    sys.exit(main())
