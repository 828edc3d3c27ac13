"""Public entry point: :func:`render` (two backends, one convention) and :func:`screen_grad_norm`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor

from .checks import ValueChecks, check_background, check_cameras, check_gaussians, check_planes
from .gsplat_backend import render_gsplat
from .torch_backend import render_torch

Backend = Literal["auto", "torch", "gsplat"]


@dataclass
class RenderOutput:
    """What :func:`render` returns (C cameras, N Gaussians, H x W pixels)."""

    rgb: Tensor  # [C, H, W, 3] composited colour over the background
    depth: Tensor | None  # [C, H, W] expected z-depth sum_i w_i z_i / alpha (0 where alpha == 0); None if not asked
    alpha: Tensor  # [C, H, W] accumulated opacity
    radii: Tensor  # [C, N] int32 screen radius in pixels (max over x/y), 0 = culled
    means2d: Tensor  # [C, N, 2] projected centres in pixels; its .grad is retained (see screen_grad_norm)
    # A batched render (Gaussians [B, N, ...]) gives every field a leading B: rgb [B, C, H, W, 3], ...


def _pick_backend(backend: str, means: Tensor) -> str:
    if backend == "auto":
        return "gsplat" if means.is_cuda else "torch"
    if backend not in ("torch", "gsplat"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'gsplat', got {backend!r}")
    if backend == "gsplat" and not means.is_cuda:
        raise ValueError("backend='gsplat' needs CUDA tensors; means is on the CPU (use backend='torch' or 'auto')")
    if backend == "gsplat" and means.dtype != torch.float32:
        raise TypeError(f"backend='gsplat' needs float32 tensors; means has dtype {means.dtype}")
    return backend


def _empty_output(background: Tensor, lead: tuple[int, ...], width: int, height: int, means: Tensor) -> RenderOutput:
    """The render of zero Gaussians: background colour, alpha 0, depth 0 (``lead`` = (C,) or (B, C))."""
    like = {"dtype": means.dtype, "device": means.device}
    rgb = background[..., None, None, :].expand(*lead, height, width, 3).clone()
    zeros = torch.zeros(*lead, height, width, **like)
    radii = torch.zeros(*lead, 0, dtype=torch.int32, device=means.device)
    return RenderOutput(
        rgb=rgb, depth=zeros, alpha=zeros.clone(), radii=radii, means2d=torch.zeros(*lead, 0, 2, **like)
    )


def render(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    sh_degree: int | None = None,
    background: Tensor | None = None,
    backend: Backend = "auto",
    near: float = 0.01,
    far: float = 1e10,
    validate: bool = True,
    depth: bool = True,
) -> RenderOutput:
    """Rasterize N 3D Gaussians into C pinhole cameras (differentiable), or B sets of N into B rows of C.

    Args:
        means: [N, 3] world positions.
        quats: [N, 4] rotations, wxyz (normalised inside).
        scales: [N, 3] non-negative standard deviations (already activated), world units.
        opacities: [N] in [0, 1] (already activated).
        colors: [N, 3] RGB when ``sh_degree`` is None, else [N, K, 3] SH coefficients with K >= (sh_degree+1)^2
            (3DGS basis; direction = mean - camera centre; colour = SH + 0.5 clamped at 0).
        viewmats: [C, 4, 4] world-to-camera matrices (OpenCV axes: x right, y down, z forward).
        Ks: [C, 3, 3] intrinsics in pixels.
            Batched (one call for several Gaussian sets, e.g. one scene at several times): every per-Gaussian
            tensor gains a leading B ([B, N, 3], ...), viewmats and Ks become [B, C, ...], background
            [3] or [B, C, 3], and every output gains the leading B; set b is seen by the cameras of row b.
        width, height: image size in pixels.
        sh_degree: None for RGB colours, else 0..3.
        background: None (black), [3] or [C, 3] ([B, C, 3] batched) colour behind the Gaussians.
        backend: "torch" (pure PyTorch, any device), "gsplat" (CUDA), "auto" (gsplat on CUDA, torch otherwise).
        near, far: Gaussians whose camera-space z is outside [near, far] are culled.
        validate: check tensor values (finite, in range) too. Shapes, dtypes and devices are always checked;
            value checks cost a device synchronisation, so hot loops over already-checked inputs pass False.
        depth: composite the depth too (False: ``depth`` is None and the rasterizer carries 3 channels, not 4).

    Returns:
        :class:`RenderOutput`. ``means2d.retain_grad()`` is already called when it requires grad, so after
        ``backward()`` :func:`screen_grad_norm` reads the screen-space gradient on either backend.
    """
    checks = ValueChecks(enabled=validate)
    lead = check_gaussians(means, quats, scales, opacities, colors, sh_degree, checks)
    n_cams = check_cameras(viewmats, Ks, width, height, means, checks, lead)
    width, height = int(width), int(height)  # NumPy ints are accepted
    bg = check_background(background, n_cams, means, checks, lead)
    check_planes(near, far)
    checks.raise_first()
    chosen = _pick_backend(backend, means)
    if means.shape[-2] == 0:
        empty = _empty_output(bg, (*lead, n_cams), width, height, means)
        return empty if depth else replace(empty, depth=None)
    fn = render_gsplat if chosen == "gsplat" else render_torch
    rgb, depth_map, alpha, radii, means2d = fn(
        means,
        quats,
        scales,
        opacities,
        colors,
        viewmats,
        Ks,
        width,
        height,
        sh_degree,
        bg,
        float(near),
        float(far),
        depth,
    )
    if means2d.requires_grad:
        means2d.retain_grad()
    return RenderOutput(rgb=rgb, depth=depth_map, alpha=alpha, radii=radii, means2d=means2d)


def screen_grad_norm(out: RenderOutput, width: int, height: int, *, reduce: Literal["mean", "max"] = "mean") -> Tensor:
    """Per-Gaussian screen-space gradient magnitude [N] for densification (3DGS/gsplat normalisation).

    Call after ``loss.backward()``. For each camera c, the pixel gradient dL/dmeans2d is scaled to NDC units
    (x by width/2, y by height/2) and by C (undoing a loss averaged over the C cameras, as gsplat's
    DefaultStrategy does); its norm is then reduced over the cameras in which the Gaussian is visible
    (radii > 0): "mean" (default, like gsplat's running average) or "max". Gaussians visible nowhere get 0.
    A batched render counts each of its B x C images as a camera (its Gaussian sets must have the same N).
    """
    grad = out.means2d.grad
    if grad is None:
        raise ValueError("out.means2d has no gradient: call loss.backward() on a render made with gradients enabled")
    n = grad.shape[-2]
    grad, radii = grad.reshape(-1, n, 2), out.radii.reshape(-1, n)
    n_cams = grad.shape[0]
    # Scaled column by column with Python numbers: a tensor of the two factors would be a host-to-device copy,
    # which waits for the GPU (this runs every training iteration).
    scaled = torch.stack([grad[..., 0] * (0.5 * width * n_cams), grad[..., 1] * (0.5 * height * n_cams)], dim=-1)
    norms = scaled.norm(dim=-1)  # [C, N]
    visible = radii > 0
    norms = torch.where(visible, norms, torch.zeros_like(norms))
    if reduce == "max":
        return norms.amax(dim=0) if n_cams else norms.sum(0)
    if reduce != "mean":
        raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")
    return norms.sum(dim=0) / visible.sum(dim=0).clamp_min(1).to(norms.dtype)
