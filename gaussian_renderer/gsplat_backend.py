"""CUDA backend: a thin wrapper of ``gsplat.rasterization`` (v1.5.3) with the reference's conventions."""

from __future__ import annotations

import torch
from torch import Tensor


def render_gsplat(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    ks: Tensor,
    width: int,
    height: int,
    sh_degree: int | None,
    background: Tensor,
    near: float,
    far: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Render with gsplat (CUDA tensors, inputs validated; background [C, 3]).

    Returns rgb [C, H, W, 3], depth [C, H, W], alpha [C, H, W], radii [C, N] int32, means2d [C, N, 2].
    """
    from gsplat import rasterization  # imported lazily: it needs CUDA and JIT-builds on first use

    render_colors, render_alphas, meta = rasterization(
        means,
        quats,
        scales,
        opacities,
        colors,
        viewmats,
        ks,
        width,
        height,
        near_plane=near,
        far_plane=far,
        sh_degree=sh_degree,
        packed=False,
        backgrounds=background.contiguous(),
        render_mode="RGB+ED",
        rasterize_mode="classic",
    )
    radii = meta["radii"]
    if radii.dim() == 3:  # gsplat >= 1.5 returns per-axis radii [C, N, 2]
        radii = radii.amax(dim=-1)
    return (
        render_colors[..., :3],
        render_colors[..., 3],
        render_alphas[..., 0],
        radii.to(torch.int32),
        meta["means2d"],
    )
