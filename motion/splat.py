"""Forward splatting of points into an image with a z-buffer (nearest surface wins).

Used to render the photo's point cloud into novel views (stage 1) and to forward-warp frames of the
looping video. Pure torch, vectorised, runs on the tensors' device.

Footprint model: a point stands for a square patch of ``footprint`` pixels per side centred on its
projection; it covers every pixel whose centre lies inside that square (and always the pixel nearest
to it, so no point is lost). At the source view every point lands exactly on a pixel centre, so a
footprint below 2 covers only its own pixel and the photo is reproduced exactly; in a nearby view a
surface stretched by up to ``footprint`` times still has no cracks. Among the points covering a pixel,
those within ``depth_tolerance`` (relative) of the nearest depth form the visible surface, and the one
whose centre is closest to the pixel wins, so a surface is resampled by nearest neighbour rather than
by whichever overlapping neighbour happens to be a hair nearer.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_inputs(uv: Tensor, z: Tensor, values: Tensor, height: int, width: int, radius: int) -> None:
    if not isinstance(uv, Tensor) or uv.ndim != 2 or uv.shape[1] != 2:
        raise ValueError(f"uv must be a (P, 2) tensor, got {getattr(uv, 'shape', type(uv))}")
    p = uv.shape[0]
    if not isinstance(z, Tensor) or z.shape != (p,):
        raise ValueError(f"z must be a ({p},) tensor, got {getattr(z, 'shape', type(z))}")
    if not isinstance(values, Tensor) or values.ndim != 2 or values.shape[0] != p:
        raise ValueError(f"values must be a ({p}, C) tensor, got {getattr(values, 'shape', type(values))}")
    if not (uv.is_floating_point() and z.is_floating_point()):
        raise TypeError("uv and z must be floating point tensors")
    if uv.device != z.device or uv.device != values.device:
        raise ValueError("uv, z and values must be on the same device")
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    if int(radius) < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")


def _candidates(
    uv: Tensor, z: Tensor, height: int, width: int, radius: int, footprint: float | Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """(point index [M], pixel linear index [M], squared centre distance [M]) of every point-pixel cover."""
    x, y = uv[:, 0], uv[:, 1]
    # NaN fails every comparison, so these bounds also drop non-finite points.
    keep = (
        (z > 0)
        & (z < float("inf"))
        & (x > -radius - 1)
        & (x < width + radius)
        & (y > -radius - 1)
        & (y < height + radius)
    )
    ids = keep.nonzero().squeeze(1)
    uv = uv[ids]
    nearest = torch.round(uv)
    if isinstance(footprint, Tensor):
        half = footprint[ids].to(uv.dtype)[:, None] / 2
    else:
        half = float(footprint) / 2
    if not isinstance(footprint, Tensor) and footprint < 2.0:
        # A square narrower than 2 px only reaches the 2 x 2 pixel centres around the point.
        base, span = torch.floor(uv), torch.arange(0, 2, device=uv.device, dtype=uv.dtype)
    else:
        base, span = nearest, torch.arange(-radius, radius + 1, device=uv.device, dtype=uv.dtype)
    # Per axis first ([N, K] each), then the K x K combinations as booleans only: cheap at ~10^6 points.
    px, py = base[:, :1] + span, base[:, 1:] + span
    dx, dy = px - uv[:, :1], py - uv[:, 1:]
    inside_x, inside_y = (px >= 0) & (px < width), (py >= 0) & (py < height)
    cx, cy = (dx.abs() <= half) & inside_x, (dy.abs() <= half) & inside_y
    covers = cy[:, :, None] & cx[:, None, :]
    if isinstance(footprint, Tensor) or footprint < 1.0:  # else the square always holds the nearest pixel
        nx, ny = (px == nearest[:, :1]) & inside_x, (py == nearest[:, 1:]) & inside_y
        covers |= ny[:, :, None] & nx[:, None, :]
    rows, ky, kx = covers.nonzero(as_tuple=True)
    pixel = py[rows, ky].long() * width + px[rows, kx].long()
    dist2 = dx[rows, kx] ** 2 + dy[rows, ky] ** 2
    return ids[rows], pixel, dist2


def zbuffer_splat(
    uv: Tensor,
    z: Tensor,
    values: Tensor,
    height: int,
    width: int,
    radius: int = 1,
    footprint: float | Tensor = 1.5,
    depth_tolerance: float = 0.01,
) -> tuple[Tensor, Tensor, Tensor]:
    """Splat points into an image, keeping the nearest surface at every pixel.

    Args:
        uv: [P, 2] pixel coordinates (x right, y down; pixel centres at integers).
        z: [P] depth along the camera axis (> 0); points with z <= 0 or non-finite uv/z are dropped.
        values: [P, C] what to splat (colours, ids as float, features...).
        height, width: output size in pixels.
        radius: half-size in pixels of the window searched around each point's nearest pixel; it
            bounds the footprint (a footprint up to ``2 * radius + 1`` pixels is honoured).
        footprint: side of the square each point covers, in pixels (float or [P] per point). 1.5
            fills the cracks of a surface magnified up to 1.5x and reproduces the source view exactly.
        depth_tolerance: points within ``z_min * (1 + depth_tolerance)`` at a pixel count as the same
            surface; the one closest to the pixel centre wins.

    Returns:
        image [H, W, C] (zeros where empty, dtype of ``values``), depth [H, W] (inf where empty),
        valid [H, W] bool. Gradients flow to ``values`` (the winner's value is gathered).
    """
    _check_inputs(uv, z, values, height, width, radius)
    height, width, radius = int(height), int(width), int(radius)
    if isinstance(footprint, Tensor) and footprint.shape != z.shape:
        raise ValueError(f"footprint must be a float or a ({z.shape[0]},) tensor, got {tuple(footprint.shape)}")
    n_pix = height * width
    device = uv.device
    point, pixel, dist2 = _candidates(uv.detach(), z.detach(), height, width, radius, footprint)
    pz = z.detach()[point]

    zmin = torch.full((n_pix,), float("inf"), device=device, dtype=pz.dtype)
    zmin.scatter_reduce_(0, pixel, pz, reduce="amin", include_self=True)
    # Masking instead of compacting (no nonzero + gathers): candidates behind the surface drop out as inf.
    inf = torch.tensor(float("inf"), device=device, dtype=dist2.dtype)
    dist2 = torch.where(pz <= zmin[pixel] * (1.0 + depth_tolerance), dist2, inf)
    best = torch.full((n_pix,), float("inf"), device=device, dtype=dist2.dtype)
    best.scatter_reduce_(0, pixel, dist2, reduce="amin", include_self=True)
    closest = (dist2 <= best[pixel]) & (dist2 < inf)
    winner = torch.full((n_pix,), -1, device=device, dtype=torch.long)
    winner.scatter_reduce_(0, pixel, torch.where(closest, point, -1), reduce="amax", include_self=True)  # ties: last

    valid = winner >= 0
    safe = winner.clamp(min=0)
    image = values[safe] * valid[:, None].to(values.dtype)
    depth = torch.where(valid, z.detach()[safe], torch.full_like(zmin, float("inf")))
    return image.reshape(height, width, -1), depth.reshape(height, width), valid.reshape(height, width)
