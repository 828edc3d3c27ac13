"""Stage 4 (the paper's core): one 3D motion per point that agrees with the 2D flow of every view.

Unknowns: a displacement ``d_i`` (world units per frame, constant in time: Eulerian) for every point
of a moving region; every other point stays fixed. Objective, vectorised over views::

    L(d) = mean over visible (point i, view v) of |proj_v(x_i + d_i) - proj_v(x_i) - f_v(x_i)|_1
           + smooth_weight * mean over kNN edges (i, j) of |d_i - d_j|^2 / s_ij^2

where ``f_v`` is view v's flow sampled at the point's projection, and a pair counts only if the point
passes the z-buffer test in view v (it is not behind the surface that view's depth map shows) and the
view sees it in its own region. The kNN graph joins points of the same region, so points that no
view constrains (or only along the image plane of one view) follow their neighbours; ``s_ij`` (world
units per pixel at the pair's mean depth) makes the prior a squared difference in pixels.

Preconditioning: we optimise ``delta_i = d_i / s_i`` with ``s_i = z_i / f`` (world units per pixel
at the point's depth in view 0). One unit of ``delta`` moves the point by about one pixel at any
depth, so one learning rate (in pixels) fits sky and foreground alike.

Optimiser: an optional Gauss-Newton start (the per-point 3x3 least-squares problem of the linearised
projection, a few iterations, exact for mutually consistent flows) then Adam on the L1 objective with
a cosine-decayed learning rate. Adam normalises each coordinate's step, so it does not suffer from the
vanishing per-point gradient of a mean-reduced loss over ~10^6 points that stalls plain SGD.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from scene.flow import project_views, projection_tensors
from scene.io import Camera


@dataclass(frozen=True)
class MotionConfig:
    """Settings of the 3D motion optimisation."""

    iterations: int = 100
    """Adam steps (``--train_iteration``)."""
    lr: float = 0.02
    """Adam learning rate in pixel-equivalent units (see preconditioning), cosine-decayed to lr/100."""
    smooth_weight: float = 0.05
    """Weight of the neighbour smoothness prior."""
    knn: int = 6
    """Neighbours per point in the smoothness graph (same region only)."""
    init: Literal["gauss_newton", "zero"] = "gauss_newton"
    """Start from the linearised least-squares solution, or from zero motion."""
    gn_iterations: int = 2
    """Gauss-Newton iterations of the start."""
    depth_tolerance: float = 0.02
    """Relative depth slack of the visibility test."""
    log_every: int = 10
    """Record the loss every this many steps."""


@dataclass
class MotionTargets:
    """What the optimisation fits, for the M moving points."""

    point_ids: Tensor  # [M] long, rows of the point cloud
    targets: Tensor  # [V, M, 2] float32, flow of view v at the point, pixels per frame
    visible: Tensor  # [V, M] bool, the pair (view, point) constrains the motion


@dataclass
class MotionFit:
    """Result of :func:`fit_motion`."""

    motion: Tensor  # [M, 3] float32, world units per frame
    loss_steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    data_loss: list[float] = field(default_factory=list)
    epe: float = float("nan")  # px/frame, mean over visible pairs
    epe_initial: float = float("nan")  # px/frame, of zero motion (= mean target speed)
    seconds: float = 0.0


# ----------------------------------------------------------------------------- targets


def _check_points(xyz: Tensor, name: str = "xyz") -> None:
    if not isinstance(xyz, Tensor) or xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"{name} must be a (P, 3) tensor, got {getattr(xyz, 'shape', type(xyz))}")
    if not xyz.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {xyz.dtype}")


def _sample_maps(maps: Tensor, uv: Tensor, mode: str) -> Tensor:
    """Sample maps [V, C, H, W] at pixels uv [V, P, 2] -> [V, P, C] (zeros outside the image)."""
    h, w = maps.shape[-2:]
    scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], device=uv.device)
    grid = (uv * scale - 1.0).nan_to_num(nan=-2.0, posinf=-2.0, neginf=-2.0)[:, None]  # [V, 1, P, 2]
    out = F.grid_sample(maps, grid, mode=mode, padding_mode="zeros", align_corners=True)
    return out[:, :, 0].permute(0, 2, 1)


def sample_flow_targets(
    xyz: Tensor,
    region: Tensor,
    cameras: list[Camera],
    flows: Tensor,
    depths: Tensor,
    view_regions: Tensor,
    moving_regions: list[int],
    depth_tolerance: float = 0.02,
) -> MotionTargets:
    """Each moving point's target flow in every view, and where it is visible.

    Args:
        xyz: [P, 3] world points. region: [P] region id per point.
        cameras: V cameras. flows: [V, H, W, 2] pixels per frame. depths: [V, H, W] z-depth maps.
        view_regions: [V, H, W] region ids as seen in each view. moving_regions: ids with motion.
        depth_tolerance: a point counts as visible in view v if its depth is at most
            ``(1 + depth_tolerance)`` times the largest depth of the 3x3 pixels around its projection
            (a z-buffer test that forgives half-pixel rounding on slanted ground).

    Returns:
        :class:`MotionTargets` for the points whose region is in ``moving_regions``.
    """
    _check_points(xyz)
    v, h, w = depths.shape
    if len(cameras) != v or flows.shape != (v, h, w, 2) or view_regions.shape != (v, h, w):
        raise ValueError(
            f"need {v} cameras, flows (V, H, W, 2) and view_regions (V, H, W) matching depths {tuple(depths.shape)}; "
            f"got {len(cameras)}, {tuple(flows.shape)}, {tuple(view_regions.shape)}"
        )
    if region.shape != xyz.shape[:1]:
        raise ValueError(f"region must be ({xyz.shape[0]},), got {tuple(region.shape)}")
    device = xyz.device
    moving = torch.isin(region, torch.as_tensor(moving_regions, device=device, dtype=region.dtype))
    ids = torch.nonzero(moving).squeeze(1)
    K, R, t = projection_tensors(cameras, device)
    uv, z = project_views(xyz[ids], K, R, t)  # [V, M, 2], [V, M]
    inside = (z > 0) & (uv[..., 0] > -0.5) & (uv[..., 0] < w - 0.5) & (uv[..., 1] > -0.5) & (uv[..., 1] < h - 0.5)
    far = torch.where(torch.isfinite(depths), depths, torch.full_like(depths, 1e30))
    far = F.max_pool2d(far[:, None], 3, stride=1, padding=1)
    seen_depth = _sample_maps(far, uv, "nearest")[..., 0]
    seen_region = _sample_maps(view_regions[:, None].float(), uv, "nearest")[..., 0]
    visible = inside & (z <= seen_depth * (1.0 + depth_tolerance))
    visible &= seen_region.round().long() == region[ids][None, :].long()
    targets = torch.zeros_like(uv)
    point_region = region[ids]
    for r in moving_regions:
        # Bilinear over the pixels of the point's own region only (normalised): next to a region edge a
        # plain bilinear sample would mix in the zero flow outside it.
        sel = torch.nonzero(point_region == r).squeeze(1)
        if len(sel) == 0:
            continue
        inside_r = (view_regions == r).to(flows.dtype)[:, None]  # [V, 1, H, W]
        num = _sample_maps(flows.permute(0, 3, 1, 2) * inside_r, uv[:, sel], "bilinear")
        den = _sample_maps(inside_r, uv[:, sel], "bilinear")
        targets[:, sel] = num / den.clamp(min=1e-6)
    return MotionTargets(ids, targets.nan_to_num(0.0), visible)


def knn_edges(xyz: Tensor, region: Tensor, k: int = 6) -> Tensor:
    """Edges [E, 2] (long) joining each point to its k nearest neighbours of the same region."""
    from scipy.spatial import cKDTree

    _check_points(xyz)
    pts = xyz.detach().cpu().numpy()
    reg = region.detach().cpu().numpy()
    edges = []
    for r in np.unique(reg):
        ids = np.nonzero(reg == r)[0]
        kk = min(k, len(ids) - 1)
        if kk < 1:
            continue
        _, nn = cKDTree(pts[ids]).query(pts[ids], k=kk + 1, workers=-1)
        src = np.repeat(ids, kk)
        dst = ids[nn[:, 1:].reshape(-1)]
        edges.append(np.stack([src, dst], 1))
    if not edges:
        return torch.zeros(0, 2, dtype=torch.long, device=xyz.device)
    return torch.as_tensor(np.concatenate(edges), dtype=torch.long, device=xyz.device)


# ----------------------------------------------------------------------------- objective


def projected_flow(xyz: Tensor, motion: Tensor, cameras: list[Camera]) -> Tensor:
    """Flow [V, P, 2] (pixels) of points [P, 3] moved by motion [P, 3] in every camera."""
    _check_points(xyz)
    _check_points(motion, "motion")
    K, R, t = projection_tensors(cameras, xyz.device)
    return project_views(xyz + motion, K, R, t)[0] - project_views(xyz, K, R, t)[0]


def end_point_error(pred: Tensor, targets: Tensor, visible: Tensor) -> float:
    """Mean Euclidean distance (px/frame) between pred and targets [V, M, 2] over visible [V, M] pairs."""
    n = int(visible.sum())
    if n == 0:
        return float("nan")
    return float(((pred - targets).norm(dim=-1) * visible).sum() / n)


def _pixel_scale(xyz: Tensor, camera: Camera) -> Tensor:
    """[M, 1] world units per pixel at each point's depth in ``camera`` (the preconditioner)."""
    _, R, t = projection_tensors([camera], xyz.device)
    z = (xyz @ R[0].T + t[0])[:, 2].abs().clamp(min=1e-6)
    focal = float(0.5 * (camera.K[0, 0] + camera.K[1, 1]))
    return (z / focal)[:, None]


def _gauss_newton(
    xyz: Tensor, scale: Tensor, cams: tuple[Tensor, Tensor, Tensor], targets: Tensor, visible: Tensor, iterations: int
) -> Tensor:
    """Per-point least squares of the linearised projection; returns delta [M, 3]."""
    K, R, t = cams
    delta = torch.zeros_like(xyz)
    uv0 = project_views(xyz, K, R, t)[0]
    vis = visible.to(xyz.dtype)[..., None, None]
    eye = torch.eye(3, device=xyz.device, dtype=xyz.dtype)
    for _ in range(iterations):
        moved = xyz + delta * scale
        cam = torch.einsum("vij,pj->vpi", R, moved) + t[:, None, :]
        x, y, z = cam.unbind(-1)
        fx, fy = K[:, 0, 0][:, None], K[:, 1, 1][:, None]
        zero = torch.zeros_like(z)
        # d(u, v)/d(camera xyz), then chained through R and the preconditioner: J [V, M, 2, 3]
        jc = torch.stack(
            [torch.stack([fx / z, zero, -fx * x / z**2], -1), torch.stack([zero, fy / z, -fy * y / z**2], -1)], -2
        )
        jac = torch.einsum("vmac,vcb->vmab", jc, R) * scale[None, :, None, :]
        resid = targets - (project_views(moved, K, R, t)[0] - uv0)  # [V, M, 2]
        jtj = (jac.transpose(-1, -2) @ jac * vis).sum(0)
        jtr = (jac.transpose(-1, -2) @ resid[..., None] * vis).sum(0)
        # A ridge on delta itself, relative to each point's curvature, keeps the directions the views
        # barely see (motion along the ray of far points: little parallax) from amplifying flow noise.
        ridge = 1e-3 * jtj.diagonal(dim1=-2, dim2=-1).sum(-1)[:, None, None] / 3 + 1e-6
        rhs = jtr + jtj @ delta[..., None]
        delta = torch.linalg.solve(jtj + ridge * eye, rhs)[..., 0]
    return delta


class _Views:
    """Cameras packed for fast projection of [M, 3] points into all V views as one matrix product."""

    def __init__(self, cameras: list[Camera], device: torch.device):
        K, R, t = projection_tensors(cameras, device)
        self.v = len(cameras)
        self.rot = R.permute(2, 0, 1).reshape(3, -1)  # x @ rot = [M, V*3] camera coordinates
        self.t = t.reshape(1, -1)
        self.f = torch.stack([K[:, 0, 0], K[:, 1, 1]], -1)  # [V, 2]
        self.c = K[:, :2, 2]  # [V, 2]

    def project(self, xyz: Tensor) -> tuple[Tensor, Tensor]:
        """uv [M, V, 2] and normalised image coordinates xy [M, V, 2], inverse depth [M, V, 1]."""
        cam = torch.addmm(self.t, xyz, self.rot).view(len(xyz), self.v, 3)
        inv_z = 1.0 / cam[..., 2:]
        xy = cam[..., :2] * inv_z
        return xy * self.f + self.c, xy, inv_z

    def l1_grad(self, xyz: Tensor, ctg: Tensor, wf: Tensor, weight: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Gradient wrt xyz [M, 3] of sum w |proj(xyz) - uv0 - target|_1, and that sum if ``weight`` is given.

        ``ctg`` = principal point - uv0 - target [M, V, 2]; ``wf`` = w * focal [M, V, 2], both precomputed.
        The gradient is written out (no autograd graph): it halves time and memory over ~10^7 pairs.
        """
        cam = torch.addmm(self.t, xyz, self.rot).view(len(xyz), self.v, 3)
        inv_z = cam[..., 2:].reciprocal()
        xy = cam[..., :2] * inv_z
        r = torch.addcmul(ctg, xy, self.f)  # projection - uv0 - target
        loss = (r.abs().sum(-1) * weight).sum() if weight is not None else torch.zeros((), device=xyz.device)
        g = r.sign_().mul_(wf)  # d loss / d xy
        gz = (g * xy).sum(-1, keepdim=True).neg_()
        g_cam = torch.cat([g, gz], -1).mul_(inv_z)  # d loss / d camera xyz
        return g_cam.view(len(xyz), -1) @ self.rot.T, loss


def _prior_grad(delta: Tensor, scale: Tensor, edges: Tensor) -> tuple[Tensor, Tensor]:
    """Smoothness prior mean_e |(d_i - d_j) / s_ij|^2 (d = delta * scale) and its gradient wrt delta."""
    i, j = edges[:, 0], edges[:, 1]
    pair = 0.5 * (scale[i] + scale[j])
    diff = (delta[i] * scale[i] - delta[j] * scale[j]) / pair
    n = max(len(edges), 1)
    g = 2.0 * diff / pair / n
    grad = torch.zeros_like(delta)
    grad.index_add_(0, i, g * scale[i])
    grad.index_add_(0, j, -g * scale[j])
    return diff.square().sum() / n, grad


def fit_motion(
    xyz: Tensor,
    cameras: list[Camera],
    targets: Tensor,
    visible: Tensor,
    edges: Tensor | None = None,
    config: MotionConfig | None = None,
    chunk: int = 1 << 14,
) -> MotionFit:
    """Optimise one 3D motion per point so that its projections match the targets.

    Args:
        xyz: [M, 3] world points (the moving ones), on the device to run on.
        cameras: V cameras (view 0 sets the preconditioner's depth).
        targets: [V, M, 2] target flow in pixels per frame. visible: [V, M] bool pairs that count.
        edges: [E, 2] long kNN edges between rows of ``xyz`` (None: no smoothness prior).
        config: :class:`MotionConfig`. chunk: points per block (bounds memory, not the result).

    Returns:
        :class:`MotionFit` with motion [M, 3] in world units per frame, the loss curve (``loss`` =
        data + prior, ``data_loss`` = mean L1 per visible pair) and the final end-point error.
    """
    config = config or MotionConfig()
    _check_points(xyz)
    v, m = len(cameras), xyz.shape[0]
    if targets.shape != (v, m, 2) or visible.shape != (v, m):
        raise ValueError(
            f"targets must be ({v}, {m}, 2) and visible ({v}, {m}), got {tuple(targets.shape)}, {tuple(visible.shape)}"
        )
    if visible.dtype != torch.bool:
        raise TypeError(f"visible must be a bool tensor, got {visible.dtype}")
    if config.iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {config.iterations}")
    start = time.perf_counter()
    xyz = xyz.detach().float()
    fit = MotionFit(motion=torch.zeros_like(xyz))
    fit.epe_initial = end_point_error(torch.zeros_like(targets), targets, visible)
    if m == 0:
        return fit
    scale = _pixel_scale(xyz, cameras[0])
    if config.init == "gauss_newton":
        cams = projection_tensors(cameras, xyz.device)
        delta = torch.cat(
            [
                _gauss_newton(x, s, cams, tg, vs, config.gn_iterations)
                for x, s, tg, vs in zip(
                    xyz.split(chunk), scale.split(chunk), targets.split(chunk, 1), visible.split(chunk, 1)
                )
            ]
        )
    else:
        delta = torch.zeros_like(xyz)

    views = _Views(cameras, xyz.device)
    # [M, V, ...] layout: one matrix product projects a block of points into every view.
    n_vis = max(int(visible.sum()), 1)
    blocks = []
    for lo in range(0, m, chunk):
        x, tg = xyz[lo : lo + chunk], targets[:, lo : lo + chunk].permute(1, 0, 2)
        w = visible[:, lo : lo + chunk].T.to(xyz.dtype) / n_vis
        ctg = views.c - views.project(x)[0] - tg
        blocks.append((lo, x, ctg, w[..., None] * views.f, w))

    opt = torch.optim.Adam([delta.requires_grad_(True)], lr=config.lr)
    total = max(config.iterations, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.01 + 0.495 * (1 + math.cos(math.pi * min(i / total, 1))))
    use_prior = edges is not None and len(edges) > 0 and config.smooth_weight > 0

    for step in range(config.iterations + 1):
        log = step % config.log_every == 0 or step == config.iterations
        with torch.no_grad():
            grad = torch.empty_like(xyz)
            data = torch.zeros((), device=xyz.device)
            for lo, x, ctg, wf, w in blocks:
                hi = lo + len(x)
                g, loss_b = views.l1_grad(x + delta[lo:hi] * scale[lo:hi], ctg, wf, w if log else None)
                grad[lo:hi] = g * scale[lo:hi]
                data += loss_b
            loss = data.clone()
            if use_prior:
                prior, g_prior = _prior_grad(delta, scale, edges)
                grad += config.smooth_weight * g_prior
                loss += config.smooth_weight * prior
        if log:
            fit.loss_steps.append(step)
            fit.loss.append(float(loss))
            fit.data_loss.append(float(data))
        if step == config.iterations:
            break
        delta.grad = grad
        opt.step()
        sched.step()

    with torch.no_grad():
        fit.motion = (delta * scale).detach()
        pred = projected_flow(xyz, fit.motion, cameras)
        fit.epe = end_point_error(pred, targets, visible)
    fit.seconds = time.perf_counter() - start
    return fit


# ----------------------------------------------------------------------------- a known answer


def synthetic_problem(
    n_points: int = 3000, width: int = 96, height: int = 64, n_views: int = 25, seed: int = 0
) -> tuple[Tensor, Tensor, list[Camera], Tensor, Tensor]:
    """A problem with a known answer (tests, benchmarks): points on receding ground and a far layer,
    a smooth known 3D motion, the real view set (scene.views) at ``width`` x ``height``.

    Returns (xyz [P, 3], motion [P, 3], cameras, targets [V, P, 2], visible [V, P]) with targets the
    exact projections of the known motion: mutually consistent by construction.
    """
    from scene.views import source_camera, view_cameras

    g = torch.Generator().manual_seed(seed)
    cams = view_cameras(source_camera(width, height), n_views)
    n_far = n_points // 4
    z = torch.cat([2.0 + 18.0 * torch.rand(n_points - n_far, generator=g), 60 + 20 * torch.rand(n_far, generator=g)])
    x = (torch.rand(n_points, generator=g) - 0.5) * 0.8 * z
    y = torch.cat([torch.full((n_points - n_far,), 1.0), -0.2 * z[-n_far:] * torch.rand(n_far, generator=g)])
    xyz = torch.stack([x, y, z], 1)
    s = z / 80.0  # about one pixel per frame at any depth
    motion = torch.stack([0.6 * s * torch.cos(x / 4), 0.1 * s * torch.sin(z / 5), -0.5 * s * torch.sin(x / 3)], 1)
    targets = projected_flow(xyz, motion, cams)
    uv, depth = project_views(xyz, *projection_tensors(cams))
    visible = (depth > 0) & (uv[..., 0] > -0.5) & (uv[..., 0] < width - 0.5)
    visible &= (uv[..., 1] > -0.5) & (uv[..., 1] < height - 0.5)
    return xyz, motion, cams, targets, visible
