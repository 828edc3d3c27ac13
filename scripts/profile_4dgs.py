"""Profile train_4DGS's iterations on a scene that has stage 1's outputs; prints where the time goes.

    python scripts/profile_4dgs.py --input_dir SCENE --iterations 100            # GPU machine (gsplat)
    python scripts/profile_4dgs.py --input_dir SCENE --iterations 10 --device cpu

For the coarse and for the fine stage: wall milliseconds per iteration (no profiler attached, CUDA
synchronised), then a torch.profiler table of the top operators by self device time and by self CPU
time. ``--find_syncs`` (CUDA) also lists where the iterations wait for the GPU: each synchronising call
with the innermost frames of this project and of the library that made it, counted per iteration.
Nothing is written to the scene folder (the trainer works in a temporary folder). Any other
option is a train_4DGS option.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from utils.cli import make_parser, run_main  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _steps(trainer, first: int, n: int) -> None:
    """Iterations first .. first + n - 1, each reading the previous one's loss back as Trainer.train does."""
    previous = None
    for it in range(first, first + n):
        loss, _, _ = trainer.step(it)
        if previous is not None:
            float(previous)
        previous = loss
    _sync(trainer.device)


def _timed(trainer, first: int, n: int) -> float:
    """Milliseconds per iteration over iterations first .. first + n - 1."""
    _sync(trainer.device)
    start = time.perf_counter()
    _steps(trainer, first, n)
    return (time.perf_counter() - start) / n * 1000


def _profiled(trainer, first: int, n: int, rows: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if trainer.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        _steps(trainer, first, n)
    table = prof.key_averages()
    by_device = "self_cuda_time_total" if trainer.device.type == "cuda" else "self_cpu_time_total"
    parts = [table.table(sort_by=by_device, row_limit=rows)]
    if trainer.device.type == "cuda":
        parts.append(table.table(sort_by="self_cpu_time_total", row_limit=rows))
    return "\n".join(parts)


def _syncs(trainer, first: int, n: int) -> str:
    """Where iterations first .. first + n - 1 synchronise with the GPU (torch's sync debug mode)."""
    import traceback
    import warnings
    from collections import Counter

    found: Counter[str] = Counter()

    def hook(message, category, filename, lineno, file=None, line=None):
        frames = traceback.extract_stack()[:-1]
        ours = [f for f in frames if f.filename.startswith(str(ROOT)) and "profile_4dgs" not in f.filename]
        theirs = [f for f in frames if not f.filename.startswith(str(ROOT))]
        where = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in (ours[-1:] + theirs[-1:])]
        found[" <- ".join(reversed(where)) or str(message)[:80]] += 1

    shown = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = hook
        torch.cuda.set_sync_debug_mode("warn")
        try:
            _steps(trainer, first, n)
        finally:
            torch.cuda.set_sync_debug_mode("default")
            warnings.showwarning = shown
    rows = [f"{count / n:6.2f} / it  {where}" for where, count in found.most_common()]
    return "\n".join(["synchronising calls (innermost library frame <- innermost project frame):", *rows])


def main(argv=None) -> int:
    import train_4DGS
    from gaussians4d.data import load_data
    from gaussians4d.stage import build_model
    from gaussians4d.trainer import Trainer
    from scene.paths import ScenePaths
    from utils.device import resolve_device

    parser = make_parser("Profile train_4DGS iterations; other options are train_4DGS.py's.")
    parser.add_argument("--iterations", type=int, default=100, help="iterations timed and profiled per stage")
    parser.add_argument("--warmup", type=int, default=20, help="iterations run first, untimed, per stage")
    parser.add_argument("--rows", type=int, default=18, help="rows of each profiler table")
    parser.add_argument("--find_syncs", action="store_true", help="also list where iterations wait for the GPU (CUDA)")
    args, train_args = parser.parse_known_args(argv)
    cfg = train_4DGS.build_config(train_args)
    scene = ScenePaths(cfg.input_dir)
    device = resolve_device(cfg.run.device)
    data = load_data(scene, cfg, device)
    model = build_model(scene, cfg, data, device)
    print(f"{scene.root}: {len(model)} Gaussians, training at {data.width}x{data.height}, preset {cfg.preset}")
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(cfg, data, model, Path(folder), {"config_key": "", "motion_manifest": ""})
        coarse = cfg.optim.coarse_iterations
        stages = [("coarse", 1), ("fine", coarse + 1)]
        for name, first in stages:
            n, w = args.iterations, args.warmup
            if name == "coarse" and w + 2 * n + (min(n, 10) if args.find_syncs else 0) > coarse:
                print(f"coarse stage: only {coarse} iterations; profiling what fits")
                n = max((coarse - w) // 2, 1)
            trainer.step(first)  # the first call of a stage pays one-time costs (gsplat JIT, allocator)
            _timed(trainer, first + 1, w)
            ms = _timed(trainer, first + 1 + w, n)
            print(f"\n== {name}: {ms:.2f} ms/iteration ({1000 / ms:.1f} it/s), {len(model)} Gaussians ==")
            print(_profiled(trainer, first + 1 + w + n, n, args.rows))
            if args.find_syncs and device.type == "cuda":
                print(_syncs(trainer, first + 1 + w + 2 * n, min(n, 10)))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
