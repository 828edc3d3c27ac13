"""Textured, depth-aware hole filling: a smooth base continuing the background plus transferred detail.

A hole is filled in two frequency bands, both in torch on the view's device:

1. the base: each row and each column continues the (blurred) colour of the nearest known pixels,
   interpolated between two sides of similar depth, else taken from the farther side (a disocclusion
   continues what lies behind the object, not the object); rows and columns are blended by the
   inverse 8th power of their distance to those pixels (a side hole continues its rows, a top or
   bottom hole its columns), then blurred across the direction they continue, more deeply inside the
   hole, so the line-by-line streaks melt. Pixels much nearer than the background the hole continues
   (a foreground object beside it) get no weight;
2. the detail: the luma of the image minus its blur (about 16 px at 720 rows) at source pixels,
   copied in tiles. The hole is covered by a grid of overlapping tiles (tent weights); each tile takes
   its detail from one source position, the best of several seeded random draws by blurred colour
   against the base, depth (a source much nearer than the hole's background is never used), motion
   region, photo or earlier fill and distance. Overlapping tiles are blended with variance-preserving
   weights (sum w d / sqrt(sum w^2)), and the detail modulates the base's brightness (keeping its
   hue), so the fill has the grain of the view's own texture without seams, and no structure is
   copied whole (no repeated peaks or clouds).

Only element-wise arithmetic, comparisons, max-pooling and gathers: the result does not depend on the
CPU thread count (utils/ordered.py). Random numbers are integer hashes of (seed, tile, draw), so the
fill is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from motion.multiview import FillGuide

BIG = 1.0e9  # a score that loses against any allowed source


@dataclass
class TextureFillConfig:
    """Knobs of :func:`texture_fill`; sizes are for a 720-pixel-high view and scale with the height."""

    tile: int = 32  # tile stride (pixels); tiles are twice as wide and overlap by half
    detail_levels: int = 4  # the detail band is the image minus its 2**levels-pixel pyramid blur
    draws: int = 48  # random source positions tried per tile
    depth_weight: float = 4.0  # score per squared relative depth difference (colour: squared 0-1 units)
    region_weight: float = 0.05  # score of a source of another motion region
    distance_weight: float = 0.02  # score per squared distance in view diagonals (prefers nearby sources)
    filled_weight: float = 0.02  # score of a source filled in an earlier view rather than seen in the photo
    near: float = 0.7  # sources nearer than this times the hole's background depth are never used
    guard: int = 12  # pixels around a hole in which nearer surfaces get no weight in the base


# ----------------------------------------------------------------------------- random numbers


def _hash(x: Tensor) -> Tensor:
    """An integer hash of int64 tensors -> [0, 2**32) (two multiply-xorshift rounds; exact everywhere)."""
    x = x & 0xFFFFFFFF
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def _randint(n: int, ids: Tensor, key: int) -> Tensor:
    """Integers in [0, n) for each id, a function of (``key``, id) only."""
    return _hash(ids * 0x9E3779B1 + int(_hash(torch.tensor(key)).item())) % n


# ----------------------------------------------------------------------------- pyramid operations


def _down(x: Tensor) -> Tensor:
    """Sum of 2 x 2 blocks of a [C, H, W] tensor (H, W even), added in a fixed order."""
    return (x[:, 0::2, 0::2] + x[:, 0::2, 1::2]) + (x[:, 1::2, 0::2] + x[:, 1::2, 1::2])


def _up_along(t: Tensor, dim: int) -> Tensor:
    """Bilinear 2x upsampling along ``dim`` (pixel centres; edges replicated), element-wise only."""
    n = t.shape[dim]
    shape = list(t.shape)
    shape[dim] = 2 * n
    out = torch.empty(shape, dtype=t.dtype, device=t.device)
    even = [slice(None)] * t.ndim
    odd = [slice(None)] * t.ndim
    even[dim], odd[dim] = slice(0, None, 2), slice(1, None, 2)
    scaled = 0.75 * t
    out[tuple(even)] = scaled + 0.25 * torch.cat([t.narrow(dim, 0, 1), t.narrow(dim, 0, n - 1)], dim)
    out[tuple(odd)] = scaled + 0.25 * torch.cat([t.narrow(dim, 1, n - 1), t.narrow(dim, n - 1, 1)], dim)
    return out


def _up(x: Tensor) -> Tensor:
    """Bilinear 2x upsampling of a [C, H, W] tensor."""
    return _up_along(_up_along(x, 1), 2)


def _down_along(x: Tensor, dim: int) -> Tensor:
    """Sum of pairs along ``dim`` (1 = rows of a [C, H, W] tensor, 2 = columns)."""
    return x[:, 0::2] + x[:, 1::2] if dim == 1 else x[:, :, 0::2] + x[:, :, 1::2]


def _blur(colour: Tensor, weight: Tensor, levels: int, dim: int | None = None) -> Tensor:
    """Masked pyramid blur of ``colour`` [C, H, W] over the pixels of nonzero ``weight`` [1, H, W]: masked
    means down ``levels`` levels (2 x 2, or pairs along ``dim`` alone: 1 = vertical, 2 = horizontal),
    then the weighted sums and the weights bilinearly back up and divided (a normalised blur of about
    2**levels pixels, so pixels without weight never leak in). Where no weight is near: the mean."""
    from utils.ordered import ordered_sum

    c, w = colour, weight
    for _ in range(levels):
        wsum = _down(w) if dim is None else _down_along(w, dim)
        c = (_down(c * w) if dim is None else _down_along(c * w, dim)) / wsum.clamp(min=1e-12)
        w = wsum / (4.0 if dim is None else 2.0)
    num, den = c * w, w
    for _ in range(levels):
        num, den = (_up(num), _up(den)) if dim is None else (_up_along(num, dim), _up_along(den, dim))
    mean = ordered_sum((colour * weight).flatten(1), 1) / ordered_sum(weight.flatten(1), 1).clamp(min=1e-12)
    return torch.where(den > 1e-6, num / den.clamp(min=1e-6), mean[:, None, None])


def _nearest_known(known: Tensor, dim: int, reverse: bool) -> Tensor:
    """Index along ``dim`` of the nearest known pixel before each pixel (after it if ``reverse``); -1 none."""
    n = known.shape[dim]
    shape = [1, 1]
    shape[dim] = n
    idx = torch.arange(n, device=known.device).reshape(shape).expand_as(known)
    if reverse:
        marked = torch.where(known, n - 1 - idx, -1).flip(dim)
        found = torch.cummax(marked, dim).values.flip(dim)
        return torch.where(found >= 0, n - 1 - found, -1)
    return torch.cummax(torch.where(known, idx, -1), dim).values


def _line_fill(colour: Tensor, weight: Tensor, depth: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Colours of the unknown pixels from the nearest known ones along ``dim`` (1 = rows, 0 = columns).

    Between two known pixels of similar depth (ratio >= 0.8) the colour is interpolated linearly; when
    one is much nearer (a disocclusion beside a foreground object), or at a frame edge, the farther or
    only one is extended: the background side. Returns (colour [3, H, W], distance [H, W] in pixels to
    the known pixel(s) used, inf where the line has none).
    """
    known = weight[0] > 0
    before, after = _nearest_known(known, dim, False), _nearest_known(known, dim, True)
    c_before = torch.gather(colour, dim + 1, before.clamp(min=0)[None].expand_as(colour))
    c_after = torch.gather(colour, dim + 1, after.clamp(min=0)[None].expand_as(colour))
    d_before = torch.gather(depth, dim, before.clamp(min=0))
    d_after = torch.gather(depth, dim, after.clamp(min=0))
    both = (before >= 0) & (after >= 0)
    similar = both & (torch.minimum(d_before, d_after) >= 0.8 * torch.maximum(d_before, d_after))
    n = known.shape[dim]
    shape = [1, 1]
    shape[dim] = n
    pos = torch.arange(n, device=known.device).reshape(shape).to(torch.float32)
    span = (after - before).clamp(min=1).to(torch.float32)
    t = (pos - before.to(torch.float32)) / span
    take_after = (after >= 0) & ((before < 0) | (both & (d_after > d_before)))
    t = torch.where(similar, t, take_after.to(torch.float32))
    d_before, d_after = pos - before.to(torch.float32), after.to(torch.float32) - pos
    dist = torch.where(similar, torch.minimum(d_before, d_after), torch.where(take_after, d_after, d_before))
    dist = torch.where((before >= 0) | (after >= 0), dist.clamp(min=1.0), float("inf"))
    return c_before * (1.0 - t) + c_after * t, dist


def smooth_base(colour: Tensor, low: Tensor, weight: Tensor, depth: Tensor, levels: int) -> Tensor:
    """[3, H, W]: the known pixels of ``colour`` kept, the others continuing the background smoothly.

    The colours continued are those of ``low`` (the image blurred over its known pixels), so that the
    texture of the pixels along the hole's border does not become streaks. Along rows and along
    columns (:func:`_line_fill`), blended by the inverse 8th power of the distance to the known pixels each used: a
    hole at a side of the view continues its rows, one at the top or bottom its columns, a corner both.
    Then the unknown pixels are blurred among themselves (normalised pyramid blurs) across the
    direction they continue, which melts the line-by-line streaks into a gradient: by 2**levels pixels
    at the hole's border, growing to 2**(levels + 2) pixels at that distance from it, so the fill stays
    continuous with the border while deep inside no streak survives.
    """
    known = weight[0] > 0
    by_row, d_row = _line_fill(low, weight, depth, 1)
    by_column, d_col = _line_fill(low, weight, depth, 0)
    # Inverse 8th powers: the nearer direction wins clearly (a side hole's far top edge must not tint it).
    r2, c2 = d_row * d_row, d_col * d_col
    r4, c4 = r2 * r2, c2 * c2
    w_row, w_col = 1.0 / (r4 * r4), 1.0 / (c4 * c4)  # 0 where a line has no known pixel
    fill = (by_row * w_row + by_column * w_col) / (w_row + w_col).clamp(min=1e-30)
    # Streaks run along the direction a pixel continues: blur across it (rows continued: vertically;
    # columns continued: horizontally), more so deeper in the hole, so bands are not mixed needlessly.
    hole = (~known).to(torch.float32)[None]
    share = (w_row / (w_row + w_col).clamp(min=1e-30))[None]  # how much of a pixel comes from its row
    t = (torch.minimum(d_row, d_col) / 2.0 ** (levels + 2)).clamp(max=1.0)[None]
    out = fill
    for dim, part in ((1, share), (2, 1.0 - share)):
        near, far = _blur(out, hole, levels, dim), _blur(out, hole, levels + 2, dim)
        out = out * (1.0 - part) + part * (near * (1.0 - t) + far * t)
    out = _blur(out, hole, max(1, levels - 2))  # and a light isotropic blur for the corners
    return torch.where(known[None], colour, out)


# ----------------------------------------------------------------------------- tiles of detail


@dataclass
class _View:
    """The working tensors of one fill, padded (bottom, right) to a multiple of the pyramid's size."""

    colour: Tensor  # [3, H, W] float32 in [0, 1]
    mask: Tensor  # [H, W] bool, to fill
    source: Tensor  # [H, W] bool, may give detail
    depth: Tensor  # [H, W] float32 (masked pixels: the background depth they continue)
    region: Tensor  # [H, W] int64
    photo: Tensor  # [H, W] bool, sources seen in the photo itself (preferred)


def _tile_max(x: Tensor, step: int, gy: int, gx: int) -> Tensor:
    """[Gy, Gx] maximum of ``x`` [H, W] over the support of each tile (the 2 x 2 cells of ``step`` pixels
    around its centre); max is exact in any order."""
    h, w = x.shape
    cells = F.pad(x, (0, (gx - 1) * step - w, 0, (gy - 1) * step - h))
    cells = F.max_pool2d(cells[None, None], step, step)[0, 0]  # [Gy-1, Gx-1]
    cells = F.pad(cells, (1, 1, 1, 1))
    return torch.maximum(torch.maximum(cells[:-1, :-1], cells[:-1, 1:]), torch.maximum(cells[1:, :-1], cells[1:, 1:]))


def _dilate_max(x: Tensor, radius: int) -> Tensor:
    """Maximum of ``x`` [H, W] over a (2r+1)^2 square, as two 1-D passes (max is exact in any order)."""
    k = 2 * radius + 1
    y = F.max_pool2d(x[None, None], (1, k), 1, (0, radius))
    return F.max_pool2d(y, (k, 1), 1, (radius, 0))[0, 0]


@dataclass
class _Tiles:
    """The tile grid of one fill and what each tile must match."""

    step: int  # grid spacing (pixels)
    gy: int
    gx: int
    node: Tensor  # [G] flat pixel of each tile centre
    zt: Tensor  # [G] depth the tile continues (the farthest hole pixel under it)
    colour: Tensor  # [3, G] base colour at the centre
    region: Tensor  # [G]


def _score(v: _View, blur: Tensor, t: _Tiles, cand: Tensor, cfg: TextureFillConfig) -> Tensor:
    """[G, K] score of giving each tile the detail around source pixel ``cand`` [G, K] (flat; lower =
    better): blurred colour vs the tile's base colour, depth, photo or earlier fill, region and distance; BIG for a pixel that is no source or much nearer than the tile's background."""
    _, h, w = v.colour.shape
    cand = cand.clamp(0, h * w - 1)
    diff = blur.reshape(3, -1)[:, cand] - t.colour[:, :, None]
    score = (diff[0] * diff[0] + diff[1] * diff[1]) + diff[2] * diff[2]
    zs = v.depth.reshape(-1)[cand]
    rel = (zs - t.zt[:, None]) / (zs + t.zt[:, None])
    score = score + cfg.depth_weight * rel * rel
    score = score + torch.where(v.photo.reshape(-1)[cand], 0.0, cfg.filled_weight)
    score = score + torch.where(v.region.reshape(-1)[cand] != t.region[:, None], cfg.region_weight, 0.0)
    dy = (cand // w - (t.node // w)[:, None]).to(torch.float32)
    dx = (cand % w - (t.node % w)[:, None]).to(torch.float32)
    score = score + cfg.distance_weight * (dy * dy + dx * dx) / float(h * h + w * w)
    bad = ~v.source.reshape(-1)[cand] | (zs < cfg.near * t.zt[:, None])
    return torch.where(bad, BIG, score)


def _tiles(v: _View, base: Tensor, step: int) -> _Tiles:
    _, h, w = v.colour.shape
    gy, gx = -(-h // step) + 1, -(-w // step) + 1
    ny = (torch.arange(gy, device=base.device) * step).clamp(max=h - 1)
    nx = (torch.arange(gx, device=base.device) * step).clamp(max=w - 1)
    node = (ny[:, None] * w + nx[None, :]).reshape(-1)
    hole_depth = _tile_max(torch.where(v.mask, v.depth, 0.0), step, gy, gx).reshape(-1)
    zt = torch.where(hole_depth > 0, hole_depth, v.depth.reshape(-1)[node])
    region = v.region.reshape(-1)[node]
    return _Tiles(step, gy, gx, node, zt, base.reshape(3, -1)[:, node], region)


def _tile_sources(v: _View, base: Tensor, blur: Tensor, step: int, cfg: TextureFillConfig, seed: int) -> Tensor:
    """[3, Gy, Gx]: offset (dy, dx) from each tile centre (grid of ``step`` pixels) to its detail source,
    and the depth the tile continues as a third plane.

    Each tile tries ``cfg.draws`` random source pixels and keeps the best (:func:`_score`). (Trying the
    neighbours' offsets too, so that tiles continue each other's texture, halved the detail measured on
    the demo, so it is not done.) Zero offsets where there is no source."""
    w = v.colour.shape[2]
    t = _tiles(v, base, step)
    pool = v.source.reshape(-1).nonzero().squeeze(1)
    if len(pool) == 0:
        return torch.zeros(3, t.gy, t.gx, device=base.device)
    ids = torch.arange(len(t.node) * cfg.draws, device=base.device).reshape(len(t.node), cfg.draws)
    cand = pool[_randint(len(pool), ids, seed)]  # [G, K] flat source pixels
    score = _score(v, blur, t, cand, cfg)
    pick = torch.argmin(score, 1, keepdim=True)  # first of equal minima: deterministic
    best = torch.gather(cand, 1, pick)[:, 0]
    dy, dx = best // w - t.node // w, best % w - t.node % w
    off = torch.stack([dy.to(torch.float32), dx.to(torch.float32), t.zt])
    return off.reshape(3, t.gy, t.gx)


def _luma(colour: Tensor) -> Tensor:
    """[3, H, W] RGB -> [1, H, W] BT.601 luma (a fixed order of element-wise operations)."""
    return (0.299 * colour[0:1] + 0.587 * colour[1:2]) + 0.114 * colour[2:3]


def _blend_detail(v: _View, detail: Tensor, off: Tensor, step: int, cfg: TextureFillConfig) -> Tensor:
    """[1, N] detail for the masked pixels: the tiles' detail under tent weights, blended so that the
    variance of independent tiles is kept (sum w d / sqrt(sum w^2) over the tiles that have a source;
    tiles copying the same pixel count as one)."""
    _, h, w = v.colour.shape
    ys, xs = v.mask.nonzero(as_tuple=True)
    i0, j0 = ys // step, xs // step
    fy = (ys - i0 * step).to(torch.float32) / step
    fx = (xs - j0 * step).to(torch.float32) / step
    total = torch.zeros(1, len(ys), device=ys.device)
    flat, depth = detail.reshape(1, -1), v.depth.reshape(-1)
    usable = v.source.reshape(-1)
    weights, sources = [], []
    for di, dj in ((0, 0), (0, 1), (1, 0), (1, 1)):  # a fixed order of additions
        wt = (fy if di else 1.0 - fy) * (fx if dj else 1.0 - fx)
        oy, ox = off[0, i0 + di, j0 + dj].long(), off[1, i0 + di, j0 + dj].long()
        zt = off[2, i0 + di, j0 + dj]
        sy, sx = ys + oy, xs + ox
        inside = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
        at = sy.clamp(0, h - 1) * w + sx.clamp(0, w - 1)
        good = inside & usable[at] & ((oy != 0) | (ox != 0)) & (depth[at] >= cfg.near * zt)
        wt = torch.where(good, wt, 0.0)
        total = total + wt * flat[:, at]
        weights.append(wt)
        sources.append(at)
    # Tiles that copy the same source pixel add up like one (their detail is the same, not independent).
    norm = torch.zeros(len(ys), device=ys.device)
    for a in range(4):
        for b in range(4):
            norm = norm + torch.where(sources[a] == sources[b], weights[a] * weights[b], 0.0)
    return torch.where(norm > 0, total / torch.sqrt(norm).clamp(min=1e-12), 0.0)


# ----------------------------------------------------------------------------- the fill


def _check(image: np.ndarray, mask: np.ndarray, guide: FillGuide | None) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if mask.shape != image.shape[:2] or mask.dtype != bool:
        raise ValueError(f"mask must be bool {image.shape[:2]}, got {mask.dtype} {mask.shape}")
    if guide is not None:
        for name in ("depth", "regions", "source", "photo"):
            if getattr(guide, name).shape != mask.shape:
                raise ValueError(f"guide.{name} must be {mask.shape}, got {getattr(guide, name).shape}")


def _view_tensors(image: np.ndarray, mask: np.ndarray, guide: FillGuide | None, multiple: int, device) -> _View:
    """The inputs as tensors on ``device``, padded with pixels that are neither known nor to fill."""
    h, w = mask.shape
    hh, ww = -(-h // multiple) * multiple, -(-w // multiple) * multiple

    def put(x: np.ndarray, fill, dtype) -> Tensor:
        out = np.full((hh, ww, *x.shape[2:]), fill, dtype)
        out[:h, :w] = x
        return torch.as_tensor(out, device=device)

    source = ~mask if guide is None else guide.source & ~mask
    depth = np.ones((h, w), np.float32) if guide is None else np.maximum(guide.depth, 1e-6)
    regions = np.zeros((h, w), np.int64) if guide is None else guide.regions
    photo = source if guide is None else guide.photo & source
    return _View(
        put(image.astype(np.float32) / 255.0, 0.0, np.float32).permute(2, 0, 1).contiguous(),
        put(mask, False, bool),
        put(source, False, bool),
        put(depth, 1.0, np.float32),
        put(regions, 0, np.int64),
        put(photo, False, bool),
    )


def _base_weight(v: _View, guard: int) -> Tensor:
    """[1, H, W] weight of each pixel in the base: known pixels, except those much nearer (< 0.8x) than
    the farthest hole depth within ``guard`` pixels (the foreground beside a disocclusion)."""
    known = ~v.mask
    background = _dilate_max(torch.where(v.mask, v.depth, 0.0), guard)
    return (known & ~(v.depth < 0.8 * background)).to(torch.float32)[None]


def texture_fill(
    image: np.ndarray,
    mask: np.ndarray,
    guide: FillGuide | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    config: TextureFillConfig | None = None,
) -> np.ndarray:
    """Fill the ``mask`` pixels of ``image``: smooth base from the background plus tiled detail (module doc).

    Args:
        image: (H, W, 3) uint8. mask: (H, W) bool, True = to fill. guide: depth, regions and the pixels
        that may give detail (default: every unmasked pixel; no depth or region preference).
        device: where the torch work runs. seed: seed of the tiles' random draws.
    Returns (H, W, 3) uint8: ``image`` with the masked pixels filled, the others unchanged.
    """
    _check(image, mask, guide)
    if not mask.any():
        return image.copy()
    cfg = config or TextureFillConfig()
    h, w = mask.shape
    scale = h / 720.0
    levels = max(1, int(np.log2(max(min(h, w), 8) / 4)))
    v = _view_tensors(image, mask, guide, 2 ** max(levels, 3), device)  # the base blurs up to 2**(levels - 1)
    weight = _base_weight(v, max(2, round(cfg.guard * scale)))
    weight[:, h:], weight[:, :, w:] = 0.0, 0.0  # the padding is not known
    # The detail band and the tiles scale with the view, but never below the 2-pixel band that makes a
    # fill look sharp (the fill-quality measure's) nor tiles too small to hold a texture.
    nd = max(2, min(levels, round(cfg.detail_levels + np.log2(max(scale, 1e-3)))))
    base = smooth_base(v.colour, _blur(v.colour, weight, nd), weight, v.depth, max(1, levels - 3))
    known = (~v.mask).to(torch.float32)[None]
    known[:, h:], known[:, :, w:] = 0.0, 0.0
    blur = _blur(v.colour, known, nd)
    detail = torch.where(v.source[None], _luma(v.colour) - _luma(blur), 0.0)  # [1, H, W] luma detail
    step = max(8, round(cfg.tile * scale))
    off = _tile_sources(v, base, blur, step, cfg, seed)
    # Detail modulates the base's brightness, keeping its hue: base * (1 + d / luma(base)). (Relative
    # detail, d / luma of the source's blur, looked alike and measured a third less texture.)
    base_fill = base[:, v.mask]
    luma = _luma(base_fill[:, None])[:, 0].clamp(min=0.05)
    fill = base_fill * (1.0 + _blend_detail(v, detail, off, step, cfg) / luma)
    out = v.colour.clone()
    out[:, v.mask] = fill
    result = torch.round(out.clamp(0.0, 1.0) * 255.0).to(torch.uint8)[:, :h, :w].permute(1, 2, 0).cpu().numpy()
    return np.where(mask[..., None], result, image)


class TextureInpainter:
    """:func:`texture_fill` as a guided :data:`scene.multiview.Inpainter` (``--inpaint texture``).

    Stateless: the same view, guide and seed always give the same fill, whatever came before.
    """

    guided = True

    def __init__(self, device: str | torch.device = "cpu", seed: int = 0, config: TextureFillConfig | None = None):
        self.device, self.seed, self.config = device, int(seed), config or TextureFillConfig()

    def __call__(self, image: np.ndarray, mask: np.ndarray, guide: FillGuide | None = None) -> np.ndarray:
        """(H, W, 3) uint8 image, (H, W) bool mask, optional guide -> (H, W, 3) uint8 filled image."""
        return texture_fill(image, mask, guide, self.device, self.seed, self.config)
