"""EWA projection of 3D Gaussians into pinhole cameras (pure PyTorch, differentiable).

Follows gsplat 1.5.3's classic 3DGS projection so that both backends agree: covariance R S S^T R^T,
the Jacobian of the perspective map evaluated at a centre clamped to 1.3x the field of view, a 0.3-pixel
low-pass added to the 2D covariance, near/far culling on the camera-space depth, and an opacity-aware
3.33-sigma extent per axis (min(3.33, sqrt(2 ln(255 opacity))) sigma).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

EPS2D = 0.3  # pixels^2 added to the 2D covariance (low-pass filter of 3DGS)
ALPHA_THRESHOLD = 1.0 / 255.0  # contributions below this alpha are skipped
MAX_EXTENT_SIGMA = 3.33  # extent of the screen-space box in standard deviations


@dataclass
class Projected:
    """Per-camera, per-Gaussian screen-space quantities (all [C, N, ...])."""

    means2d: Tensor  # [C, N, 2] pixels, differentiable
    conics: Tensor  # [C, N, 3] inverse 2D covariance (a, b, c) of [[a, b], [b, c]], differentiable
    depths: Tensor  # [C, N] camera-space z, differentiable
    radii_xy: Tensor  # [C, N, 2] int32 box half-size in pixels, 0 where culled
    visible: Tensor  # [C, N] bool
    footprint_xy: Tensor  # [C, N, 2] exact half-widths of the alpha >= 1/255 ellipse's bounding box, pixels


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices [N, 3, 3] from quaternions [N, 4] (wxyz, normalised here)."""
    q = quats / quats.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(*quats.shape[:-1], 3, 3)


def _fov_limits(ks: Tensor, width: int, height: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Clamp limits [C, 1] of x/z and y/z (1.3x the half field of view, as gsplat/3DGS)."""
    fx, fy, cx, cy = ks[:, 0, 0], ks[:, 1, 1], ks[:, 0, 2], ks[:, 1, 2]
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    lim_xp = (width - cx) / fx + 0.3 * tan_x
    lim_xn = cx / fx + 0.3 * tan_x
    lim_yp = (height - cy) / fy + 0.3 * tan_y
    lim_yn = cy / fy + 0.3 * tan_y
    return lim_xp[:, None], lim_xn[:, None], lim_yp[:, None], lim_yn[:, None]


def _screen_covariance(
    means_c: Tensor, z: Tensor, rot: Tensor, quats: Tensor, scales: Tensor, ks: Tensor, width: int, height: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Entries (a, b, c) [C, N] of the 2D covariance [[a, b], [b, c]] = (J W M)(J W M)^T.

    J is the perspective Jacobian (centre clamped to 1.3x the field of view), W the camera rotation [C, 3, 3],
    M = R S the Gaussian's [N, 3, 3] factor. Written with broadcasting: batched tiny matmuls are slow on CPU.
    """
    fx, fy = ks[:, 0, 0][:, None], ks[:, 1, 1][:, None]
    lim_xp, lim_xn, lim_yp, lim_yn = _fov_limits(ks, width, height)
    x, y = means_c[..., 0], means_c[..., 1]
    # Clamping keeps the affine approximation sane for centres far outside the view.
    tx = z * torch.minimum(lim_xp, torch.maximum(-lim_xn, x / z))
    ty = z * torch.minimum(lim_yp, torch.maximum(-lim_yn, y / z))
    zeros = torch.zeros_like(z)
    jac = torch.stack([fx / z, zeros, -fx * tx / (z * z), zeros, fy / z, -fy * ty / (z * z)], dim=-1)
    jw = torch.einsum("cnij,cjk->cnik", jac.reshape(*z.shape, 2, 3), rot)  # [C, N, 2, 3]
    m = quat_to_rotmat(quats) * scales[:, None, :]  # [N, 3, 3]
    jwm = (jw[..., :, :, None] * m[None, :, None, :, :]).sum(dim=-2)  # [C, N, 2, 3]
    row0, row1 = jwm[..., 0, :], jwm[..., 1, :]
    return (row0 * row0).sum(-1), (row0 * row1).sum(-1), (row1 * row1).sum(-1)


def project_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmats: Tensor,
    ks: Tensor,
    width: int,
    height: int,
    near: float,
    far: float,
) -> Projected:
    """Project N Gaussians into C cameras.

    Args: means [N, 3] world, quats [N, 4] wxyz, scales [N, 3], opacities [N] in [0, 1],
    viewmats [C, 4, 4] world-to-camera (OpenCV), ks [C, 3, 3] pixels, image size in pixels,
    near/far planes on camera z.
    Returns: a :class:`Projected` with means2d/conics/depths differentiable; culled entries hold
    finite dummy values (so that zero gradients never meet infinities) and radii 0.
    """
    rot, trans = viewmats[:, :3, :3], viewmats[:, :3, 3]
    means_c = torch.einsum("cij,nj->cni", rot, means) + trans[:, None, :]  # [C, N, 3]
    z_raw = means_c[..., 2]
    in_range = (z_raw >= near) & (z_raw <= far)
    # Double-where: culled entries get z = 1 so that 1/z stays finite in forward and backward.
    z = torch.where(in_range, z_raw, torch.ones_like(z_raw))
    a, b, c = _screen_covariance(means_c, z, rot, quats, scales, ks, width, height)
    a, c = a + EPS2D, c + EPS2D
    det = a * c - b * b
    det_ok = det > 0
    det_safe = torch.where(det_ok, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    fx, fy = ks[:, 0, 0][:, None], ks[:, 1, 1][:, None]
    cx, cy = ks[:, 0, 2][:, None], ks[:, 1, 2][:, None]
    means2d = torch.stack([fx * means_c[..., 0] / z + cx, fy * means_c[..., 1] / z + cy], dim=-1)
    radii_xy, footprint, visible = _extents(means2d.detach(), a.detach(), c.detach(), opacities.detach(), width, height)
    visible &= in_range & det_ok
    radii_xy = torch.where(visible[..., None], radii_xy, torch.zeros_like(radii_xy))
    return Projected(
        means2d=means2d, conics=conics, depths=z, radii_xy=radii_xy, visible=visible, footprint_xy=footprint
    )


def _extents(
    means2d: Tensor, var_x: Tensor, var_y: Tensor, opacities: Tensor, width: int, height: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Opacity-aware box half-sizes [C, N, 2] (int32, gsplat's rule), the exact float half-widths [C, N, 2] of
    the region where alpha >= 1/255, and the in-image/opacity visibility [C, N]."""
    op = opacities[None].expand_as(var_x)
    opaque_enough = op >= ALPHA_THRESHOLD
    log_ratio = torch.log(torch.clamp(op, min=ALPHA_THRESHOLD) / ALPHA_THRESHOLD)
    exact = torch.sqrt(2.0 * log_ratio)  # alpha >= 1/255 <=> sigma <= ln(255 opacity)
    extend = torch.clamp(exact, max=MAX_EXTENT_SIGMA)
    sx, sy = torch.sqrt(var_x), torch.sqrt(var_y)
    rx = torch.ceil(extend * sx)
    ry = torch.ceil(extend * sy)
    mx, my = means2d[..., 0], means2d[..., 1]
    inside = (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
    visible = opaque_enough & inside & ((rx > 0) | (ry > 0))
    footprint = torch.stack([exact * sx, exact * sy], dim=-1)
    return torch.stack([rx, ry], dim=-1).to(torch.int32), footprint, visible
