"""Tiled front-to-back alpha compositing in pure PyTorch with a hand-written backward pass.

Semantics follow gsplat 1.5.3 (classic mode) per pixel at (j + 0.5, i + 0.5):
sigma = 0.5 (a dx^2 + c dy^2) + b dx dy, alpha = min(0.999, opacity exp(-sigma)); contributions with
alpha < 1/255 are skipped; compositing stops *before* the Gaussian that would bring the transmittance
to <= 1e-4 (that one and all behind it are dropped). No gradient flows through skipped or clamped alphas.

Speed: all pixels of a tile share one depth-sorted list, so a tile is a dense [P pixels, K Gaussians]
problem. Tiles are batched by similar list length (padding stays small) under an element budget
(memory stays bounded). sigma is a quadratic form in the tile-local pixel coordinates, so it is one
batched matmul of a fixed [P, 6] pixel basis with [6, K] per-Gaussian coefficients; the backward pass
reduces over pixels with the same basis. Padding entries point at an extra all-zero instance (opacity 0),
so they need no masks. The forward keeps its [P, K] intermediates for the backward pass while they fit in
CACHE_ELEMENTS; beyond that the backward pass recomputes them per batch, so memory stays bounded.
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
# Total [P, K] elements (over all batches) whose forward intermediates (4 tensors) are kept for backward.
CACHE_ELEMENTS = {"cpu": 1 << 24, "cuda": 1 << 26}


@dataclass
class _Batch:
    tiles: Tensor  # [B] tile ids
    gids: Tensor  # [B, K] flat instance ids; padding = M (the extra zero instance)


def _plan_batches(tl: TileLists, pixels: int, pad_id: int) -> list[_Batch]:
    """Group non-empty tiles with similar list lengths into batches under the element budget."""
    budget = ELEMENT_BUDGET.get(tl.ids.device.type, ELEMENT_BUDGET["cpu"])
    nonempty = torch.nonzero(tl.counts > 0).squeeze(1)
    if len(nonempty) == 0:
        return []
    counts = tl.counts[nonempty]
    order = torch.argsort(counts)
    nonempty, counts = nonempty[order], counts[order]
    counts_list = counts.tolist()
    padded_ids = torch.cat([tl.ids, torch.full((1,), pad_id, dtype=tl.ids.dtype, device=tl.ids.device)])
    batches, start = [], 0
    while start < len(counts_list):
        stop = start + 1
        while stop < len(counts_list) and (stop + 1 - start) * counts_list[stop] * pixels <= budget:
            stop += 1
        tiles = nonempty[start:stop]
        ar = torch.arange(counts_list[stop - 1], device=tl.ids.device)
        valid = ar[None] < counts[start:stop, None]
        idx = torch.where(valid, tl.offsets[tiles, None] + ar[None], len(tl.ids))
        batches.append(_Batch(tiles=tiles, gids=padded_ids[idx]))
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
    """Per-batch Gaussian data in tile-local coordinates, all [B, K] (colours [B, K, D])."""

    mx: Tensor
    my: Tensor
    ca: Tensor
    cb: Tensor
    cc: Tensor
    op: Tensor
    col: Tensor


def _gather(batch: _Batch, tl: TileLists, means2d: Tensor, conics: Tensor, colors: Tensor, opacities: Tensor) -> _Local:
    centre = _tile_centres(batch.tiles, tl, means2d.dtype)
    m = means2d[batch.gids]  # [B, K, 2]
    cn = conics[batch.gids]
    return _Local(
        mx=m[..., 0] - centre[:, :1],
        my=m[..., 1] - centre[:, 1:],
        ca=cn[..., 0],
        cb=cn[..., 1],
        cc=cn[..., 2],
        op=opacities[batch.gids],
        col=colors[batch.gids],
    )


def _neg_coefficients(g: _Local) -> Tensor:
    """[B, 6, K] coefficients such that -sigma = basis @ coefficients."""
    k0 = 0.5 * g.ca * g.mx * g.mx + 0.5 * g.cc * g.my * g.my + g.cb * g.mx * g.my
    ku = -g.ca * g.mx - g.cb * g.my
    kv = -g.cc * g.my - g.cb * g.mx
    return -torch.stack([k0, ku, kv, 0.5 * g.ca, 0.5 * g.cc, g.cb], dim=1)


@dataclass
class _Fwd:
    """Per-batch compositing state: [B, P, K] tensors and t_final [B, P]."""

    expo: Tensor  # exp(-sigma)
    alpha: Tensor  # min(MAX_ALPHA, opacity * expo), 0 where skipped (< 1/255) or after termination
    t_before: Tensor  # transmittance in front of each Gaussian (meaningful where alpha > 0)
    weight: Tensor  # alpha * t_before
    t_final: Tensor  # transmittance behind the last contributing Gaussian


def _forward_batch(basis: Tensor, g: _Local) -> _Fwd:
    expo = torch.matmul(basis, _neg_coefficients(g)).clamp_max_(0.0).exp_()  # [B, P, K]
    alpha = (expo * g.op[:, None, :]).clamp_max_(MAX_ALPHA)
    alpha = torch.nn.functional.threshold_(alpha, ALPHA_THRESHOLD, 0.0)  # skip alpha < 1/255
    one_minus = 1.0 - alpha
    t_after = torch.cumprod(one_minus, dim=-1)  # the sequential product of gsplat's per-pixel loop
    # T never increases, so the kept entries (T > T_MIN) are a prefix: count them by binary search.
    threshold = torch.full_like(t_after[..., :1], -T_MIN)
    kept = torch.searchsorted(t_after.neg(), threshold)[..., 0]
    t_final = torch.gather(torch.nn.functional.pad(t_after, (1, 0), value=1.0), -1, kept[..., None])[..., 0]
    if bool((kept < alpha.shape[-1]).any()):  # some pixel terminates: drop its tail
        # A 0/1 float factor: ops with bool masks (masked_fill, where) are ~30x slower on CPU.
        alpha.mul_(torch.sign(torch.nn.functional.threshold(t_after, T_MIN, 0.0)))
        one_minus = 1.0 - alpha
    t_before = t_after.div_(one_minus)  # exact where kept; unused (alpha == 0) elsewhere
    return _Fwd(expo=expo, alpha=alpha, t_before=t_before, weight=alpha * t_before, t_final=t_final)


def _local_grads(g: _Local, mom: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients w.r.t. (mx, my, ca, cb, cc) [B, K] from sigma's pixel moments mom [B, 6, K]."""
    m0, m1, m2, m3, m4, m5 = mom.unbind(1)
    g_mx = m0 * (g.ca * g.mx + g.cb * g.my) - m1 * g.ca - m2 * g.cb
    g_my = m0 * (g.cc * g.my + g.cb * g.mx) - m1 * g.cb - m2 * g.cc
    g_ca = 0.5 * m0 * g.mx * g.mx - m1 * g.mx + 0.5 * m3
    g_cc = 0.5 * m0 * g.my * g.my - m2 * g.my + 0.5 * m4
    g_cb = m0 * g.mx * g.my - m1 * g.my - m2 * g.mx + m5
    return g_mx, g_my, g_ca, g_cb, g_cc


def _backward_batch(basis: Tensor, g: _Local, f: _Fwd, g_acc: Tensor, g_trans: Tensor):
    """Gradients of one batch: (means2d [B, K, 2], conics [B, K, 3], colours [B, K, D], opacities [B, K]).

    g_acc [B, P, D] and g_trans [B, P] are the incoming gradients of the accumulated colour and of T_final.
    """
    gc = torch.matmul(g_acc, g.col.transpose(1, 2))  # [B, P, K]: dL/dacc . colour_k
    wgc = f.weight * gc
    # dL/dalpha_k = T_k gc_k - (sum_{j>k} w_j gc_j + dL/dT_final T_final) / (1 - alpha_k)
    behind = (wgc.sum(-1, keepdim=True) + (g_trans * f.t_final)[..., None]) - torch.cumsum(wgc, dim=-1)
    d_alpha = f.t_before * gc - behind / (1.0 - f.alpha)
    # Only where 0 < alpha < MAX_ALPHA: not skipped, not terminated, not clamped (as gsplat).
    d_alpha.mul_(torch.sign(f.alpha * (MAX_ALPHA - f.alpha)))
    d_raw_expo = d_alpha.mul_(f.expo)  # dL/dopacity per pixel; dL/dsigma = -opacity * this
    d_op = d_raw_expo.sum(dim=1)
    mom = torch.matmul(basis.t(), d_raw_expo) * (-g.op[:, None, :])  # [B, 6, K] moments of dL/dsigma
    d_mx, d_my, d_ca, d_cb, d_cc = _local_grads(g, mom)
    d_col = torch.matmul(f.weight.transpose(1, 2), g_acc)
    return torch.stack([d_mx, d_my], -1), torch.stack([d_ca, d_cb, d_cc], -1), d_col, d_op


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


def _with_zero_row(x: Tensor) -> Tensor:
    """Append the all-zero instance that padding entries point at."""
    return torch.cat([x, x.new_zeros((1, *x.shape[1:]))])


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, tl: TileLists, n_cams: int, width: int, height: int):
        pixels = tl.tile_size**2
        basis = _pixel_basis(tl.tile_size, means2d.dtype, means2d.device)
        ext = [_with_zero_row(x) for x in (means2d, conics, colors, opacities)]
        acc = colors.new_zeros(len(tl.counts), pixels, colors.shape[-1])
        trans = colors.new_ones(len(tl.counts), pixels, 1)
        batches = _plan_batches(tl, pixels, pad_id=len(means2d))
        total = sum(b.gids.numel() for b in batches) * pixels
        wants_grad = any(ctx.needs_input_grad[:4])
        cache = wants_grad and total <= CACHE_ELEMENTS.get(colors.device.type, CACHE_ELEMENTS["cpu"])
        saved = []  # per batch: gathered [B, K] data (+ [B, P, K] state when caching)
        for batch in batches:
            g = _gather(batch, tl, *ext)
            f = _forward_batch(basis, g)
            acc[batch.tiles] = torch.matmul(f.weight, g.col)
            trans[batch.tiles] = f.t_final[..., None]
            saved.append((g, f if cache else None))
        ctx.save_for_backward(means2d, conics, colors, opacities)
        ctx.geometry = (tl, batches, saved)
        return _from_tiles(acc, tl, n_cams, width, height), _from_tiles(trans, tl, n_cams, width, height)[..., 0]

    @staticmethod
    def backward(ctx, grad_acc, grad_trans):
        means2d, conics, colors, opacities = ctx.saved_tensors
        tl, batches, saved = ctx.geometry
        basis = _pixel_basis(tl.tile_size, means2d.dtype, means2d.device)
        g_acc_t = _to_tiles(grad_acc.contiguous(), tl)
        g_t_t = _to_tiles(grad_trans[..., None].contiguous(), tl)[..., 0]
        grads = [_with_zero_row(torch.zeros_like(x)) for x in (means2d, conics, colors, opacities)]
        for batch, (g, f) in zip(batches, saved):
            f = f if f is not None else _forward_batch(basis, g)
            parts = _backward_batch(basis, g, f, g_acc_t[batch.tiles], g_t_t[batch.tiles])
            ids = batch.gids.reshape(-1)
            for buf, part in zip(grads, parts):
                buf.index_add_(0, ids, part.reshape(len(ids), *buf.shape[1:]))
        return (*(buf[:-1] for buf in grads), None, None, None, None)


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
