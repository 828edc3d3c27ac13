"""train_4DGS's D-SSIM term, forward + backward, on a batch of images: milliseconds and peak memory.

    python scripts/benchmark_ssim.py                           # 4 images of 1280x720, the GPU when present
    python scripts/benchmark_ssim.py --size 1920x1080 --batch 4 --device cpu --repeats 3

Rows: the formula left to autograd (the implementation before), the PyTorch path of gaussians4d.losses.ssim
(the gradient written out: the CPU's), and on CUDA with Triton its kernels (gaussians4d/ssim_kernels.py,
what train_4DGS runs there), each with the largest difference of its gradient from the first row's.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from utils.cli import make_parser, run_main  # noqa: E402
from utils.errors import UserError  # noqa: E402


def ssim_autograd(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """gaussians4d.losses.ssim's formula with autograd's gradient (the blur of all 15 maps transposed)."""
    from gaussians4d.losses import _C1, _C2, _blur

    x, y = pred.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2)
    mu_x, mu_y, xx, yy, xy = _blur(torch.cat([x, y, x * x, y * y, x * y], dim=1)).chunk(5, dim=1)
    cov = xy - mu_x * mu_y
    num = (2 * mu_x * mu_y + _C1) * (2 * cov + _C2)
    den = (mu_x**2 + mu_y**2 + _C1) * (xx - mu_x**2 + yy - mu_y**2 + _C2)
    return (num / den).mean()


def _time(fn, x, y, repeats: int, device: torch.device) -> tuple[float, float, torch.Tensor]:
    """(ms per forward + backward, peak MB over the baseline, the gradient)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(2):  # warm-up: cuDNN's algorithm choice, the allocator
        x.grad = None
        fn(x, y).backward()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    start = time.perf_counter()
    for _ in range(repeats):
        x.grad = None
        fn(x, y).backward()
    sync()
    ms = (time.perf_counter() - start) / repeats * 1000
    peak = (torch.cuda.max_memory_allocated(device) - base) / 1e6 if device.type == "cuda" else float("nan")
    return ms, peak, x.grad.clone()


def main(argv=None) -> int:
    from gaussians4d import losses

    parser = make_parser("Time the D-SSIM term's forward + backward.")
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT of each image")
    parser.add_argument("--batch", type=int, default=4, help="images per call (train_4DGS's --batch_size)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = parser.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise UserError(f"--size {args.size!r} is not WIDTHxHEIGHT", "give e.g. --size 1280x720") from None
    if min(width, height, args.batch, args.repeats) < 1:
        raise UserError("--size, --batch and --repeats must be at least 1", "give e.g. --size 1280x720 --batch 4")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the trainer
    g = torch.Generator(device=device).manual_seed(0)
    y = torch.rand(args.batch, height, width, 3, generator=g, device=device)
    x = (y + 0.1 * torch.randn(y.shape, generator=g, device=device)).clamp(0, 1).requires_grad_(True)
    print(f"{args.batch} images of {width}x{height} on {device}, {args.repeats} repeats\n")
    print("| SSIM | ms fwd+bwd | peak MB | max grad difference |")
    print("| --- | ---: | ---: | ---: |")
    rows = [("autograd (before)", ssim_autograd), ("PyTorch, gradient written out", losses.ssim_pytorch)]
    if device.type == "cuda" and losses._kernels(x.device) is not None:
        rows.append(("Triton kernels", losses.ssim))
    reference = None
    for name, fn in rows:
        ms, peak, grad = _time(fn, x, y, args.repeats, device)
        diff = "" if reference is None else f"{float((grad - reference).abs().max()):.2e}"
        reference = grad if reference is None else reference
        print(f"| {name} | {ms:.2f} | {peak:.0f} | {diff} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
