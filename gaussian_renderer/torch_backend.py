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
    depth: bool = True,
) -> tuple[Tensor, Tensor | None, Tensor, Tensor, Tensor]:
    """Render with the reference backend (inputs already validated).

    Unbatched: Gaussians [N, ...], cameras [C, ...], background [C, 3]; returns rgb [C, H, W, 3], depth [C, H, W],
    alpha [C, H, W], radii [C, N] int32, means2d [C, N, 2]. Batched (gsplat's convention): Gaussians
    [B, N, ...], cameras [B, C, ...], background [B, C, 3]; every output gains the leading B (set b is seen by
    the cameras of row b only). ``depth=False``: depth is None (3 channels composited, not 4).
    """
    batched = means.dim() == 3
    if not batched:
        means, quats, scales, opacities, colors = (x[None] for x in (means, quats, scales, opacities, colors))
        viewmats, ks, background = viewmats[None], ks[None], background[None]
    n_batch, n_cams, n = viewmats.shape[0], viewmats.shape[1], means.shape[1]
    projs, rgbs = [], []
    for b in range(n_batch):
        projs.append(
            project_gaussians(means[b], quats[b], scales[b], opacities[b], viewmats[b], ks[b], width, height, near, far)
        )
        if sh_degree is None:
            rgbs.append(colors[b][None].expand(n_cams, n, 3))
        else:
            rgbs.append(sh_to_rgb(sh_degree, colors[b], means[b], camera_centres(viewmats[b])))
    # The tensor handed back as means2d must be the one the compositing reads, for its retained gradient.
    means2d = torch.stack([p.means2d for p in projs]) if batched else projs[0].means2d
    k = n_batch * n_cams  # every (set, camera) pair is one image from here on

    def cat(name: str) -> Tensor:
        return torch.cat([getattr(p, name) for p in projs])  # [B * C, N, ...]

    depths, radii_xy = cat("depths"), cat("radii_xy")
    feats = torch.cat([torch.cat(rgbs), depths[..., None]], dim=-1) if depth else torch.cat(rgbs)
    feats = feats.reshape(k * n, feats.shape[-1])
    tl = intersect_tiles(
        means2d.detach().reshape(k, n, 2),
        radii_xy,
        cat("footprint_xy"),
        depths.detach(),
        width,
        height,
        TILE_SIZE,
        BLOCK_SIZE,
    )
    acc, trans = composite(
        means2d.reshape(k * n, 2),
        cat("conics").reshape(k * n, 3),
        feats,
        opacities[:, None].expand(n_batch, n_cams, n).reshape(k * n),
        tl,
        k,
        width,
        height,
    )
    alpha = 1.0 - trans
    out_rgb = acc[..., :3] + trans[..., None] * background.reshape(k, 3)[:, None, None, :]
    depth_map = acc[..., 3] / alpha.clamp_min(1e-10) if depth else None
    radii = radii_xy.amax(dim=-1).to(torch.int32)
    lead = (n_batch, n_cams) if batched else (n_cams,)
    return (
        out_rgb.reshape(*lead, height, width, 3),
        depth_map.reshape(*lead, height, width) if depth_map is not None else None,
        alpha.reshape(*lead, height, width),
        radii.reshape(*lead, n),
        means2d,
    )
