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


def test_ssim_gradient_matches_autograd_of_the_full_window_reference():
    g = torch.Generator().manual_seed(9)
    x = torch.rand(2, 17, 21, 3, generator=g, dtype=torch.float64)
    y = (x + 0.3 * torch.rand(2, 17, 21, 3, generator=g, dtype=torch.float64)).clamp(0, 1)
    x.requires_grad_(True)
    (want,) = torch.autograd.grad(_ssim_reference(x, y), x)
    (got,) = torch.autograd.grad(ssim(x, y), x)
    assert got.shape == x.shape and want.abs().max() > 1e-4
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-12)
    small = x[:1, :9, :11].detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: ssim(p, y[:1, :9, :11]), (small,))


def test_ssim_gradient_in_float32_and_through_the_photometric_loss():
    g = torch.Generator().manual_seed(10)
    x = torch.rand(1, 24, 30, 3, generator=g)
    y = (x + 0.2 * torch.rand(1, 24, 30, 3, generator=g)).clamp(0, 1)
    xd = x.double().requires_grad_(True)
    (want,) = torch.autograd.grad(0.8 * (xd - y.double()).abs().mean() + 0.2 * (1 - _ssim_reference(xd, y)), xd)
    x.requires_grad_(True)
    (got,) = torch.autograd.grad(photometric_loss(x, y, 0.2), x)
    assert torch.allclose(got.double(), want, rtol=1e-3, atol=1e-7)
