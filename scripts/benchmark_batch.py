"""Benchmark the batch runner on the CPU: N small procedural scenes on a LocalCluster of 2 workers vs 1.

    python scripts/benchmark_batch.py                      # 4 scenes of 160x96, about 5 minutes on 2 cores
    python scripts/benchmark_batch.py --scenes 8 --workers 4

After one untimed warm-up scene, each run gets its own fresh copy of the scenes (nothing is skipped as
fresh) and the whole pipeline with small CPU options (below); the stages of a run share the machine's
cores (OMP_NUM_THREADS = cores / workers, as scripts/batch.py sets). Prints a markdown table: wall time
of each run (cluster start-up apart), the speed-up, the mean seconds per stage, and the load average
before and after each run.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import make_parser, run_main
from utils.errors import require

SMALL = {  # small enough for a 2-core CPU: one scene is about 40 s, 4dgs most of it
    "motion": ("--depth", "prior", "--n_views", "5", "--n_frames", "16", "--train_iteration", "60", "--seed", "0"),
    "gaussians": (
        "--preset", "cpu", "--resolution", "0", "--max_points", "1500", "--coarse_iterations", "60",
        "--fine_iterations", "60", "--preview_every", "0", "--eval_max_images", "2", "--device", "cpu",
    ),
    "render": ("--paths", "static,circle", "--fps", "10", "--device", "cpu"),
}  # fmt: skip


def _make_scenes(folder: Path, count: int, width: int, height: int) -> list[Path]:
    from annotation.procedural import make_landscape, save_scene

    return [save_scene(make_landscape(width, height, seed=i), folder / f"scene_{i}") for i in range(count)]


def _warm_up(folder: Path, width: int, height: int) -> None:
    """One untimed scene first, in this process: the first run of the stages after a while pays for reading
    Python, torch and the project from disk (seconds per stage), which would count against whichever run is first."""
    from batch.stages import STAGE_SCRIPTS, TaskOptions, run_scene

    scene = _make_scenes(folder, 1, width, height)[0]
    result = run_scene(str(scene), "warm_up", TaskOptions(tuple(STAGE_SCRIPTS), dict(SMALL)))
    require(result.status == "ok", f"the warm-up scene failed: {result.error}", f"see {scene}")


def _one_run(scenes: list[Path], workers: int, log_dir: Path) -> dict:
    from batch.gpus import threads_per_worker
    from batch.runner import local_client, run_batch
    from batch.scenes import scene_names
    from batch.stages import STAGE_SCRIPTS, TaskOptions

    threads = threads_per_worker(workers)
    options = TaskOptions(tuple(STAGE_SCRIPTS), dict(SMALL), gpu_ids=(), threads=threads, log_dir=str(log_dir))
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with local_client(workers) as client:
        started = time.perf_counter()
        results = run_batch(client, scenes, scene_names(scenes), options)
        wall = time.perf_counter() - started
    per_stage = {s: sum(r.seconds.get(s, 0.0) for r in results) / len(results) for s in STAGE_SCRIPTS}
    return {
        "workers": workers,
        "threads": threads,
        "start_s": started - start,
        "wall_s": wall,
        "ok": sum(r.status == "ok" for r in results),
        "per_stage": per_stage,
        "load": (load_before, os.getloadavg()[0]),
    }


def _table(runs: list[dict], count: int) -> str:
    base = runs[0]["wall_s"]
    lines = [
        "| workers | threads per stage | cluster start s | wall s | scenes ok | s per scene | speed-up "
        "| mean s per scene: mask / motion / 4dgs / render | load avg before → after |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in runs:
        stages = " / ".join(f"{v:.1f}" for v in r["per_stage"].values())
        lines.append(
            f"| {r['workers']} | {r['threads']} | {r['start_s']:.1f} | {r['wall_s']:.1f} | {r['ok']}/{count} "
            f"| {r['wall_s'] / count:.1f} | {base / r['wall_s']:.2f}× | {stages} "
            f"| {r['load'][0]:.2f} → {r['load'][1]:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = make_parser("Benchmark the batch runner: N scenes on 1 worker vs several.")
    parser.add_argument("--scenes", type=int, default=4, help="number of procedural scenes")
    parser.add_argument("--width", type=int, default=160, help="photo width")
    parser.add_argument("--height", type=int, default=96, help="photo height")
    parser.add_argument("--workers", type=int, default=2, help="workers of the parallel run (vs 1)")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a temp folder, removed)")
    args = parser.parse_args(argv)
    require(args.scenes >= 1 and args.workers >= 2, "--scenes must be >= 1 and --workers >= 2", "see --help")
    require(min(args.width, args.height) >= 32, "--width and --height must be at least 32", "give a larger size")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the prior depth: no model, no network
    work = args.work or Path(tempfile.mkdtemp(prefix="mom_batch_bench_"))
    runs = []
    try:
        _warm_up(work / "warm_up", args.width, args.height)
        for workers in (1, args.workers):
            folder = work / f"workers_{workers}"
            shutil.rmtree(folder, ignore_errors=True)
            scenes = _make_scenes(folder / "scenes", args.scenes, args.width, args.height)
            runs.append(_one_run(scenes, workers, folder / "logs"))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.scenes} scenes of {args.width}x{args.height}, {len(os.sched_getaffinity(0))} cores; options:")
    for stage, extra in SMALL.items():
        print(f"- {stage}: `{' '.join(extra)}`")
    print()
    print(_table(runs, args.scenes))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
