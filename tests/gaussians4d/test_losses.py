"""gaussians4d/losses.py: L1, D-SSIM against a full-window reference, PSNR."""

from __future__ import annotations

import math

import pytest
import torch

from gaussians4d.losses import l1_loss, photometric_loss, psnr, ssim


def test_losses():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 16, 20, 3, generator=g)
    y = torch.rand(2, 16, 20, 3, generator=g)
    assert math.isclose(float(ssim(x, x)), 1.0, abs_tol=1e-5)
    assert float(ssim(x, y)) < 0.5
    assert torch.allclose(l1_loss(x, y), (x - y).abs().mean())
    w = torch.zeros(2, 16, 20)
    w[:, :8] = 1
    assert torch.allclose(l1_loss(x, y, w), (x - y)[:, :8].abs().mean())
    assert math.isclose(psnr(torch.full((1, 4, 4, 3), 0.5), torch.full((1, 4, 4, 3), 0.6)), 20.0, rel_tol=1e-4)
    loss = photometric_loss(x.requires_grad_(True), y, 0.2)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="pred and target"):
        l1_loss(x[0], y)
    with pytest.raises(ValueError, match="weight"):
        l1_loss(x, y, w[0])


def _ssim_reference(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """3DGS's SSIM with a full 11x11 Gaussian window (float64), the separable version's reference."""
    x, y = x.double().permute(0, 3, 1, 2), y.double().permute(0, 3, 1, 2)
    r = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(r**2) / (2 * 1.5**2))
    g = g / g.sum()
    w = (g[:, None] * g[None, :]).expand(3, 1, 11, 11)

    def blur(img):
        return torch.nn.functional.conv2d(img, w, padding=5, groups=3)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean()


def test_ssim_matches_full_window_reference():
    g = torch.Generator().manual_seed(8)
    x = torch.rand(1, 19, 23, 3, generator=g)
    y = (x + 0.2 * torch.rand(1, 19, 23, 3, generator=g)).clamp(0, 1)
    assert math.isclose(float(ssim(x, y)), float(_ssim_reference(x, y)), abs_tol=1e-5)
