"""Benchmark train_4DGS: wall time, peak memory, PSNR on training and held-out frames; prints a table.

    # GPU machine, mom_scene_0 at 1280x720 (stage 0 and 1 are run first, untimed, in a work folder)
    python scripts/benchmark_4dgs.py --scene ../shared/scenes/mom_scene_0 --preset gpu --flow_scale 2
    # this machine, the demo with the CPU preset
    python scripts/benchmark_4dgs.py --scene demo/scene_0 --preset cpu --flow_scale 2
    # a scene that already has stage 1's outputs
    python scripts/benchmark_4dgs.py --input_dir SCENE --preset cpu
    # no stage 1 needed: the tests' consistent synthetic scene (Gaussians rendered from a known motion)
    python scripts/benchmark_4dgs.py --synthetic 160x96 --preset cpu

Any other option is a train_4DGS option (e.g. --resolution 320 --fine_iterations 800).
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from scene.paths import ScenePaths  # noqa: E402
from utils.cli import make_parser, run_main  # noqa: E402
from utils.errors import UserError  # noqa: E402


def _prepare(source: Path, work: Path, motion_args: list[str]) -> ScenePaths:
    """Copy the photo + annotation to ``work`` and run stages 0 and 1 there (not timed)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for name in ("image.json", "image.png", "image.jpg"):
        if (source / name).is_file():
            shutil.copy2(source / name, work / name)
    for script, extra in (("scripts/generate_mask.py", []), ("train_motion.py", motion_args)):
        cmd = [sys.executable, str(ROOT / script), "--input_dir", str(work), *extra]
        print("$", " ".join(cmd), flush=True)
        if subprocess.run(cmd, cwd=ROOT).returncode != 0:
            raise UserError(f"{script} failed", "see its output above")
    return ScenePaths(work)


def _synthetic(size: str, work: Path) -> ScenePaths:
    from tests.gaussians4d.fixture import make_stage1_scene

    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise UserError(f"--synthetic {size} is not WxH", "e.g. --synthetic 160x96") from None
    if work.exists():
        shutil.rmtree(work)
    return make_stage1_scene(work, w, h, n_frames=16)


def _warm_up_gsplat() -> None:
    """gsplat JIT-builds its CUDA extension on first use (about a minute): do it before timing."""
    from gaussian_renderer import render

    dev = torch.device("cuda")
    n = 16
    render(
        torch.randn(n, 3, device=dev) + torch.tensor([0.0, 0.0, 4.0], device=dev),
        torch.tensor([1.0, 0, 0, 0], device=dev).repeat(n, 1),
        torch.full((n, 3), 0.1, device=dev),
        torch.full((n,), 0.5, device=dev),
        torch.rand(n, 3, device=dev),
        torch.eye(4, device=dev)[None],
        torch.tensor([[[32.0, 0, 16], [0, 32, 16], [0, 0, 1]]], device=dev),
        32,
        32,
        backend="gsplat",
    )
    torch.cuda.synchronize()


def _peak_cpu_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def _train_seconds(scene: ScenePaths) -> float:
    """Seconds of the training loop, as the stage's manifest records them."""
    import json

    return float(json.loads(scene.manifest("gaussians").read_text())["timings_s"]["train"])


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'figure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    return "\n".join(lines + [f"| {k.ljust(width)} | {v} |" for k, v in rows])


def main(argv=None) -> int:
    import train_4DGS
    from gaussians4d.stage import run

    parser = make_parser("Benchmark train_4DGS on one scene; other options are train_4DGS.py's.")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--input_dir", type=Path, help="scene folder that already has stage 1's outputs")
    where.add_argument("--scene", type=Path, help="folder with image.png + image.json: stages 0-1 run first")
    where.add_argument("--synthetic", help="WxH: the tests' synthetic stage-1 scene at that size")
    parser.add_argument("--work", type=Path, default=None, help="work folder for --scene/--synthetic")
    parser.add_argument("--motion_args", default="", help="extra train_motion.py options (quoted)")
    args, train_args = parser.parse_known_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_4dgs_")) / "scene"
    if args.input_dir:
        scene = ScenePaths(args.input_dir)
    elif args.scene:
        scene = _prepare(args.scene, work, args.motion_args.split())
    else:
        scene = _synthetic(args.synthetic, work)
    cfg = train_4DGS.build_config([*train_args, "--input_dir", str(scene.root), "--fresh"])
    cuda = torch.cuda.is_available() and cfg.run.device != "cpu"
    if cuda:
        _warm_up_gsplat()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    metrics = run(cfg)
    wall = time.perf_counter() - start
    if metrics is None:
        raise UserError("training stopped early (--stop_after)", "benchmark without --stop_after")
    w, h = metrics["resolution"]
    held = metrics["psnr_heldout"]
    rows = [
        ("scene", str(args.input_dir or args.scene or f"synthetic {args.synthetic}")),
        ("device", torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"),
        ("preset", cfg.preset),
        ("training resolution", f"{w}x{h}"),
        ("iterations", str(metrics["iterations"])),
        ("Gaussians (moving)", f"{metrics['n_gaussians']} ({metrics['n_moving']})"),
        ("wall time, whole stage (s)", f"{wall:.1f}"),
        ("iterations / s", f"{metrics['iterations'] / max(_train_seconds(scene), 1e-9):.1f}"),
        ("peak GPU memory (GB)", f"{torch.cuda.max_memory_allocated() / 2**30:.2f}" if cuda else "-"),
        ("peak CPU memory (GB)", f"{_peak_cpu_gb():.2f}"),
        ("PSNR training images (dB)", f"{metrics['psnr_train']:.2f}"),
        ("PSNR t=0 views (dB)", f"{metrics['psnr_views']:.2f}"),
        ("PSNR held-out video frames (dB)", "-" if held is None else f"{held:.2f}"),
        ("loop frames (video frames)", f"{metrics['n_frames']} ({metrics['n_video_frames']})"),
    ]
    print(_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
