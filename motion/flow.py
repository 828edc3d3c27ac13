"""Stage 3: motion hints -> a dense Eulerian flow field (pixels per frame) in every view.

Method (docs/scene_format.md, "train_motion: flows, 3D motion, video"):

1. Each hint is lifted to 3D with the photo's depth (camera 0): ``S`` at its start and ``E`` at its end.
   The end uses its own depth only when it lies in the hint's region (else the start's depth: an arrow
   that overshoots its polygon must not jump onto the mountain behind). Its motion per frame is the
   3D vector ``D = speed * (E - S)`` (``speed`` = 1/50 by default, the original's (end - start) / 50).
2. In view ``v``, every pixel ``x`` of region ``r`` gets the normalised Gaussian (Nadaraya-Watson)
   average of the 3D motions of region ``r``'s hints, weighted by the image distance between ``x`` and
   each hint's projected start: ``w_j = exp(-|x - s_j|^2 / (2 sigma^2))``, ``sigma`` a fraction of the
   image diagonal. Far from every hint the weights become the nearest hint's (computed as a softmax,
   so they never underflow to 0/0).
3. The pixel's own 3D point ``X`` (view depth) is moved by that motion and projected:
   ``flow_v(x) = proj_v(X + D(x)) - x``. Interpolating 3D motions and projecting them (rather than
   interpolating pixel vectors) keeps perspective: a river slows down towards the horizon, and the
   flows of the different views agree with each other.

Pixels outside the motion regions, and regions without any hint, get zero flow (static).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from scene.cameras import Camera, CameraBatch, unproject
from scene.io import Hint
from utils.console import warn
from utils.ordered import ordered_sum, serial

if TYPE_CHECKING:
    from motion.config import FlowConfig
    from motion.outputs import ViewSet


@dataclass(frozen=True)
class LiftedHints:
    """Hints lifted to 3D (world units), after dropping unusable ones."""

    start: np.ndarray  # (K, 3) float64, world point under the hint's start
    motion: np.ndarray  # (K, 3) float64, world units per frame
    region: np.ndarray  # (K,) int64 region id
    labels: list[str]

    def __len__(self) -> int:
        return len(self.region)


# ----------------------------------------------------------------------------- hints


def _sample(image: np.ndarray, xy: np.ndarray) -> tuple[int, int, bool]:
    """Nearest pixel of ``xy`` clipped into ``image``; also whether it had to be clipped."""
    h, w = image.shape[:2]
    x, y = round(float(xy[0])), round(float(xy[1]))
    cx, cy = min(max(x, 0), w - 1), min(max(y, 0), h - 1)
    return cx, cy, (cx, cy) != (x, y)


def _hint_region(hint: Hint, regions: np.ndarray) -> int:
    """The hint's region: as annotated, else the region under its start, else the nearest region."""
    if hint.region > 0:
        return int(hint.region)
    x, y, _ = _sample(regions, np.asarray(hint.start))
    if regions[y, x] > 0:
        return int(regions[y, x])
    ys, xs = np.nonzero(regions)
    if len(xs) == 0:
        return 0
    k = int(np.argmin((xs - x) ** 2 + (ys - y) ** 2))
    return int(regions[ys[k], xs[k]])


def lift_hints(
    hints: list[Hint],
    depth: np.ndarray,
    regions: np.ndarray,
    camera: Camera,
    speed: float = 1.0 / 50.0,
    min_length: float = 1.0,
) -> LiftedHints:
    """Lift 2D hints to 3D motions per frame (see the module docstring).

    Args:
        hints: full-resolution hints (pixels of the photo, which is ``camera``'s image).
        depth: (H, W) z-depth of the photo. regions: (H, W) int region ids (0 = static).
        camera: the photo's camera (view 0). speed: fraction of the hint travelled per frame.
        min_length: hints shorter than this (pixels) are dropped with a warning.

    Warns (and defines): zero-length hints are dropped; endpoints outside the image are clipped for
    the depth look-up only (the arrow keeps its direction and length); a hint outside every region
    joins the nearest region.
    """
    if depth.shape != regions.shape or depth.ndim != 2:
        raise ValueError(f"depth and regions must be the same (H, W), got {depth.shape} and {regions.shape}")
    if (camera.height, camera.width) != depth.shape:
        raise ValueError(f"camera is {camera.width}x{camera.height} but depth is {depth.shape[1]}x{depth.shape[0]}")
    if not math.isfinite(speed) or speed <= 0:
        raise ValueError(f"speed must be a positive number, got {speed}")
    starts, ends, region_ids, labels = [], [], [], []
    for hint in hints:
        start, end = np.asarray(hint.start, np.float64), np.asarray(hint.end, np.float64)
        if np.hypot(*(end - start)) < min_length:
            warn(f"hint '{hint.label}' is shorter than {min_length:g} pixel; it is ignored")
            continue
        region = _hint_region(hint, regions)
        if region == 0:
            warn(f"hint '{hint.label}' lies in no motion region and the scene has none; it is ignored")
            continue
        if region != hint.region:
            warn(f"hint '{hint.label}' starts outside every region; it drives the nearest one ({region})")
        sx, sy, s_out = _sample(depth, start)
        ex, ey, e_out = _sample(depth, end)
        if s_out or e_out:
            warn(f"hint '{hint.label}' points out of the image; its depth is read at the image border")
        z_start = float(depth[sy, sx])
        z_end = float(depth[ey, ex]) if regions[ey, ex] == region else z_start
        starts.append((start, z_start))
        ends.append((end, z_end))
        region_ids.append(region)
        labels.append(hint.label)
    if not starts:
        return LiftedHints(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, np.int64), [])
    uv = torch.tensor(np.array([p for p, _ in starts] + [p for p, _ in ends]), dtype=torch.float32)
    z = torch.tensor([d for _, d in starts] + [d for _, d in ends], dtype=torch.float32)
    world = unproject(uv, z, camera).double().numpy()
    s3, e3 = world[: len(starts)], world[len(starts) :]
    return LiftedHints(s3, speed * (e3 - s3), np.asarray(region_ids, np.int64), labels)


def warn_regions_without_hints(regions: np.ndarray, lifted: LiftedHints) -> list[int]:
    """Warn about motion regions no hint drives (they stay static); return the moving region ids."""
    present = sorted(int(r) for r in np.unique(regions) if r > 0)
    moving = sorted({int(r) for r in lifted.region})
    for r in present:
        if r not in moving:
            warn(f"motion region {r} has no hint; it stays static (draw a hint line inside it to animate it)")
    return moving


# ----------------------------------------------------------------------------- dense flow


def hint_weights(pixels: Tensor, hint_px: Tensor, sigma: float) -> Tensor:
    """Normalised Gaussian weights [N, K] of hints at ``hint_px`` [K, 2] for ``pixels`` [N, 2].

    A softmax of ``-d^2 / (2 sigma^2)`` over the hints, written out so that it does not depend on the
    thread count (utils/ordered.py): exp in serial blocks, the normaliser as an ordered sum.
    """
    d2 = (pixels[:, None, 0] - hint_px[None, :, 0]).square() + (pixels[:, None, 1] - hint_px[None, :, 1]).square()
    logits = -d2 / (2.0 * sigma**2)
    e = serial(torch.exp, logits - logits.max(dim=1, keepdim=True).values)
    return e / ordered_sum(e, 1, keepdim=True)


def dense_flow(
    lifted: LiftedHints,
    camera: Camera,
    depth: Tensor,
    regions: Tensor,
    sigma_frac: float = 0.15,
    chunk: int = 1 << 18,
    weights_camera: Camera | None = None,
) -> Tensor:
    """Dense flow of one view.

    Args:
        lifted: hints from :func:`lift_hints`.
        camera: the view's camera. depth: [H, W] its z-depth. regions: [H, W] int region ids as seen
            from this view.
        sigma_frac: Gaussian width as a fraction of the image diagonal.
        weights_camera: measure the pixel-to-hint distances in this camera's image (e.g. the photo's)
            instead of this view's: every view then interpolates the same 3D motion field and the flows
            are consistent with one 3D motion by construction. None: this view's own image.

    Returns:
        flow [H, W, 2] float32, pixels per frame, zero outside regions that have hints.
    """
    h, w = camera.height, camera.width
    if depth.shape != (h, w) or regions.shape != (h, w):
        raise ValueError(f"depth and regions must be ({h}, {w}), got {tuple(depth.shape)} and {tuple(regions.shape)}")
    if sigma_frac <= 0:
        raise ValueError(f"sigma_frac must be positive, got {sigma_frac}")
    device = depth.device
    flow = torch.zeros(h * w, 2, device=device)
    if len(lifted) == 0:
        return flow.reshape(h, w, 2)
    view = CameraBatch.of([camera], device)
    starts = torch.as_tensor(lifted.start, dtype=torch.float32, device=device)
    motions = torch.as_tensor(lifted.motion, dtype=torch.float32, device=device)
    measure = CameraBatch.of([weights_camera], device) if weights_camera is not None else view
    hint_px = measure.project(starts)[0][0]  # [K, 2]
    sigma = sigma_frac * math.hypot(h, w)
    region_of = torch.as_tensor(lifted.region, device=device)
    flat_regions, flat_depth = regions.reshape(-1), depth.reshape(-1)
    for r in torch.unique(region_of).tolist():
        ids = torch.nonzero((flat_regions == r) & torch.isfinite(flat_depth) & (flat_depth > 0)).squeeze(1)
        mine = region_of == r
        # [rows, hints, 3] temporaries: fewer rows per block when a region has many hints
        for part in torch.split(ids, max(1024, min(chunk, (1 << 22) // int(mine.sum())))):
            pix = torch.stack([part % w, part // w], -1).to(torch.float32)
            world = unproject(pix, flat_depth[part], camera)
            at = measure.project(world)[0][0] if weights_camera is not None else pix
            weights = hint_weights(at, hint_px[mine], sigma)  # [N, K]
            moved = ordered_sum(weights[:, :, None] * motions[mine][None], 1)  # [N, 3]
            uv, _ = view.project(world + moved)
            flow[part] = uv[0] - pix
    return flow.reshape(h, w, 2)


def view_flows(views: ViewSet, config: FlowConfig, device: str, net=None) -> tuple[Tensor, list[int]]:
    """Dense flow of every view [V, H, W, 2] (pixels per frame) and the ids of the regions that move.

    ``--flow hints``: every view interpolates the same lifted hints (:func:`dense_flow`). ``--flow model``:
    3D-Cinemagraphy's network ``net`` (thirdparty/cinemagraphy_flow.py) predicts each view's flow from its
    image, moving mask and the hints projected into it (:func:`model_flows`); the views' flows then
    disagree a little, and the 3D motion fit (motion/motion3d.py, robust L1 over every visible view) finds
    the one 3D motion that fits them all (loaded with ``config.flow_model`` when ``net`` is None).
    """
    photo = views.photo
    lifted = lift_hints(views.hints, photo.depth, photo.regions, photo.camera, config.speed)
    moving = warn_regions_without_hints(photo.regions, lifted)
    if not moving:
        warn("no usable motion hint: the 3D motion is zero and the video is still")
    if config.uses_model and moving:
        return model_flows(views, lifted, moving, config, device, net), moving
    from utils.console import track

    flows = [
        dense_flow(
            lifted,
            v.camera,
            torch.as_tensor(v.depth, dtype=torch.float32, device=device),
            torch.as_tensor(v.regions, device=device),
            config.flow_sigma,
            weights_camera=photo.camera if config.flow_weights == "photo" else None,
        )
        for v in track(views.views, "flows")
    ]
    return torch.stack(flows), moving


def view_hints(
    lifted: LiftedHints, camera: Camera, speed: float
) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """The lifted hints as 2D arrows in ``camera``'s image: start and end (start + motion / speed) projected."""
    if len(lifted) == 0:
        return []
    start = torch.as_tensor(lifted.start, dtype=torch.float32)
    end = start + torch.as_tensor(lifted.motion, dtype=torch.float32) / speed
    uv = CameraBatch.of([camera]).project(torch.cat([start, end]))[0][0].tolist()
    k = len(lifted)
    return [(tuple(uv[i]), tuple(uv[k + i])) for i in range(k)]


def model_flows(
    views: ViewSet, lifted: LiftedHints, moving: list[int], config: FlowConfig, device: str, net=None
) -> Tensor:
    """Every view's flow [V, H, W, 2] predicted by the scene-flow network (thirdparty/cinemagraphy_flow.py)."""
    from thirdparty.cinemagraphy_flow import load_sceneflow, predict_flow
    from utils.console import track

    model = net if net is not None else load_sceneflow(config.flow_model, device)
    flows = []
    for v in track(views.views, "flows (model)"):
        mask = np.isin(v.regions, moving)
        hints = view_hints(lifted, v.camera, config.speed)
        flow = predict_flow(model, v.image, mask, hints, device, speed=config.speed)
        flows.append(torch.as_tensor(flow, device=device))
    return torch.stack(flows)


# ----------------------------------------------------------------------------- previews


def flow_to_rgb(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-wheel picture of a flow (H, W, 2): hue = direction, saturation = speed, white = still."""
    import cv2

    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be (H, W, 2), got {flow.shape}")
    mag = np.hypot(flow[..., 0], flow[..., 1])
    peak = max_magnitude if max_magnitude else float(mag.max())
    hue = (np.degrees(np.arctan2(flow[..., 1], flow[..., 0])) % 360.0) / 2.0  # OpenCV hue is 0..180
    sat = np.clip(mag / peak, 0, 1) * 255 if peak > 0 else np.zeros_like(mag)
    hsv = np.stack([hue, sat, np.full_like(mag, 255)], -1).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def draw_flow_arrows(
    image: np.ndarray, flow: np.ndarray, hints: list[Hint] | None = None, step: int | None = None
) -> np.ndarray:
    """Arrows of a flow on a grid over ``image`` (H, W, 3 uint8), hints in red; returns a new image.

    Arrow length shows the motion over 30 frames (a second at 30 fps), shortened for fast flows so that
    the longest arrow spans 1.5 grid cells.
    """
    import cv2

    out = np.ascontiguousarray(image.copy())
    h, w = flow.shape[:2]
    step = step or max(8, round(max(h, w) / 40))
    thick = max(1, round(max(h, w) / 800))
    peak = float(np.hypot(flow[..., 0], flow[..., 1]).max())
    frames = min(30.0, 1.5 * step / peak) if peak > 0 else 30.0
    for y in range(step // 2, h, step):
        for x in range(step // 2, w, step):
            fx, fy = flow[y, x]
            if fx * fx + fy * fy < 1e-8:
                continue
            end = (round(x + frames * fx), round(y + frames * fy))
            cv2.arrowedLine(out, (x, y), end, (255, 255, 0), thick, cv2.LINE_AA, tipLength=0.3)
    for hint in hints or []:
        a = tuple(round(v) for v in hint.start)
        b = tuple(round(v) for v in hint.end)
        cv2.arrowedLine(out, a, b, (255, 0, 0), 2 * thick, cv2.LINE_AA, tipLength=0.2)
    return out
