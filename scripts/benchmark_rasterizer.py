"""Timing of gaussian_renderer.render: forward FPS and forward+backward ms per backend (prints a Markdown table).

    # this machine (CPU, pure-PyTorch reference): 256x256, 20k Gaussians; target fwd+bwd <= 2 s
    .venv/bin/python scripts/benchmark_rasterizer.py --device cpu
    # GPU machine: gsplat and the reference at 1280x720 for 200k and 1M Gaussians; target >= 1000 FPS (200k)
    python scripts/benchmark_rasterizer.py --device cuda

Backends: "torch" (reference), "gsplat" (through render(): validation included), "gsplat-fast" (through
render(..., validate=False): no value checks, no device sync, as the video renderer calls it), "gsplat-raw"
(gsplat.rasterization called directly: the wrapper's overhead is the difference).

Scenes come from gaussian_renderer.testing.random_scene (the tests' builder: Gaussians filling the view at
depths 2..8, ~30 overlapping splats per pixel, alpha ~0.9). "fwd" runs under torch.no_grad(); "fwd+bwd" renders
with gradients enabled on the five Gaussian parameters and back-propagates a loss using rgb, depth and alpha.
Times are wall clock with CUDA synchronisation; the median and the minimum over --repeats runs are shown
(the minimum is the fairer figure on a shared CPU); "CPU ms" is the median process CPU time (all threads)
of fwd+bwd, which a loaded machine inflates less than wall time. Needs torch, numpy, scipy (+ gsplat on CUDA); not plyfile.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gaussian_renderer import render  # noqa: E402
from gaussian_renderer.testing import random_scene  # noqa: E402
from utils.cli import make_parser, run_main  # noqa: E402
from utils.errors import UserError  # noqa: E402


def _parse(argv: Sequence[str] | None):
    p = make_parser("Benchmark the Gaussian rasterizer (reference and gsplat backends).")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: cuda if available")
    p.add_argument(
        "--backends",
        nargs="+",
        choices=["torch", "gsplat", "gsplat-fast", "gsplat-raw"],
        help="default: torch on CPU; gsplat, gsplat-raw (gsplat.rasterization without our wrapper) and torch on CUDA",
    )
    p.add_argument("--size", type=str, help="WxH; default 256x256 on CPU, 1280x720 on CUDA")
    p.add_argument("--gaussians", type=int, nargs="+", help="default 20000 on CPU, 200000 1000000 on CUDA")
    p.add_argument("--sh-degree", type=int, default=None, help="SH colours of this degree (default RGB)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per figure")
    p.add_argument("--ref-repeats", type=int, default=2, help="timed runs for the reference backend on CUDA")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return p.parse_args(argv)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--size {text!r} is not WxH", "pass e.g. --size 1280x720") from None
    return w, h


def _timed(fn: Callable[[], None], repeats: int, device: torch.device) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of ``repeats`` calls after one untimed warm-up."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def _render_fn(backend: str) -> Callable[..., tuple[Tensor, Tensor, Tensor]]:
    """(rgb, depth, alpha) of one call: through gaussian_renderer.render, or gsplat.rasterization directly."""
    if backend == "gsplat-fast":
        return lambda **kw: (lambda o: (o.rgb, o.depth, o.alpha))(render(**kw, backend="gsplat", validate=False))
    if backend != "gsplat-raw":
        return lambda **kw: (lambda o: (o.rgb, o.depth, o.alpha))(render(**kw, backend=backend))
    from gsplat import rasterization

    def raw(means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree):
        colours, alphas, _ = rasterization(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height,
            sh_degree=sh_degree, packed=False, render_mode="RGB+ED",
        )  # fmt: skip
        return colours[..., :3], colours[..., 3], alphas[..., 0]

    return raw


def _bench_one(backend: str, n: int, width: int, height: int, sh_degree: int | None, repeats: int, device):
    scene = random_scene(n, width, height, sh_degree=sh_degree, seed=0, device=device)
    inputs = scene.inputs()
    fn = _render_fn(backend)

    def forward() -> None:
        with torch.no_grad():
            fn(**inputs)

    params = [p.clone().requires_grad_(True) for p in scene.params()]
    names = ("means", "quats", "scales", "opacities", "colors")

    def forward_backward() -> None:
        rgb, depth, alpha = fn(**(inputs | dict(zip(names, params))))
        (rgb.mean() + 0.01 * depth.mean() + alpha.mean()).backward()

    return _timed(forward, repeats, device), _timed(forward_backward, repeats, device)


def _row(device, backend, n, width, height, fwd, fwdbwd) -> str:
    ms = lambda xs: f"{1e3 * statistics.median(xs):.1f} / {1e3 * min(xs):.1f}"  # noqa: E731
    fps = 1.0 / statistics.median(fwd[0])
    cpu = f"{1e3 * statistics.median(fwdbwd[1]):.1f}"
    return f"| {device} | {backend} | {n} | {width}x{height} | {ms(fwd[0])} | {fps:.1f} | {ms(fwdbwd[0])} | {cpu} |"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise UserError("--device cuda but CUDA is not available", "run on the GPU machine or pass --device cpu")
    device = torch.device("cuda" if use_cuda else "cpu")
    backends = args.backends or (["gsplat", "gsplat-fast", "gsplat-raw", "torch"] if use_cuda else ["torch"])
    if any(b.startswith("gsplat") for b in backends) and not use_cuda:
        raise UserError("the gsplat backend needs CUDA", "use --backends torch on the CPU")
    width, height = _size(args.size or ("1280x720" if use_cuda else "256x256"))
    counts = args.gaussians or ([200_000, 1_000_000] if use_cuda else [20_000])
    name = torch.cuda.get_device_name(device) if use_cuda else f"cpu ({torch.get_num_threads()} threads)"
    print(f"torch {torch.__version__}, {name}, sh_degree={args.sh_degree}")
    print(
        "| device | backend | Gaussians | size | fwd ms (median / min) | fwd FPS | fwd+bwd ms (median / min) "
        "| fwd+bwd CPU ms |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for backend in backends:
        repeats = args.ref_repeats if (use_cuda and backend == "torch") else args.repeats
        for n in counts:
            try:
                fwd, fwdbwd = _bench_one(backend, n, width, height, args.sh_degree, repeats, device)
            except torch.cuda.OutOfMemoryError:
                print(f"| {device.type} | {backend} | {n} | {width}x{height} | out of memory | - | - | - |")
                torch.cuda.empty_cache()
                continue
            print(_row(device.type, backend, n, width, height, fwd, fwdbwd), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
