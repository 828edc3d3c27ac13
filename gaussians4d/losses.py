"""Photometric losses of the 4D Gaussian stage: weighted L1, D-SSIM, PSNR (images [C, H, W, 3] in [0, 1]).

The HexPlane regularisers (total variation, time smoothness) live with the planes in gaussians4d/deformation.py
and are re-exported here.
"""

from __future__ import annotations

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


def _gauss_1d(device: torch.device, dtype: torch.dtype) -> Tensor:
    x = torch.arange(SSIM_WINDOW, device=device, dtype=dtype) - SSIM_WINDOW // 2
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def ssim(pred: Tensor, target: Tensor) -> Tensor:
    """Mean structural similarity (Gaussian 11x11 window, sigma 1.5, zero padding, as 3DGS), in [-1, 1]."""
    _check_pair(pred, target)
    x, y = pred.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2)
    # The five local statistics of the three channels blurred together: two conv launches, not ten.
    maps = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # [B, 15, H, W]
    n = maps.shape[1]
    g = _gauss_1d(pred.device, pred.dtype)
    gx, gy = g.view(1, 1, 1, -1).expand(n, 1, 1, -1), g.view(1, 1, -1, 1).expand(n, 1, -1, 1)
    pad = SSIM_WINDOW // 2
    # Separable: two 11-tap passes instead of one 121-tap one. (Each map as its own one-channel image ran 25 %
    # faster on an H200, but cuDNN's algorithm search for it peaked at 30 GB of GPU memory: not taken.)
    blurred = F.conv2d(F.conv2d(maps, gx, padding=(0, pad), groups=n), gy, padding=(pad, 0), groups=n)
    mu_x, mu_y, xx, yy, xy = blurred.chunk(5, dim=1)
    var_x = xx - mu_x**2
    var_y = yy - mu_y**2
    cov = xy - mu_x * mu_y
    num = (2 * mu_x * mu_y + _C1) * (2 * cov + _C2)
    den = (mu_x**2 + mu_y**2 + _C1) * (var_x + var_y + _C2)
    return (num / den).mean()


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


__all__ = ["l1_loss", "photometric_loss", "plane_tv", "psnr", "ssim", "time_smoothness"]
