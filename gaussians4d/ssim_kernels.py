"""The D-SSIM term in four Triton kernels: what gaussians4d.losses.ssim computes, without cuDNN.

The training loss blurs 15 statistics maps and, in backward, 9 derivative maps with the 11 x 11 Gaussian
window. cuDNN runs those depthwise blurs with a grouped direct kernel at about a twentieth of the GPU's
memory bandwidth (7 of the 27 GPU milliseconds of a training iteration, docs/BENCHMARKS.md); here each
blur is two 11-tap passes that read their neighbours from the cache, and everything pointwise is fused
into the passes:

1. ``_stats_rows``: along each row, the blurred x, y, x², y², xy of every pixel and channel;
2. ``_ssim_cols``: along each column, then the SSIM of the pixel and its three derivative maps
   (dS/dmu_x, dS/dE[x²], dS/dE[xy]), and per block the sum of the SSIM;
3. ``_deriv_rows`` and 4. ``_grad_cols`` (backward): the same blur of the three derivative maps, combined
   with x and y into dS/dx (the window is symmetric and zero padded: its transpose is itself).

Images are [B, H, W, 3] float32, contiguous, as the trainer holds them: an element's horizontal neighbours
are 3 apart, its vertical ones 3 W. Only the CUDA path of :func:`gaussians4d.losses.ssim` calls this module;
Triton's interpreter (``TRITON_INTERPRET=1``) runs it on the CPU for the tests.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

BLOCK = 1024
RADIUS = 5  # the 11-tap window of gaussians4d.losses.SSIM_WINDOW


@triton.jit(do_not_specialize=["n", "width"])  # one compiled kernel for every image size
def _stats_rows(x_ptr, y_ptr, g_ptr, out_ptr, n, width, BLOCK: tl.constexpr, RADIUS: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = i < n
    col = (i // 3) % width
    mx = tl.zeros([BLOCK], dtype=tl.float32)
    my = tl.zeros([BLOCK], dtype=tl.float32)
    sxx = tl.zeros([BLOCK], dtype=tl.float32)
    syy = tl.zeros([BLOCK], dtype=tl.float32)
    sxy = tl.zeros([BLOCK], dtype=tl.float32)
    for k in tl.static_range(2 * RADIUS + 1):
        c = col + (k - RADIUS)
        ok = inside & (c >= 0) & (c < width)
        g = tl.load(g_ptr + k)
        x = tl.load(x_ptr + i + 3 * (k - RADIUS), mask=ok, other=0.0)
        y = tl.load(y_ptr + i + 3 * (k - RADIUS), mask=ok, other=0.0)
        mx += g * x
        my += g * y
        sxx += g * x * x
        syy += g * y * y
        sxy += g * x * y
    tl.store(out_ptr + i, mx, mask=inside)
    tl.store(out_ptr + n + i, my, mask=inside)
    tl.store(out_ptr + 2 * n + i, sxx, mask=inside)
    tl.store(out_ptr + 3 * n + i, syy, mask=inside)
    tl.store(out_ptr + 4 * n + i, sxy, mask=inside)


@triton.jit
def _window(ptr, i, inside, pos, size, step, g_ptr, BLOCK: tl.constexpr, RADIUS: tl.constexpr):
    """The window along one axis at elements ``i`` of a map: sum over k of g[k] map[i + step (k - RADIUS)],
    where ``pos`` is their place along that axis and taps outside [0, size) read zero (zero padding)."""
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for k in tl.static_range(2 * RADIUS + 1):
        p = pos + (k - RADIUS)
        ok = inside & (p >= 0) & (p < size)
        acc += tl.load(g_ptr + k) * tl.load(ptr + i + step * (k - RADIUS), mask=ok, other=0.0)
    return acc


@triton.jit(do_not_specialize=["n", "width", "height"])  # one compiled kernel for every image size
def _ssim_cols(
    rows_ptr, g_ptr, deriv_ptr, partial_ptr, n, width, height, c1, c2,
    BLOCK: tl.constexpr, RADIUS: tl.constexpr, WITH_DERIV: tl.constexpr,
):  # fmt: skip
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = i < n
    row = (i // (3 * width)) % height
    mx = _window(rows_ptr, i, inside, row, height, 3 * width, g_ptr, BLOCK, RADIUS)
    my = _window(rows_ptr + n, i, inside, row, height, 3 * width, g_ptr, BLOCK, RADIUS)
    sxx = _window(rows_ptr + 2 * n, i, inside, row, height, 3 * width, g_ptr, BLOCK, RADIUS)
    syy = _window(rows_ptr + 3 * n, i, inside, row, height, 3 * width, g_ptr, BLOCK, RADIUS)
    sxy = _window(rows_ptr + 4 * n, i, inside, row, height, 3 * width, g_ptr, BLOCK, RADIUS)
    mu_xy = mx * my
    mu_xx = mx * mx
    mu_yy = my * my
    a1 = 2 * mu_xy + c1
    a2 = 2 * (sxy - mu_xy) + c2
    b1 = mu_xx + mu_yy + c1
    b2 = (sxx - mu_xx) + (syy - mu_yy) + c2
    den = b1 * b2
    s = a1 * a2 / den
    tl.store(partial_ptr + tl.program_id(0), tl.sum(tl.where(inside, s, 0.0), axis=0))
    if WITH_DERIV:
        d_a1 = a2 / den
        d_a2 = a1 / den
        d_b1 = s / b1
        d_b2 = s / b2
        tl.store(deriv_ptr + i, 2 * (my * (d_a1 - d_a2) - mx * (d_b1 - d_b2)), mask=inside)
        tl.store(deriv_ptr + n + i, -d_b2, mask=inside)
        tl.store(deriv_ptr + 2 * n + i, 2 * d_a2, mask=inside)


@triton.jit(do_not_specialize=["n", "width"])  # one compiled kernel for every image size
def _deriv_rows(deriv_ptr, g_ptr, out_ptr, n, width, BLOCK: tl.constexpr, RADIUS: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = i < n
    col = (i // 3) % width
    a = _window(deriv_ptr, i, inside, col, width, 3, g_ptr, BLOCK, RADIUS)
    b = _window(deriv_ptr + n, i, inside, col, width, 3, g_ptr, BLOCK, RADIUS)
    c = _window(deriv_ptr + 2 * n, i, inside, col, width, 3, g_ptr, BLOCK, RADIUS)
    tl.store(out_ptr + i, a, mask=inside)
    tl.store(out_ptr + n + i, b, mask=inside)
    tl.store(out_ptr + 2 * n + i, c, mask=inside)


@triton.jit(do_not_specialize=["n", "width", "height"])  # one compiled kernel for every image size
def _grad_cols(
    rows_ptr, g_ptr, x_ptr, y_ptr, scale_ptr, grad_ptr, n, width, height, inv_n,
    BLOCK: tl.constexpr, RADIUS: tl.constexpr,
):  # fmt: skip
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = i < n
    row = (i // (3 * width)) % height
    a = _window(rows_ptr, i, inside, row, height, 3 * width, g_ptr, BLOCK, RADIUS)
    b = _window(rows_ptr + n, i, inside, row, height, 3 * width, g_ptr, BLOCK, RADIUS)
    c = _window(rows_ptr + 2 * n, i, inside, row, height, 3 * width, g_ptr, BLOCK, RADIUS)
    x = tl.load(x_ptr + i, mask=inside, other=0.0)
    y = tl.load(y_ptr + i, mask=inside, other=0.0)
    scale = tl.load(scale_ptr) * inv_n  # the upstream gradient of the mean, read on the device: no sync
    tl.store(grad_ptr + i, scale * (a + 2 * x * b + y * c), mask=inside)


def _grid(n: int) -> tuple[int]:
    return (triton.cdiv(n, BLOCK),)


class TritonSSIM(torch.autograd.Function):
    """Mean SSIM of pred and target [B, H, W, 3] (float32, contiguous), differentiable in pred."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, window: Tensor, c1: float, c2: float) -> Tensor:
        _, h, w, _ = x.shape
        n = x.numel()
        rows = torch.empty((5, n), device=x.device, dtype=torch.float32)
        _stats_rows[_grid(n)](x, y, window, rows, n, w, BLOCK=BLOCK, RADIUS=RADIUS)
        with_deriv = bool(ctx.needs_input_grad[0])
        deriv = torch.empty((3, n) if with_deriv else (1,), device=x.device, dtype=torch.float32)
        partial = torch.empty(_grid(n)[0], device=x.device, dtype=torch.float32)
        _ssim_cols[_grid(n)](
            rows, window, deriv, partial, n, w, h, c1, c2, BLOCK=BLOCK, RADIUS=RADIUS, WITH_DERIV=with_deriv
        )
        if with_deriv:
            ctx.save_for_backward(x, y, window, deriv)
        return partial.sum() / n

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, y, window, deriv = ctx.saved_tensors
        _, h, w, _ = x.shape
        n = x.numel()
        rows = torch.empty_like(deriv)
        _deriv_rows[_grid(n)](deriv, window, rows, n, w, BLOCK=BLOCK, RADIUS=RADIUS)
        out = torch.empty_like(x)
        _grad_cols[_grid(n)](rows, window, x, y, grad.contiguous(), out, n, w, h, 1.0 / n, BLOCK=BLOCK, RADIUS=RADIUS)
        return out, None, None, None, None


def ssim(pred: Tensor, target: Tensor, window: Tensor, c1: float, c2: float) -> Tensor:
    """Mean SSIM (gaussians4d.losses.ssim's definition); ``window`` is the 11 taps of the 1D Gaussian."""
    if window.numel() != 2 * RADIUS + 1:
        raise ValueError(f"window must have {2 * RADIUS + 1} taps, got {window.numel()}")
    x, y = pred.float().contiguous(), target.detach().float().contiguous()
    return TritonSSIM.apply(x, y, window.float().contiguous(), float(c1), float(c2))
