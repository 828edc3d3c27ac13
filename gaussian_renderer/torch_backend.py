"""Pure-PyTorch reference backend: projection -> SH colours -> tile lists -> compositing."""

from __future__ import annotations

import torch
from torch import Tensor

from .composite import composite
from .projection import project_gaussians
from .sh import sh_to_rgb
from .tiles import intersect_tiles

TILE_SIZE = 16  # same as gsplat, so that both backends consider the same Gaussians per pixel
BLOCK_SIZE = 8  # pixels per side of the blocks composited together (smaller blocks: shorter lists)


def camera_centres(viewmats: Tensor) -> Tensor:
    """World positions [C, 3] of the camera centres of world-to-camera matrices [C, 4, 4]."""
    rot, trans = viewmats[:, :3, :3], viewmats[:, :3, 3]
    return -(rot.transpose(-1, -2) @ trans[..., None])[..., 0]


def render_torch(
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
    """Render with the reference backend (inputs already validated; background [C, 3]).

    Returns rgb [C, H, W, 3], depth [C, H, W], alpha [C, H, W], radii [C, N] int32, means2d [C, N, 2].
    """
    n_cams, n = viewmats.shape[0], means.shape[0]
    proj = project_gaussians(means, quats, scales, opacities, viewmats, ks, width, height, near, far)
    if sh_degree is None:
        rgb = colors[None].expand(n_cams, n, 3)
    else:
        rgb = sh_to_rgb(sh_degree, colors, means, camera_centres(viewmats))
    feats = torch.cat([rgb, proj.depths[..., None]], dim=-1).reshape(n_cams * n, 4)
    tl = intersect_tiles(
        proj.means2d.detach(),
        proj.radii_xy,
        proj.footprint_xy,
        proj.depths.detach(),
        width,
        height,
        TILE_SIZE,
        BLOCK_SIZE,
    )
    acc, trans = composite(
        proj.means2d.reshape(n_cams * n, 2),
        proj.conics.reshape(n_cams * n, 3),
        feats,
        opacities[None].expand(n_cams, n).reshape(n_cams * n),
        tl,
        n_cams,
        width,
        height,
    )
    alpha = 1.0 - trans
    out_rgb = acc[..., :3] + trans[..., None] * background[:, None, None, :]
    depth = acc[..., 3] / alpha.clamp_min(1e-10)
    radii = proj.radii_xy.amax(dim=-1).to(torch.int32)
    return out_rgb, depth, alpha, radii, proj.means2d
