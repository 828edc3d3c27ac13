"""Gaussian-to-tile intersection lists, sorted front to back per tile (gsplat's rule)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TileLists:
    """Intersections of projected Gaussians with square pixel blocks ("tiles" of ``tile_size``), grouped by tile.

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
    """gsplat's tile ranges [M, 4] = (x0, x1, y0, y1), max exclusive, of boxes around centres [M, 2]."""
    t = means2d / tile_size
    r = radii_xy.to(means2d.dtype) / tile_size
    x0 = torch.floor(t[:, 0] - r[:, 0]).clamp(0, tiles_x)
    x1 = torch.ceil(t[:, 0] + r[:, 0]).clamp(0, tiles_x)
    y0 = torch.floor(t[:, 1] - r[:, 1]).clamp(0, tiles_y)
    y1 = torch.ceil(t[:, 1] + r[:, 1]).clamp(0, tiles_y)
    return torch.stack([x0, x1, y0, y1], dim=-1).long()


def _block_ranges(
    means2d: Tensor, radii_xy: Tensor, footprint_xy: Tensor, tile_size: int, block_size: int, width: int, height: int
) -> Tensor:
    """Block ranges [M, 4] (x0, x1, y0, y1), max exclusive, in units of ``block_size`` pixels.

    A block is listed when its parent tile is in gsplat's range (so the same Gaussians reach each pixel as in
    gsplat) and it meets the box of the region where the Gaussian's alpha >= 1/255 (elsewhere it contributes
    nothing, so dropping it changes no pixel). The small margin absorbs rounding.
    """
    tiles_x, tiles_y = -(-width // tile_size), -(-height // tile_size)
    ratio = tile_size // block_size
    tr = _tile_ranges(means2d, radii_xy, tile_size, tiles_x, tiles_y) * ratio
    half = footprint_xy + 0.01 + 1e-4 * footprint_xy
    lo = torch.floor((means2d - half) / block_size).long()
    hi = torch.floor((means2d + half) / block_size).long() + 1
    blocks = (-(-width // block_size), -(-height // block_size))
    x0 = torch.maximum(tr[:, 0], lo[:, 0]).clamp(0, blocks[0])
    x1 = torch.minimum(tr[:, 1], hi[:, 0]).clamp(0, blocks[0])
    y0 = torch.maximum(tr[:, 2], lo[:, 1]).clamp(0, blocks[1])
    y1 = torch.minimum(tr[:, 3], hi[:, 1]).clamp(0, blocks[1])
    return torch.stack([x0, torch.maximum(x0, x1), y0, torch.maximum(y0, y1)], dim=-1)


def intersect_tiles(
    means2d: Tensor,
    radii_xy: Tensor,
    footprint_xy: Tensor,
    depths: Tensor,
    width: int,
    height: int,
    tile_size: int = 16,
    block_size: int = 8,
) -> TileLists:
    """Build depth-sorted per-block lists.

    Args: means2d [C, N, 2] pixels, radii_xy [C, N, 2] int (gsplat's boxes, 0 = culled), footprint_xy [C, N, 2]
    exact alpha >= 1/255 half-widths, depths [C, N]; image size; gsplat's tile size and the block size
    (a divisor of the tile size) of the returned lists. Nothing here is differentiable.
    """
    if tile_size % block_size:
        raise ValueError(f"block_size {block_size} must divide tile_size {tile_size}")
    n_cams, n = depths.shape
    device = depths.device
    blocks_x, blocks_y = -(-width // block_size), -(-height // block_size)
    n_blocks = n_cams * blocks_x * blocks_y
    flat_r = radii_xy.reshape(-1, 2)
    inst = torch.nonzero((flat_r[:, 0] > 0) & (flat_r[:, 1] > 0)).squeeze(1)  # flat ids c * N + n
    rng = _block_ranges(
        means2d.reshape(-1, 2)[inst].detach(),
        flat_r[inst],
        footprint_xy.reshape(-1, 2)[inst],
        tile_size,
        block_size,
        width,
        height,
    )
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
    block = (cam * blocks_y + row) * blocks_x + col
    # One sort on (block, depth rank): ranks keep the key an exact integer.
    depth_rank = torch.empty_like(inst)
    depth_rank[torch.argsort(depths.reshape(-1)[inst].detach(), stable=True)] = torch.arange(len(inst), device=device)
    key = block * max(len(inst), 1) + depth_rank[owner]
    order = torch.argsort(key)
    ids = inst[owner[order]]
    counts = torch.bincount(block, minlength=n_blocks)
    offsets = torch.cumsum(counts, 0) - counts
    return TileLists(ids=ids, offsets=offsets, counts=counts, tile_size=block_size, tiles_x=blocks_x, tiles_y=blocks_y)
