"""Photometric losses of the 4D Gaussian stage: weighted L1, D-SSIM, PSNR (images [C, H, W, 3] in [0, 1]).

The HexPlane regularisers (total variation, time smoothness) live with the planes in gaussians4d/deformation.py
and are re-exported here.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from gaussians4d.deformation import plane_tv, time_smoothness

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_C1, _C2 = 0.01**2, 0.03**2


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[-1] != 3:
        raise ValueError(
            f"pred and target must both be [C, H, W, 3], got {tuple(pred.shape)} and {tuple(target.shape)}"
        )


def l1_loss(pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean absolute error; ``weight`` [C, H, W] (e.g. lower on inpainted pixels) normalised to mean 1."""
    _check_pair(pred, target)
    err = (pred - target).abs().mean(dim=-1)
    if weight is None:
        return err.mean()
    if weight.shape != err.shape:
        raise ValueError(f"weight must be {tuple(err.shape)}, got {tuple(weight.shape)}")
    return (err * weight).sum() / weight.sum().clamp_min(1e-8)


@functools.cache
def _gauss_1d(device: torch.device, dtype: torch.dtype) -> Tensor:
    """The window's 11 taps (made once per device: the training loss asks every iteration)."""
    x = torch.arange(SSIM_WINDOW, dtype=torch.float64) - SSIM_WINDOW // 2
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    return (g / g.sum()).to(device=device, dtype=dtype)


@functools.cache
def _kernels(device: torch.device):
    """gaussians4d.ssim_kernels once it has run on ``device`` (its first call compiles the kernels), or None
    where Triton is missing (CPU builds of torch) or its kernels fail there: the PyTorch path then."""
    try:
        from gaussians4d import ssim_kernels

        x = torch.linspace(0, 1, 768, device=device).reshape(1, 16, 16, 3).requires_grad_(True)
        ssim_kernels.ssim(x, x.detach().flip(1), _gauss_1d(device, torch.float32), _C1, _C2).backward()
    except Exception as exc:
        if not isinstance(exc, ImportError):
            from utils.console import warn

            warn(f"the SSIM's Triton kernels failed on {device} ({type(exc).__name__}); using the slower PyTorch SSIM")
        return None
    return ssim_kernels


def _blur(maps: Tensor) -> Tensor:
    """The SSIM window [11 x 11 Gaussian, zero padding] applied to each channel of ``maps`` [B, K, H, W].

    Separable: two 11-tap passes instead of one 121-tap one. (Each map as its own one-channel image ran 25 %
    faster on an H200, but cuDNN's algorithm search for it peaked at 30 GB of GPU memory: not taken.)"""
    n = maps.shape[1]
    g = _gauss_1d(maps.device, maps.dtype)
    gx, gy = g.view(1, 1, 1, -1).expand(n, 1, 1, -1), g.view(1, 1, -1, 1).expand(n, 1, -1, 1)
    pad = SSIM_WINDOW // 2
    return F.conv2d(F.conv2d(maps, gx, padding=(0, pad), groups=n), gy, padding=(pad, 0), groups=n)


class _SSIM(torch.autograd.Function):
    """Mean SSIM with its gradient written out (to ``pred`` only), as fused-SSIM kernels do.

    Forward blurs the 15 local statistics maps (x, y, x², y², xy of three channels) and keeps three
    derivative maps per channel: dS/dmu_x, dS/dE[x²], dS/dE[xy]. The window is symmetric and zero padded,
    so its transpose is itself: backward is one blur of those 9 maps and a few products, where autograd
    would run the transposed blur over all 15 maps and keep every intermediate of the formula."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor) -> Tensor:  # x, y [B, 3, H, W]
        mu_x, mu_y, xx, yy, xy = _blur(torch.cat([x, y, x * x, y * y, x * y], dim=1)).chunk(5, dim=1)
        mu_xy, mu_xx, mu_yy = mu_x * mu_y, mu_x * mu_x, mu_y * mu_y
        a1, a2 = 2 * mu_xy + _C1, 2 * (xy - mu_xy) + _C2
        b1, b2 = mu_xx + mu_yy + _C1, (xx - mu_xx) + (yy - mu_yy) + _C2
        den = b1 * b2
        s = a1 * a2 / den
        if ctx.needs_input_grad[0]:
            d_a1, d_a2 = a2 / den, a1 / den  # dS/dA1, dS/dA2
            d_b1, d_b2 = s / b1, s / b2  # -dS/dB1, -dS/dB2
            d_mu = 2 * (mu_y * (d_a1 - d_a2) - mu_x * (d_b1 - d_b2))
            ctx.save_for_backward(x, y, torch.cat([d_mu, -d_b2, 2 * d_a2], dim=1))
        return s.mean()

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, y, derivatives = ctx.saved_tensors
        d_mu, d_xx, d_xy = _blur(derivatives * (grad / (x.numel()))).chunk(3, dim=1)
        return d_mu + 2 * x * d_xx + y * d_xy, None


def ssim(pred: Tensor, target: Tensor) -> Tensor:
    """Mean structural similarity (Gaussian 11x11 window, sigma 1.5, zero padding, as 3DGS), in [-1, 1].

    Differentiable in ``pred`` (the gradient is written out: :class:`_SSIM`), not in ``target``. On CUDA
    with Triton, four fused kernels compute the same (gaussians4d/ssim_kernels.py)."""
    _check_pair(pred, target)
    kernels = _kernels(pred.device) if pred.is_cuda else None
    if kernels is not None and 5 * pred.numel() < 2**31:  # the kernels index with int32
        return kernels.ssim(pred, target, _gauss_1d(pred.device, torch.float32), _C1, _C2)
    return ssim_pytorch(pred, target)


def ssim_pytorch(pred: Tensor, target: Tensor) -> Tensor:
    """:func:`ssim` by its PyTorch path (:class:`_SSIM`) on any device: the CPU's, and the kernels' reference."""
    return _SSIM.apply(pred.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2).detach())


def warm_up(device: str | torch.device) -> None:
    """On a CUDA ``device``, compile the Triton kernels (Triton caches them on disk), as scripts/setup.sh
    does ahead of the first run; elsewhere there is nothing to compile."""
    device = torch.device(device)
    if device.type == "cuda":
        _kernels(device)


def photometric_loss(pred: Tensor, target: Tensor, lambda_dssim: float, weight: Tensor | None = None) -> Tensor:
    """(1 - lambda) L1 + lambda (1 - SSIM), as 3D Gaussian Splatting."""
    loss = (1 - lambda_dssim) * l1_loss(pred, target, weight)
    if lambda_dssim > 0:
        loss = loss + lambda_dssim * (1 - ssim(pred, target))
    return loss


def psnr(pred: Tensor, target: Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1] (pred clamped to [0, 1])."""
    _check_pair(pred, target)
    mse = float((pred.detach().clamp(0, 1) - target).square().mean())
    return 99.0 if mse <= 1e-10 else -10.0 * math.log10(mse)


__all__ = ["l1_loss", "photometric_loss", "plane_tv", "psnr", "ssim", "ssim_pytorch", "time_smoothness", "warm_up"]
