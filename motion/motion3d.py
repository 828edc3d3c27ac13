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
projection, a few iterations, exact for mutually consistent flows) then Adam on the L1 objective with a
learning rate warmed up over the first tenth of the steps, then cosine-decayed. Adam normalises each
coordinate's step, so it does not suffer from the vanishing per-point gradient of a mean-reduced loss
over ~10^6 points that stalls plain SGD.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from motion.config import FitConfig
from scene.cameras import Camera, CameraBatch, rotate
from utils.ordered import ordered_sum

if TYPE_CHECKING:
    from motion.outputs import ViewSet


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
    uv, z = CameraBatch.of(cameras, device).project(xyz[ids])  # [V, M, 2], [V, M]
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
    cams = CameraBatch.of(cameras, xyz.device)
    return cams.project(xyz + motion)[0] - cams.project(xyz)[0]


def end_point_error(pred: Tensor, targets: Tensor, visible: Tensor) -> float:
    """Mean Euclidean distance (px/frame) between pred and targets [V, M, 2] over visible [V, M] pairs; NaN if none."""
    n = int(visible.sum())
    if n == 0:
        return float("nan")
    d = pred - targets
    dist = torch.sqrt(d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1])
    return float(ordered_sum(torch.where(visible, dist, torch.zeros_like(dist))) / n)


def _pixel_scale(xyz: Tensor, camera: Camera) -> Tensor:
    """[M, 1] world units per pixel at each point's depth in ``camera`` (the preconditioner)."""
    z = CameraBatch.of([camera], xyz.device).to_camera(xyz)[0][:, 2].abs().clamp(min=1e-6)
    focal = float(0.5 * (camera.K[0, 0] + camera.K[1, 1]))
    return (z / focal)[:, None]


def solve3(A: Tensor, b: Tensor) -> Tensor:
    """Solutions x [M, 3] of A x = b for A [M, 3, 3], b [M, 3]: Cramer's rule in float64, element-wise."""
    (a, b_, c), (d, e, f), (g, h, i) = (A[:, k].double().unbind(-1) for k in range(3))
    # rows of the cofactor matrix = columns of the adjugate: A^-1 = [r0 r1 r2] / det
    r0 = torch.stack([e * i - f * h, f * g - d * i, d * h - e * g], -1)
    r1 = torch.stack([c * h - b_ * i, a * i - c * g, b_ * g - a * h], -1)
    r2 = torch.stack([b_ * f - c * e, c * d - a * f, a * e - b_ * d], -1)
    det = a * r0[:, 0] + b_ * r0[:, 1] + c * r0[:, 2]
    rhs = b.double()
    return ((r0 * rhs[:, 0:1] + r1 * rhs[:, 1:2] + r2 * rhs[:, 2:3]) / det[:, None]).to(A.dtype)


def _gauss_newton(
    xyz: Tensor, scale: Tensor, cams: CameraBatch, targets: Tensor, visible: Tensor, iterations: int
) -> Tensor:
    """Per-point least squares of the linearised projection; returns delta [M, 3].

    With (X, Y, Z) the moved point in view v's camera coordinates, the rows of d(u, v)/d(delta) are
    ``fx / Z (R_0 - X / Z R_2) s`` and ``fy / Z (R_1 - Y / Z R_2) s`` (R_i the rows of the rotation,
    s the preconditioner). The normal equations are summed over the visible views in a fixed order
    and solved per point by :func:`solve3`.
    """
    delta = torch.zeros_like(xyz)
    uv0 = cams.project(xyz)[0]  # [V, M, 2]
    vis = visible.to(xyz.dtype)[..., None]  # [V, M, 1]
    R, f = cams.R[:, None], cams.focal[:, None]  # [V, 1, 3, 3], [V, 1, 2]
    for _ in range(iterations):
        moved = xyz + delta * scale
        cam = cams.to_camera(moved)  # [V, M, 3]
        inv_z = cam[..., 2:].reciprocal()
        ju = f[..., 0:1] * inv_z * (R[..., 0, :] - cam[..., 0:1] * inv_z * R[..., 2, :]) * scale
        jv = f[..., 1:2] * inv_z * (R[..., 1, :] - cam[..., 1:2] * inv_z * R[..., 2, :]) * scale
        resid = targets - (cams.project(moved)[0] - uv0)  # [V, M, 2]
        # A [M, 3, 3] = sum_v vis (ju ju^T + jv jv^T), b [M, 3] = sum_v vis (ju r_u + jv r_v)
        outer = ju[..., :, None] * ju[..., None, :] + jv[..., :, None] * jv[..., None, :]
        A = ordered_sum(vis[..., None] * outer, 0)
        b = ordered_sum(vis * (ju * resid[..., 0:1] + jv * resid[..., 1:2]), 0)
        # A ridge on delta itself, relative to each point's curvature, keeps the directions the views
        # barely see (motion along the ray of far points: little parallax) from amplifying flow noise.
        ridge = 1e-3 * (A[:, 0, 0] + A[:, 1, 1] + A[:, 2, 2]) / 3 + 1e-6
        eye = torch.eye(3, device=xyz.device, dtype=xyz.dtype)
        delta = solve3(A + ridge[:, None, None] * eye, b + rotate(A, delta))
    return delta


class _Views:
    """Cameras laid out for projecting a block of M points into all V views at once.

    Coordinates are kept as separate [V, M] tensors (x, y, z of the camera frame; u, v of the image):
    every step is a contiguous element-wise operation, and the sum over views an ordered sum.
    """

    def __init__(self, cams: CameraBatch):
        R = cams.R
        self.r = [[R[:, i, j, None] for j in range(3)] for i in range(3)]  # [V, 1] each
        self.t = [cams.t[:, i, None] for i in range(3)]
        self.f = (cams.focal[:, 0, None], cams.focal[:, 1, None])
        self.c = (cams.centre[:, 0, None], cams.centre[:, 1, None])

    def camera(self, xyz: Tensor) -> list[Tensor]:
        """Camera coordinates [X, Y, Z], each [V, M], of points [M, 3]."""
        x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        return [r[0] * x + r[1] * y + r[2] * z + t for r, t in zip(self.r, self.t)]

    def project(self, xyz: Tensor) -> tuple[Tensor, Tensor]:
        """Pixel coordinates (u, v), each [V, M], of points [M, 3]."""
        X, Y, Z = self.camera(xyz)
        return X / Z * self.f[0] + self.c[0], Y / Z * self.f[1] + self.c[1]

    def l1_grad(self, xyz: Tensor, block: _Block, with_loss: bool) -> tuple[Tensor, Tensor]:
        """Gradient wrt xyz [M, 3] of sum w |proj(xyz) - uv0 - target|_1, and that sum if ``with_loss``.

        The gradient is written out (no autograd graph): it halves time and memory over ~10^7 pairs.
        """
        X, Y, Z = self.camera(xyz)
        iz = Z.reciprocal()
        x, y = X * iz, Y * iz
        ru, rv = block.cu + x * self.f[0], block.cv + y * self.f[1]  # projection - uv0 - target
        loss = ordered_sum((ru.abs() + rv.abs()) * block.w) if with_loss else torch.zeros((), device=xyz.device)
        gu, gv = ru.sign() * block.wfu, rv.sign() * block.wfv  # d loss / d (x, y)
        gX, gY, gZ = gu * iz, gv * iz, -(gu * x + gv * y) * iz  # d loss / d (X, Y, Z)
        r = self.r
        grad = [ordered_sum(r[0][j] * gX + r[1][j] * gY + r[2][j] * gZ, 0) for j in range(3)]  # R^T g, summed over V
        return torch.stack(grad, 1), loss


@dataclass
class _Block:
    """What the L1 gradient of a block of points needs, precomputed ([V, M] each)."""

    lo: int  # first row of the block
    xyz: Tensor  # [M, 3]
    cu: Tensor  # principal point - uv0 - target, u
    cv: Tensor  # the same, v
    w: Tensor  # pair weight: visible / number of visible pairs
    wfu: Tensor  # w * fx
    wfv: Tensor  # w * fy


class _Prior:
    """The smoothness prior mean_e |(d_i - d_j) / s_ij|^2 (d = delta * scale) on kNN edges [E, 2], and its
    gradient wrt delta; per-edge constants are computed once.

    The gradient is one ``index_add_`` over the edges' two ends: on the CPU it adds in index order (one
    output row at a time), so its result does not depend on the thread count (tests/test_determinism.py).
    """

    def __init__(self, scale: Tensor, edges: Tensor):
        i, j = edges[:, 0], edges[:, 1]
        pair = 0.5 * (scale[i] + scale[j])  # [E, 1] world units per pixel at the pair
        self.n = max(len(edges), 1)
        self.i, self.j, self.rows = i, j, torch.cat([i, j])
        self.inv_pair = pair.reciprocal()
        self.coef_i = 2.0 * scale[i] / pair / self.n
        self.coef_j = -2.0 * scale[j] / pair / self.n

    def __call__(self, delta: Tensor, scale: Tensor, with_value: bool) -> tuple[Tensor, Tensor]:
        """(the prior, or 0 without ``with_value``; its gradient [M, 3])."""
        d = delta * scale
        diff = (d[self.i] - d[self.j]) * self.inv_pair
        grad = torch.zeros_like(delta).index_add_(0, self.rows, torch.cat([diff * self.coef_i, diff * self.coef_j]))
        value = ordered_sum(diff.square()) / self.n if with_value else torch.zeros((), device=delta.device)
        return value, grad


class _Adam:
    """Adam (Kingma & Ba) written with element-wise operations only, so that it is thread-count independent."""

    def __init__(self, param: Tensor, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.param, self.betas, self.eps, self.k = param, betas, eps, 0
        self.m, self.v = torch.zeros_like(param), torch.zeros_like(param)

    def step(self, grad: Tensor, lr: float) -> None:
        b1, b2 = self.betas
        self.k += 1
        self.m = self.m * b1 + grad * (1 - b1)
        self.v = self.v * b2 + grad * grad * (1 - b2)
        m_hat, v_hat = self.m / (1 - b1**self.k), self.v / (1 - b2**self.k)
        self.param -= lr * m_hat / (torch.sqrt(v_hat) + self.eps)


def _lr_factor(step: int, total: int) -> float:
    """A linear warm-up over the first tenth of the steps, then a cosine decay from 1 to 0.01.

    The warm-up keeps Adam's first steps (each of about the full learning rate, whatever the gradient)
    from undoing the Gauss-Newton start: without it the loss jumped up for ~10 steps before falling.
    """
    warm = max(1, round(0.1 * total))
    ramp = min(1.0, (step + 1) / warm)
    return ramp * (0.01 + 0.495 * (1 + math.cos(math.pi * min(step / max(total, 1), 1))))


def fit_motion(
    xyz: Tensor,
    cameras: list[Camera],
    targets: Tensor,
    visible: Tensor,
    edges: Tensor | None = None,
    config: FitConfig | None = None,
    chunk: int = 1 << 14,
) -> MotionFit:
    """Optimise one 3D motion per point so that its projections match the targets.

    Args:
        xyz: [M, 3] world points (the moving ones), on the device to run on.
        cameras: V cameras (view 0 sets the preconditioner's depth).
        targets: [V, M, 2] target flow in pixels per frame. visible: [V, M] bool pairs that count.
        edges: [E, 2] long kNN edges between rows of ``xyz`` (None: no smoothness prior).
        config: :class:`motion.config.FitConfig`. chunk: points per block (bounds memory, not the result).

    Returns:
        :class:`MotionFit` with motion [M, 3] in world units per frame, the loss curve (``loss`` =
        data + prior, ``data_loss`` = mean L1 per visible pair) and the final end-point error.
    """
    config = config or FitConfig()
    _check_fit_inputs(xyz, cameras, targets, visible, config)
    start = time.perf_counter()
    xyz = xyz.detach().float()
    fit = MotionFit(motion=torch.zeros_like(xyz))
    fit.epe_initial = end_point_error(torch.zeros_like(targets), targets, visible)
    if xyz.shape[0] == 0:
        return fit
    scale = _pixel_scale(xyz, cameras[0])
    cams = CameraBatch.of(cameras, xyz.device)
    delta = torch.zeros_like(xyz)
    if config.motion_init == "gauss_newton":
        parts = zip(xyz.split(chunk), scale.split(chunk), targets.split(chunk, 1), visible.split(chunk, 1))
        delta = torch.cat([_gauss_newton(x, s, cams, tg, vs, config.gn_iterations) for x, s, tg, vs in parts])
    views = _Views(cams)
    blocks = _blocks(xyz, targets, visible, views, chunk)
    adam = _Adam(delta)
    prior = _Prior(scale, edges) if edges is not None and len(edges) > 0 and config.smooth_weight > 0 else None
    from utils.console import track

    for step in track(range(config.train_iteration + 1), "3D motion"):
        log = step % config.log_every == 0 or step == config.train_iteration
        grad, data = _objective_grad(delta, scale, views, blocks, log)
        loss = data
        if prior is not None:
            value, g_prior = prior(delta, scale, log)
            grad = grad + config.smooth_weight * g_prior
            loss = data + config.smooth_weight * value
        if log:
            fit.loss_steps.append(step)
            fit.loss.append(float(loss))
            fit.data_loss.append(float(data))
        if step < config.train_iteration:
            adam.step(grad, config.motion_lr * _lr_factor(step, config.train_iteration))
    fit.motion = delta * scale
    fit.epe = end_point_error(projected_flow(xyz, fit.motion, cameras), targets, visible)
    fit.seconds = time.perf_counter() - start
    return fit


def _check_fit_inputs(xyz: Tensor, cameras: list[Camera], targets: Tensor, visible: Tensor, config: FitConfig):
    _check_points(xyz)
    v, m = len(cameras), xyz.shape[0]
    if targets.shape != (v, m, 2) or visible.shape != (v, m):
        raise ValueError(
            f"targets must be ({v}, {m}, 2) and visible ({v}, {m}), got {tuple(targets.shape)}, {tuple(visible.shape)}"
        )
    if visible.dtype != torch.bool:
        raise TypeError(f"visible must be a bool tensor, got {visible.dtype}")
    if config.train_iteration < 0:
        raise ValueError(f"train_iteration must be >= 0, got {config.train_iteration}")


def _blocks(xyz: Tensor, targets: Tensor, visible: Tensor, views: _Views, chunk: int) -> list[_Block]:
    """The points cut into blocks of ``chunk`` rows, with what :meth:`_Views.l1_grad` needs."""
    n_vis = max(int(visible.sum()), 1)
    blocks = []
    for lo in range(0, xyz.shape[0], chunk):
        x, tg = xyz[lo : lo + chunk], targets[:, lo : lo + chunk]
        w = visible[:, lo : lo + chunk].to(xyz.dtype) / n_vis
        u0, v0 = views.project(x)
        cu, cv = views.c[0] - u0 - tg[..., 0], views.c[1] - v0 - tg[..., 1]
        blocks.append(_Block(lo, x, cu, cv, w, w * views.f[0], w * views.f[1]))
    return blocks


def _objective_grad(delta: Tensor, scale: Tensor, views: _Views, blocks: list[_Block], with_loss: bool):
    """Gradient wrt delta [M, 3] of the L1 data term, and the term itself when ``with_loss`` (else 0)."""
    grad = torch.empty_like(delta)
    data = torch.zeros((), device=delta.device)
    for b in blocks:
        rows = slice(b.lo, b.lo + len(b.xyz))
        g, loss = views.l1_grad(b.xyz + delta[rows] * scale[rows], b, with_loss)
        grad[rows] = g * scale[rows]
        data = data + loss
    return grad, data


def fit_scene_motion(
    views: ViewSet, flows: Tensor, moving: list[int], config: FitConfig, device: str
) -> tuple[np.ndarray, dict]:
    """Stage 1's 3D motion: motion3d (P, 3) float32 (world units per frame, zero for static points) and
    the loss report written as motion_loss.json."""
    cloud, cameras = views.cloud, views.cameras
    xyz = torch.as_tensor(cloud.xyz, dtype=torch.float32, device=device)
    region = torch.as_tensor(cloud.region.astype(np.int64), device=device)
    depths = torch.as_tensor(np.stack([v.depth for v in views.views]), dtype=torch.float32, device=device)
    view_regions = torch.as_tensor(np.stack([v.regions for v in views.views]), device=device)
    targets = sample_flow_targets(xyz, region, cameras, flows, depths, view_regions, moving, config.depth_tolerance)
    ids = targets.point_ids
    edges = knn_edges(xyz[ids], region[ids], config.knn) if config.smooth_weight > 0 and len(ids) > 1 else None
    fit = fit_motion(xyz[ids], cameras, targets.targets, targets.visible, edges, config)
    motion = np.zeros((len(xyz), 3), np.float32)
    motion[ids.cpu().numpy()] = fit.motion.cpu().numpy()
    return motion, fit_report(fit, targets, projected_flow(xyz[ids], fit.motion, cameras), region[ids], moving, config)


def fit_report(
    fit: MotionFit, targets: MotionTargets, pred: Tensor, point_region: Tensor, moving: list[int], config: FitConfig
) -> dict:
    """motion_loss.json: loss curves, end-point errors per view and region, counts (no wall-clock time, so
    that identical runs write identical files; the manifest has the timings)."""

    tg, vis = targets.targets, targets.visible
    per_view = [_finite(end_point_error(pred[v], tg[v], vis[v])) for v in range(pred.shape[0])]
    per_region = {}
    for r in moving:
        sel = point_region == r
        per_region[str(r)] = _finite(end_point_error(pred[:, sel], tg[:, sel], vis[:, sel]))
    return {
        "steps": fit.loss_steps,
        "loss": fit.loss,
        "data_loss_l1": fit.data_loss,
        "epe_px_per_frame": _finite(fit.epe),  # None when no pair is visible (nothing moves)
        "epe_zero_motion_px_per_frame": _finite(fit.epe_initial),
        "epe_per_view": per_view,
        "epe_per_region": per_region,
        "moving_points": len(targets.point_ids),
        "moving_points_seen_by_no_view": int((~targets.visible.any(0)).sum()),
        "visible_pairs": int(targets.visible.sum()),
        "views": pred.shape[0],
        "moving_regions": moving,
        "config": {
            "iterations": config.train_iteration,
            "lr": config.motion_lr,
            "smooth_weight": config.smooth_weight,
            "init": config.motion_init,
        },
    }


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


# ----------------------------------------------------------------------------- a known answer


def synthetic_problem(
    n_points: int = 3000, width: int = 96, height: int = 64, n_views: int = 25, seed: int = 0
) -> tuple[Tensor, Tensor, list[Camera], Tensor, Tensor]:
    """A problem with a known answer (tests, benchmarks): points on receding ground and a far layer,
    a smooth known 3D motion, the real view set (motion.views) at ``width`` x ``height``.

    Returns (xyz [P, 3], motion [P, 3], cameras, targets [V, P, 2], visible [V, P]) with targets the
    exact projections of the known motion: mutually consistent by construction.
    """
    from motion.views import view_cameras
    from scene.cameras import source_camera

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
    uv, depth = CameraBatch.of(cams).project(xyz)
    visible = (depth > 0) & (uv[..., 0] > -0.5) & (uv[..., 0] < width - 0.5)
    visible &= (uv[..., 1] > -0.5) & (uv[..., 1] < height - 0.5)
    return xyz, motion, cams, targets, visible
