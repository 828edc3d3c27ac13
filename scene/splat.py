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
    keep = torch.isfinite(uv).all(1) & torch.isfinite(z) & (z > 0)
    ids = keep.nonzero().squeeze(1)
    uv = uv[ids]
    half = footprint[ids].to(uv.dtype)[:, None] / 2 if isinstance(footprint, Tensor) else float(footprint) / 2
    # Keep the projected coordinates far inside int range before rounding (points way off-screen).
    centre = torch.round(uv.clamp(-2.0 * (width + height), 3.0 * (width + height)))
    span = torch.arange(-radius, radius + 1, device=uv.device, dtype=uv.dtype)
    oy, ox = torch.meshgrid(span, span, indexing="ij")
    ox, oy = ox.reshape(1, -1), oy.reshape(1, -1)  # [1, K]
    px, py = centre[:, :1] + ox, centre[:, 1:] + oy  # [N, K] pixel centres
    dx, dy = px - uv[:, :1], py - uv[:, 1:]
    covers = (dx.abs() <= half) & (dy.abs() <= half)
    covers |= (ox == 0) & (oy == 0)  # the nearest pixel always, whatever the footprint
    covers &= (px >= 0) & (px < width) & (py >= 0) & (py < height)
    rows, cols = covers.nonzero(as_tuple=True)
    pixel = py[rows, cols].long() * width + px[rows, cols].long()
    dist2 = dx[rows, cols] ** 2 + dy[rows, cols] ** 2
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
    front = pz <= zmin[pixel] * (1.0 + depth_tolerance)
    point, pixel, dist2 = point[front], pixel[front], dist2[front]

    best = torch.full((n_pix,), float("inf"), device=device, dtype=dist2.dtype)
    best.scatter_reduce_(0, pixel, dist2, reduce="amin", include_self=True)
    closest = dist2 <= best[pixel]
    winner = torch.full((n_pix,), -1, device=device, dtype=torch.long)
    winner.scatter_reduce_(0, pixel[closest], point[closest], reduce="amax", include_self=True)  # ties: last

    valid = winner >= 0
    safe = winner.clamp(min=0)
    image = values[safe] * valid[:, None].to(values.dtype)
    depth = torch.where(valid, z.detach()[safe], torch.full_like(zmin, float("inf")))
    return image.reshape(height, width, -1), depth.reshape(height, width), valid.reshape(height, width)
