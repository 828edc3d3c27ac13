"""Gaussian-to-tile intersection lists, sorted front to back per tile (gsplat's rule)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TileLists:
    """Intersections of projected Gaussians with screen tiles, grouped by tile.

    Tiles are numbered camera-major: tile = camera * tiles_y * tiles_x + row * tiles_x + col.
    ``ids[offsets[t] : offsets[t] + counts[t]]`` are the flat instance ids (camera * N + gaussian)
    touching tile ``t``, sorted by increasing camera-space depth.
    """

    ids: Tensor  # [n_isects] int64
    offsets: Tensor  # [n_tiles] int64
    counts: Tensor  # [n_tiles] int64
    tile_size: int
    tiles_x: int
    tiles_y: int


def _tile_ranges(means2d: Tensor, radii_xy: Tensor, tile_size: int, tiles_x: int, tiles_y: int) -> Tensor:
    """Tile ranges [M, 4] = (x0, x1, y0, y1), max exclusive, of boxes around centres [M, 2]."""
    t = means2d / tile_size
    r = radii_xy.to(means2d.dtype) / tile_size
    x0 = torch.floor(t[:, 0] - r[:, 0]).clamp(0, tiles_x)
    x1 = torch.ceil(t[:, 0] + r[:, 0]).clamp(0, tiles_x)
    y0 = torch.floor(t[:, 1] - r[:, 1]).clamp(0, tiles_y)
    y1 = torch.ceil(t[:, 1] + r[:, 1]).clamp(0, tiles_y)
    return torch.stack([x0, x1, y0, y1], dim=-1).long()


def intersect_tiles(
    means2d: Tensor, radii_xy: Tensor, depths: Tensor, tile_size: int, tiles_x: int, tiles_y: int
) -> TileLists:
    """Build depth-sorted per-tile lists.

    Args: means2d [C, N, 2] pixels, radii_xy [C, N, 2] int (0 = culled), depths [C, N];
    tile grid size. Nothing here is differentiable.
    """
    n_cams, n = depths.shape
    device = depths.device
    n_tiles = n_cams * tiles_x * tiles_y
    flat_r = radii_xy.reshape(-1, 2)
    inst = torch.nonzero((flat_r[:, 0] > 0) & (flat_r[:, 1] > 0)).squeeze(1)  # flat ids c * N + n
    rng = _tile_ranges(means2d.reshape(-1, 2)[inst].detach(), flat_r[inst], tile_size, tiles_x, tiles_y)
    w = rng[:, 1] - rng[:, 0]
    per_inst = w * (rng[:, 3] - rng[:, 2])
    keep = per_inst > 0
    inst, rng, w, per_inst = inst[keep], rng[keep], w[keep], per_inst[keep]
    owner = torch.repeat_interleave(torch.arange(len(inst), device=device), per_inst)
    start = torch.cumsum(per_inst, 0) - per_inst
    local = torch.arange(len(owner), device=device) - start[owner]
    col = rng[owner, 0] + local % w[owner]
    row = rng[owner, 2] + local // w[owner]
    cam = inst[owner] // n
    tile = (cam * tiles_y + row) * tiles_x + col
    # One sort on (tile, depth rank): ranks keep the key an exact integer.
    depth_rank = torch.empty_like(inst)
    depth_rank[torch.argsort(depths.reshape(-1)[inst].detach(), stable=True)] = torch.arange(len(inst), device=device)
    key = tile * max(len(inst), 1) + depth_rank[owner]
    order = torch.argsort(key)
    ids = inst[owner[order]]
    counts = torch.bincount(tile, minlength=n_tiles)
    offsets = torch.cumsum(counts, 0) - counts
    return TileLists(ids=ids, offsets=offsets, counts=counts, tile_size=tile_size, tiles_x=tiles_x, tiles_y=tiles_y)
