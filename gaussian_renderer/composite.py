"""Tiled front-to-back alpha compositing in pure PyTorch with a hand-written backward pass.

Semantics follow gsplat 1.5.3 (classic mode) per pixel at (j + 0.5, i + 0.5):
sigma = 0.5 (a dx^2 + c dy^2) + b dx dy, alpha = min(0.999, opacity exp(-sigma)); contributions with
alpha < 1/255 are skipped; compositing stops *before* the Gaussian that would bring the transmittance
to <= 1e-4 (that one and all behind it are dropped).

Speed: all pixels of a tile share one depth-sorted list, so a tile is a dense [P pixels, K Gaussians]
problem. Tiles are batched by similar list length (padding stays small) under an element budget
(memory stays bounded). sigma is a quadratic form in the tile-local pixel coordinates, so it is one
batched matmul of a fixed [P, 6] pixel basis with [6, K] per-Gaussian coefficients; the backward pass
reduces over pixels with the same basis. The backward pass recomputes the forward per batch instead
of storing [P, K] intermediates, so memory does not grow with the number of tiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .projection import ALPHA_THRESHOLD
from .tiles import TileLists

MAX_ALPHA = 0.999  # gsplat 1.5.3 clamps alpha here (the original 3DGS used 0.99)
T_MIN = 1e-4  # early termination: stop before transmittance would fall to <= T_MIN
# Tiles x pixels x Gaussians evaluated at once: bounds memory (~10 float temporaries of this size) while
# keeping the Python loop short. GPUs get a larger budget because kernel launches dominate there.
ELEMENT_BUDGET = {"cpu": 1 << 21, "cuda": 1 << 25}


@dataclass
class _Batch:
    tiles: Tensor  # [B] tile ids
    gids: Tensor  # [B, K] flat instance ids (0 for padding)
    valid: Tensor  # [B, K] bool


def _plan_batches(tl: TileLists, pixels: int) -> list[_Batch]:
    """Group non-empty tiles with similar list lengths into batches under the element budget."""
    budget = ELEMENT_BUDGET.get(tl.ids.device.type, ELEMENT_BUDGET["cpu"])
    nonempty = torch.nonzero(tl.counts > 0).squeeze(1)
    if len(nonempty) == 0:
        return []
    counts = tl.counts[nonempty]
    order = torch.argsort(counts)
    nonempty, counts = nonempty[order], counts[order]
    counts_list = counts.tolist()
    batches, start = [], 0
    while start < len(counts_list):
        stop = start + 1
        while stop < len(counts_list) and (stop + 1 - start) * counts_list[stop] * pixels <= budget:
            stop += 1
        tiles = nonempty[start:stop]
        k = counts_list[stop - 1]
        ar = torch.arange(k, device=tl.ids.device)
        valid = ar[None] < counts[start:stop, None]
        idx = torch.where(valid, tl.offsets[tiles, None] + ar[None], torch.zeros_like(ar)[None])
        batches.append(_Batch(tiles=tiles, gids=tl.ids[idx] if len(tl.ids) else idx, valid=valid))
        start = stop
    return batches


def _pixel_basis(tile_size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """[P, 6] basis (1, u, v, u^2, v^2, u v) of pixel centres in tile-centred coordinates."""
    r = torch.arange(tile_size, dtype=dtype, device=device) + 0.5 - 0.5 * tile_size
    v, u = torch.meshgrid(r, r, indexing="ij")
    u, v = u.reshape(-1), v.reshape(-1)
    return torch.stack([torch.ones_like(u), u, v, u * u, v * v, u * v], dim=-1)


def _tile_centres(tiles: Tensor, tl: TileLists, dtype: torch.dtype) -> Tensor:
    """Pixel coordinates [B, 2] of the centres of tiles."""
    col = tiles % tl.tiles_x
    row = (tiles // tl.tiles_x) % tl.tiles_y
    half = 0.5 * tl.tile_size
    return torch.stack([col * tl.tile_size + half, row * tl.tile_size + half], dim=-1).to(dtype)


@dataclass
class _Local:
    """Per-batch Gaussian data in tile-local coordinates, all [B, K]."""

    mx: Tensor
    my: Tensor
    ca: Tensor
    cb: Tensor
    cc: Tensor
    op: Tensor


def _gather(batch: _Batch, tl: TileLists, means2d: Tensor, conics: Tensor, opacities: Tensor) -> _Local:
    centre = _tile_centres(batch.tiles, tl, means2d.dtype)
    m = means2d[batch.gids]  # [B, K, 2]
    cn = conics[batch.gids]
    op = torch.where(
        batch.valid, opacities[batch.gids], torch.zeros((), dtype=opacities.dtype, device=opacities.device)
    )
    return _Local(
        mx=m[..., 0] - centre[:, :1], my=m[..., 1] - centre[:, 1:], ca=cn[..., 0], cb=cn[..., 1], cc=cn[..., 2], op=op
    )


def _coefficients(g: _Local) -> Tensor:
    """[B, 6, K] coefficients such that sigma = basis @ coefficients."""
    k0 = 0.5 * g.ca * g.mx * g.mx + 0.5 * g.cc * g.my * g.my + g.cb * g.mx * g.my
    ku = -g.ca * g.mx - g.cb * g.my
    kv = -g.cc * g.my - g.cb * g.mx
    return torch.stack([k0, ku, kv, 0.5 * g.ca, 0.5 * g.cc, g.cb], dim=1)


@dataclass
class _Fwd:
    """Per-batch compositing state, all [B, P, K] except ``t_final`` [B, P]."""

    expo: Tensor  # exp(-sigma)
    raw: Tensor  # opacity * exp(-sigma), before the MAX_ALPHA clamp
    alpha: Tensor  # clamped alpha, 0 where skipped (< 1/255) or after termination
    one_minus: Tensor  # 1 - alpha (>= 1 - MAX_ALPHA)
    t_before: Tensor  # transmittance in front of each Gaussian
    weight: Tensor  # alpha * t_before
    t_final: Tensor  # transmittance behind the last contributing Gaussian


def _forward_batch(basis: Tensor, g: _Local) -> _Fwd:
    sigma = torch.matmul(basis, _coefficients(g)).clamp_min_(0.0)  # [B, P, K]
    expo = torch.exp(sigma.neg_())
    raw = expo * g.op[:, None, :]
    alpha = raw.clamp_max(MAX_ALPHA)
    alpha = alpha.masked_fill_(alpha < ALPHA_THRESHOLD, 0.0)
    # Sequential product, as gsplat's per-pixel loop: T after each Gaussian.
    t_after = torch.cumprod(1.0 - alpha, dim=-1)
    stop = t_after <= T_MIN  # a prefix of False then all True (T never increases)
    alpha = alpha.masked_fill_(stop, 0.0)
    one_minus = 1.0 - alpha
    t_before = t_after.div_(one_minus)  # exact for kept entries; unused where alpha == 0
    t_final = (t_before * one_minus).masked_fill_(stop, 1.0).amin(dim=-1)
    weight = alpha * t_before
    return _Fwd(expo, raw, alpha, one_minus, t_before, weight, t_final)


def _local_grads(g: _Local, mom: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients w.r.t. (mx, my, ca, cb, cc) [B, K] from sigma's pixel moments mom [B, 6, K]."""
    m0, m1, m2, m3, m4, m5 = mom.unbind(1)
    g_mx = m0 * (g.ca * g.mx + g.cb * g.my) - m1 * g.ca - m2 * g.cb
    g_my = m0 * (g.cc * g.my + g.cb * g.mx) - m1 * g.cb - m2 * g.cc
    g_ca = 0.5 * m0 * g.mx * g.mx - m1 * g.mx + 0.5 * m3
    g_cc = 0.5 * m0 * g.my * g.my - m2 * g.my + 0.5 * m4
    g_cb = m0 * g.mx * g.my - m1 * g.my - m2 * g.mx + m5
    return g_mx, g_my, g_ca, g_cb, g_cc


def _to_tiles(img: Tensor, tl: TileLists) -> Tensor:
    """[C, H, W, D] image -> [C * tiles, P, D] (zero padded at the right/bottom)."""
    c, h, w, d = img.shape
    ts = tl.tile_size
    img = torch.nn.functional.pad(img, (0, 0, 0, tl.tiles_x * ts - w, 0, tl.tiles_y * ts - h))
    img = img.reshape(c, tl.tiles_y, ts, tl.tiles_x, ts, d).permute(0, 1, 3, 2, 4, 5)
    return img.reshape(c * tl.tiles_y * tl.tiles_x, ts * ts, d)


def _from_tiles(tiles: Tensor, tl: TileLists, n_cams: int, width: int, height: int) -> Tensor:
    """[C * tiles, P, D] -> [C, H, W, D] (inverse of :func:`_to_tiles`)."""
    ts, d = tl.tile_size, tiles.shape[-1]
    img = tiles.reshape(n_cams, tl.tiles_y, tl.tiles_x, ts, ts, d).permute(0, 1, 3, 2, 4, 5)
    return img.reshape(n_cams, tl.tiles_y * ts, tl.tiles_x * ts, d)[:, :height, :width]


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, tl: TileLists, n_cams: int, width: int, height: int):
        n_tiles = len(tl.counts)
        pixels = tl.tile_size**2
        basis = _pixel_basis(tl.tile_size, means2d.dtype, means2d.device)
        acc = torch.zeros(n_tiles, pixels, colors.shape[-1], dtype=colors.dtype, device=colors.device)
        trans = torch.ones(n_tiles, pixels, 1, dtype=colors.dtype, device=colors.device)
        batches = _plan_batches(tl, pixels)
        gathered = []  # small [B, K] per batch, reused by the backward pass
        for batch in batches:
            g = _gather(batch, tl, means2d, conics, opacities)
            col = colors[batch.gids]
            f = _forward_batch(basis, g)
            acc[batch.tiles] = torch.matmul(f.weight, col)
            trans[batch.tiles] = f.t_final[..., None]
            gathered.append((g, col))
        ctx.save_for_backward(means2d, conics, colors, opacities)
        ctx.geometry = (tl, batches, gathered)
        return _from_tiles(acc, tl, n_cams, width, height), _from_tiles(trans, tl, n_cams, width, height)[..., 0]

    @staticmethod
    def backward(ctx, grad_acc, grad_trans):
        means2d, conics, colors, opacities = ctx.saved_tensors
        tl, batches, gathered = ctx.geometry
        basis = _pixel_basis(tl.tile_size, means2d.dtype, means2d.device)
        g_acc_t = _to_tiles(grad_acc.contiguous(), tl)
        g_t_t = _to_tiles(grad_trans[..., None].contiguous(), tl)[..., 0]
        g_means = torch.zeros_like(means2d)
        g_conics = torch.zeros_like(conics)
        g_colors = torch.zeros_like(colors)
        g_opac = torch.zeros_like(opacities)
        for batch, (g, col) in zip(batches, gathered):
            f = _forward_batch(basis, g)
            ga = g_acc_t[batch.tiles]  # [B, P, D]
            gt = g_t_t[batch.tiles] * f.t_final  # dL/dT_final * T_final, [B, P]
            gc = torch.matmul(ga, col.transpose(1, 2))  # [B, P, K]: dL/dacc . colour
            wgc = f.weight * gc
            behind = wgc.sum(-1, keepdim=True) - torch.cumsum(wgc, dim=-1)  # sum over later Gaussians
            d_alpha = f.t_before * gc - (behind + gt[..., None]) / f.one_minus
            # No gradient through skipped/terminated entries or the MAX_ALPHA clamp (as gsplat).
            inactive = (f.alpha == 0) | (f.raw > MAX_ALPHA)
            d_alpha = d_alpha.masked_fill_(inactive, 0.0)
            d_op = (d_alpha * f.expo).sum(dim=1)  # [B, K]
            d_sigma = d_alpha.mul_(f.raw).neg_()
            mom = torch.matmul(basis.t(), d_sigma)  # [B, 6, K]
            d_mx, d_my, d_ca, d_cb, d_cc = _local_grads(g, mom)
            ids = batch.gids.reshape(-1)
            g_means.index_add_(0, ids, torch.stack([d_mx, d_my], -1).reshape(-1, 2))
            g_conics.index_add_(0, ids, torch.stack([d_ca, d_cb, d_cc], -1).reshape(-1, 3))
            g_colors.index_add_(0, ids, torch.matmul(f.weight.transpose(1, 2), ga).reshape(-1, colors.shape[-1]))
            g_opac.index_add_(0, ids, d_op.reshape(-1))
        return g_means, g_conics, g_colors, g_opac, None, None, None, None


def composite(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    tl: TileLists,
    n_cams: int,
    width: int,
    height: int,
) -> tuple[Tensor, Tensor]:
    """Alpha-composite flat instances (camera * N + gaussian) through per-tile lists.

    Args: means2d [M, 2] pixels, conics [M, 3], colors [M, D] (any channels, e.g. RGB + depth),
    opacities [M]; tile lists from :func:`tiles.intersect_tiles`.
    Returns: accumulated colour [C, H, W, D] (no background) and final transmittance [C, H, W].
    """
    return _Composite.apply(means2d, conics, colors, opacities, tl, n_cams, width, height)
