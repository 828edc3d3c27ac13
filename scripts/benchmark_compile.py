"""Whether torch.compile pays for the deformation field: compile time against the time it saves per step.

    python scripts/benchmark_compile.py                          # GPU preset's field, 46 000 points, 4 times
    python scripts/benchmark_compile.py --device cpu --points 20000 --repeats 5

One forward + backward of gaussians4d.deformation.HexPlaneDeformation (the GPU preset's sizes) and the
squared sum of its outputs, eager and under ``torch.compile`` (default mode): the import of torch._dynamo,
the first compiled call (the compilation), then the median of ``--repeats`` calls of each. A table; the
last column is how many training iterations the compilation takes to pay back (750 fine iterations per run).
"""

from __future__ import annotations

import importlib
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from utils.cli import make_parser, run_main  # noqa: E402
from utils.errors import UserError  # noqa: E402


def _field(device: torch.device):
    from gaussians4d.config import PRESETS
    from gaussians4d.deformation import DeformationConfig, HexPlaneDeformation

    gpu = PRESETS["gpu"]
    config = DeformationConfig(
        grid_resolution=gpu["grid_resolution"],
        grid_multires=tuple(gpu["grid_multires"]),
        time_resolution=gpu["time_resolution"],
        grid_features=gpu["grid_features"],
        mlp_width=gpu["mlp_width"],
    )
    lo, hi = torch.tensor([-1.0, -1.0, 0.01]), torch.tensor([1.0, 1.0, 1.0])
    field = HexPlaneDeformation(config, lo, hi, torch.eye(4)).to(device)
    for head in (field.head_x, field.head_q, field.head_s):  # non-zero heads: every output depends on the planes
        torch.nn.init.normal_(head.weight, std=0.1)
    return field


def _step(field, points: torch.Tensor, times: list[float]) -> None:
    dx, dq, ds = field(points, times)
    (dx.square().sum() + dq.square().sum() + ds.square().sum()).backward()


def _median_ms(fn, repeats: int, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    samples = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main(argv=None) -> int:
    parser = make_parser("Time torch.compile on the deformation field.")
    parser.add_argument("--points", type=int, default=46_000, help="moving Gaussians (mom_scene_0 has ~46 000)")
    parser.add_argument("--times", type=int, default=4, help="loop times per call (train_4DGS's --batch_size)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = parser.parse_args(argv)
    if min(args.points, args.times, args.repeats) < 1:
        raise UserError("--points, --times and --repeats must be at least 1", "give e.g. --points 46000 --times 4")
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    gen = torch.Generator().manual_seed(0)
    points = (torch.rand(args.points, 3, generator=gen) * torch.tensor([1.0, 1.0, 5.0]) + torch.tensor([0, 0, 1.0])).to(
        device
    )
    points.requires_grad_(True)
    times = [(i + 0.5) / args.times for i in range(args.times)]
    field = _field(device)

    eager = lambda: _step(field, points, times)  # noqa: E731
    eager()
    eager_ms = _median_ms(eager, args.repeats, device)

    start = time.perf_counter()
    importlib.import_module("torch._dynamo")  # what torch.compile imports first

    import_s = time.perf_counter() - start
    compiled_field = torch.compile(field)
    compiled = lambda: _step(compiled_field, points, times)  # noqa: E731
    start = time.perf_counter()
    compiled()
    if device.type == "cuda":
        torch.cuda.synchronize()
    compile_s = time.perf_counter() - start
    compiled_ms = _median_ms(compiled, args.repeats, device)

    saved = eager_ms - compiled_ms
    payback = f"{(import_s + compile_s) * 1000 / saved:.0f}" if saved > 0 else "never"
    print(f"HexPlaneDeformation (GPU preset), {args.points} points x {args.times} times, {device}\n")
    print("| eager ms | compiled ms | import torch._dynamo s | first compiled call s | iterations to pay back |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    print(f"| {eager_ms:.2f} | {compiled_ms:.2f} | {import_s:.2f} | {compile_s:.2f} | {payback} |")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
