"""Run many scenes through the pipeline on Dask distributed, one task per scene; write a summary table.

    python scripts/batch.py --scenes scenes/                       # every subfolder of scenes/ holding image.json
    python scripts/batch.py --scenes 'shots/*/scene' --stages mask,motion
    python scripts/batch.py --scenes scenes/ --scheduler tcp://head:8786      # an existing cluster

Each scene runs its stage scripts one after the other (generate_mask, train_motion, train_4DGS --flow_scale 2,
render_4DGS); stages whose outputs are complete and fresh are not run again, so re-running the same command
only does what is missing. A failing scene is one line and the batch goes on. At the end:
batch_summary.csv and batch_summary.html in the scenes folder (or --summary DIR). Exit code 1 when a scene
failed. Guide: docs/batch.md.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import make_parser, run_main
from utils.errors import UserError, require

STAGE_ARGS = ("mask_args", "motion_args", "gaussians_args", "render_args")


def _parser():
    first, _, rest = __doc__.strip().partition("\n")
    parser = make_parser(first, prog="batch.py", epilog=rest.strip("\n"))
    add = parser.add_argument
    add("--scenes", required=True, help="a scene folder, a folder of scene folders, or a quoted glob")
    add("--stages", default="mask,motion,4dgs,render", help="comma-separated subset of mask,motion,4dgs,render")
    add("--scheduler", default=None, help="a running Dask scheduler: tcp://host:8786 or its scheduler file")
    add("--workers", type=int, default=None, help="local workers (default: 1 on CPU, one per GPU with CUDA)")
    add("--gpus", default="auto", help="auto (every GPU CUDA sees) or N; 0 runs everything on the CPU")
    for key in STAGE_ARGS:
        add(f"--{key}", default="", help=f"extra options for the {key.split('_')[0]} stage (one quoted string)")
    add("--eval_frames", type=int, default=60, help="frames of stage 1's video compared with SCENE/gt.mp4")
    add("--summary", type=Path, default=None, help="folder for batch_summary.csv/.html (default: the scenes')")
    add("--force", action="store_true", help="run every requested stage, even when its outputs are fresh")
    add("--connect_timeout", type=float, default=10.0, help="seconds to wait for --scheduler and its workers")
    return parser


def _extra_args(args) -> dict[str, tuple[str, ...]]:
    out = {}
    for key in STAGE_ARGS:
        try:
            out[key.removesuffix("_args")] = tuple(shlex.split(getattr(args, key)))
        except ValueError as exc:
            raise UserError(f"--{key} {getattr(args, key)!r} cannot be split ({exc})", "check its quotes") from None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from batch import gpus as gpu
    from batch.runner import local_client, remote_client, run_batch
    from batch.scenes import find_scenes, scene_names, summary_root
    from batch.stages import FAILED, TaskOptions, parse_stages
    from batch.summary import write_summary
    from scene.manifest import check_writable
    from utils.console import info

    require(args.eval_frames >= 1, "--eval_frames must be at least 1", "e.g. --eval_frames 60")
    require(args.workers is None or args.workers >= 1, "--workers must be at least 1", "e.g. --workers 2")
    require(args.connect_timeout > 0, "--connect_timeout must be > 0 seconds", "e.g. --connect_timeout 10")
    stages, extra = parse_stages(args.stages), _extra_args(args)
    scenes = find_scenes(args.scenes)
    names = scene_names(scenes)
    out_dir = args.summary or summary_root(args.scenes, scenes)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_writable(out_dir)
    options = TaskOptions(stages, extra, args.force, args.eval_frames, log_dir=str(out_dir / "batch_logs"))

    if args.scheduler:
        if args.workers is not None:
            info("--workers applies to the local cluster only: the cluster's own workers run the scenes")
        count = None if args.gpus == "auto" else gpu.parse_count(args.gpus)
        need_gpu = bool(count)  # each task then takes a worker's GPU resource
        options.gpu_ids = () if count == 0 else None  # else the workers' own CUDA_VISIBLE_DEVICES decide
        cluster = remote_client(args.scheduler, args.connect_timeout, need_gpu)
        where = f"the cluster at {args.scheduler}"
    else:
        options.gpu_ids = gpu.local_gpus(args.gpus, gpu.cuda_device_count())
        need_gpu = bool(options.gpu_ids)
        workers = args.workers or max(1, len(options.gpu_ids))
        options.threads = gpu.threads_per_worker(workers)
        cluster = local_client(workers, options.gpu_ids)
        gpus_text = f", GPUs {','.join(options.gpu_ids)}" if options.gpu_ids else ", CPU"
        where = f"a local cluster of {workers} worker(s){gpus_text}"
    with cluster as client:
        info(f"{len(scenes)} scene(s), stages {','.join(stages)}, on {where}; logs in {options.log_dir}")
        results = run_batch(client, scenes, names, options, need_gpu)
    csv_path, html_path = write_summary(results, out_dir)
    counts = {s: sum(r.status == s for r in results) for s in dict.fromkeys(r.status for r in results)}
    info(f"{', '.join(f'{n} {s}' for s, n in counts.items())} -> {csv_path}, {html_path}")
    return 1 if counts.get(FAILED) else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
