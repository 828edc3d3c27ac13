"""train_motion.py, part 2: 2D flow per view -> 3D motion -> looping videos, written into the motion folder.

Called by ``train_motion.py`` after part 1 (views, cameras, points) with everything in memory, or from
the files part 1 wrote (:meth:`Part2Inputs.from_files`, used by benchmarks and tests). Outputs and their
formats: docs/scene_format.md, "train_motion: flows, 3D motion, video".
"""

from __future__ import annotations

import argparse
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from motion.animate import LoopAnimator, flow_from_motion
from motion.flow import dense_flow, draw_flow_arrows, flow_to_rgb, lift_hints, warn_regions_without_hints
from motion.motion3d import (
    MotionConfig,
    end_point_error,
    fit_motion,
    knn_edges,
    projected_flow,
    sample_flow_targets,
)
from scene.io import (
    Camera,
    Hint,
    read_cameras,
    read_hints,
    read_labels,
    read_npy,
    read_points,
    read_rgb,
    to_uint8,
    write_json,
    write_npy,
    write_png,
)
from scene.paths import MASK_CMD, MOTION_CMD, MotionPaths, ScenePaths
from utils.console import info, warn
from utils.errors import UserError
from utils.failpoints import hold


@dataclass(frozen=True)
class Part2Config:
    """Options of part 2 (train_motion.py flags of the same names)."""

    speed: float = 1.0 / 50.0
    """Fraction of a hint's length travelled per frame (the original's (end - start) / 50)."""
    flow_sigma: float = 0.15
    """Width of the Gaussian hint interpolation, as a fraction of the image diagonal."""
    flow_weights: str = "photo"
    """Where hint distances are measured: "photo" (one 3D field, consistent views) or "view" (each view's own)."""
    train_iteration: int = 100
    """Adam steps of the 3D motion optimisation."""
    motion_lr: float = 0.02
    """Adam learning rate, pixels (see motion/motion3d.py)."""
    smooth_weight: float = 0.05
    """Weight of the neighbour smoothness prior of the 3D motion."""
    n_frames: int = 120
    """Frames in the loop (t = i / n_frames)."""
    video_views: str = "0"
    """Views to animate: "0", a comma list like "0,6,12", or "all"."""
    fps: float = 30.0
    """Frame rate of the mp4 previews."""


def add_part2_args(parser: argparse.ArgumentParser) -> None:
    """The part-2 flags of train_motion.py."""
    d = Part2Config()
    group = parser.add_argument_group("flows, 3D motion and video (part 2)")
    group.add_argument("--speed", type=float, default=d.speed, help="fraction of each hint travelled per frame")
    group.add_argument("--flow_sigma", type=float, default=d.flow_sigma, help="hint interpolation width (x diagonal)")
    group.add_argument(
        "--flow_weights",
        choices=("photo", "view"),
        default=d.flow_weights,
        help="hint distances measured in the photo (views consistent) or in each view's own image",
    )
    group.add_argument("--train_iteration", type=int, default=d.train_iteration, help="3D motion optimisation steps")
    group.add_argument("--motion_lr", type=float, default=d.motion_lr, help="3D motion learning rate (pixels)")
    group.add_argument("--smooth_weight", type=float, default=d.smooth_weight, help="3D motion smoothness weight")
    group.add_argument("--n_frames", type=int, default=d.n_frames, help="frames in the looping video")
    group.add_argument("--video_views", default=d.video_views, help='views to animate: "0", "0,6,12" or "all"')
    group.add_argument("--fps", type=float, default=d.fps, help="frame rate of the mp4 previews")


def part2_config(values: Any) -> Part2Config:
    """A :class:`Part2Config` from an argparse Namespace or any object/dict carrying the same names."""
    get = values.get if isinstance(values, dict) else lambda k, default: getattr(values, k, default)
    d = Part2Config()
    config = Part2Config(**{k: get(k, getattr(d, k)) for k in Part2Config.__dataclass_fields__})
    check_part2(config)
    return config


def check_part2(config: Part2Config) -> None:
    """Refuse absurd options with one line each."""
    if not (math.isfinite(config.speed) and 0 < config.speed <= 1):
        raise UserError(f"--speed {config.speed} is out of range", "use a fraction in (0, 1], e.g. 0.02 (= 1/50)")
    if not 0 < config.flow_sigma <= 10:
        raise UserError(f"--flow_sigma {config.flow_sigma} is out of range", "use e.g. 0.15")
    if config.flow_weights not in ("photo", "view"):
        raise UserError(f"--flow_weights {config.flow_weights!r} is not photo or view", "use photo (default) or view")
    if config.train_iteration < 0:
        raise UserError("--train_iteration must be >= 0", "use e.g. 200")
    if not 0 < config.motion_lr <= 10:
        raise UserError(f"--motion_lr {config.motion_lr} is out of range", "use e.g. 0.02")
    if config.smooth_weight < 0:
        raise UserError("--smooth_weight must be >= 0", "use e.g. 0.05")
    if not 2 <= config.n_frames <= 10000:
        raise UserError(f"--n_frames {config.n_frames} is out of range", "use 2 to 10000, e.g. 120")
    if not 0 < config.fps <= 240:
        raise UserError(f"--fps {config.fps} is out of range", "use e.g. 30")


def parse_video_views(text: str, n_views: int) -> list[int]:
    """``--video_views`` -> sorted view indices."""
    text = str(text).strip().lower()
    if text == "all":
        return list(range(n_views))
    try:
        views = sorted({int(p) for p in text.split(",") if p.strip()})
    except ValueError:
        raise UserError(f"--video_views {text!r} is not a list of views", 'use e.g. "0", "0,6,12" or "all"') from None
    if not views or views[0] < 0 or views[-1] >= n_views:
        raise UserError(f"--video_views {text!r} names views outside 0..{n_views - 1}", 'use e.g. "0" or "all"')
    return views


@dataclass
class Part2Inputs:
    """Everything part 2 reads, at the working resolution; view 0 is the photo."""

    cameras: list[Camera]
    images: list[np.ndarray]  # (H, W, 3) uint8 per view
    depths: list[np.ndarray]  # (H, W) float32 z-depth per view
    regions: list[np.ndarray]  # (H, W) int region ids per view
    hints: list[Hint]  # in view-0 (working resolution) pixels
    xyz: np.ndarray  # (P, 3) float32, rows = points.ply rows
    point_region: np.ndarray  # (P,) int

    @classmethod
    def from_part1(cls, part1: Any) -> Part2Inputs:
        """From train_motion.py's in-memory part-1 result."""
        views = part1.views
        return cls(
            cameras=list(part1.cameras),
            images=[v.image for v in views],
            depths=[v.depth for v in views],
            regions=[v.regions for v in views],
            hints=list(part1.hints),
            xyz=part1.points.xyz.detach().cpu().numpy().astype(np.float32),
            point_region=part1.points.region.detach().cpu().numpy().astype(np.int64),
        )

    @classmethod
    def from_files(cls, scene: ScenePaths, motion: MotionPaths) -> Part2Inputs:
        """From the files part 1 wrote into ``motion`` (hints rescaled to view 0's size)."""
        made_by = MOTION_CMD.replace("SCENE", str(scene.root))
        cameras = read_cameras(motion.cameras, made_by)
        h, w = cameras[0].height, cameras[0].width
        images, depths, regions = [], [], []
        for i in range(len(cameras)):
            images.append(to_uint8(read_rgb(motion.view_image(i), made_by)))
            depths.append(read_npy(motion.view_depth(i), (h, w), np.float32, made_by, finite=False))
            regions.append(read_labels(motion.view_regions(i), made_by))
        mask_cmd = MASK_CMD.replace("SCENE", str(scene.root))
        photo_regions = read_labels(scene.regions, mask_cmd)
        sx, sy = w / photo_regions.shape[1], h / photo_regions.shape[0]
        hints = [
            Hint((x.start[0] * sx, x.start[1] * sy), (x.end[0] * sx, x.end[1] * sy), x.region, x.label)
            for x in read_hints(scene.hints, mask_cmd)
        ]
        cloud = read_points(motion.points, made_by)
        return cls(cameras, images, depths, regions, hints, cloud.xyz, cloud.region.astype(np.int64))


# ----------------------------------------------------------------------------- steps


def compute_flows(inputs: Part2Inputs, config: Part2Config, device: str) -> tuple[torch.Tensor, list[int]]:
    """Dense flow of every view [V, H, W, 2] (pixels per frame) and the ids of the regions that move."""
    lifted = lift_hints(inputs.hints, inputs.depths[0], inputs.regions[0], inputs.cameras[0], config.speed)
    moving = warn_regions_without_hints(inputs.regions[0], lifted)
    if not moving:
        warn("no usable motion hint: the 3D motion is zero and the video is still")
    flows = [
        dense_flow(
            lifted,
            cam,
            torch.as_tensor(depth, dtype=torch.float32, device=device),
            torch.as_tensor(regions, device=device),
            config.flow_sigma,
            weights_camera=inputs.cameras[0] if config.flow_weights == "photo" else None,
        )
        for cam, depth, regions in zip(inputs.cameras, inputs.depths, inputs.regions)
    ]
    return torch.stack(flows), moving


def write_flows(out: MotionPaths, flows: torch.Tensor, inputs: Part2Inputs) -> None:
    """flows/NN.npy + NN.png (one colour scale for all views) and flow_arrows.png on view 0."""
    arrays = flows.cpu().numpy().astype(np.float32)
    peak = float(np.hypot(arrays[..., 0], arrays[..., 1]).max()) or 1.0
    out.flows_dir.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> None:
        write_npy(out.flow(i), arrays[i])
        write_png(out.flow_preview(i), flow_to_rgb(arrays[i], peak), 1)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, range(len(arrays))))
    write_png(out.flow_arrows, draw_flow_arrows(inputs.images[0], arrays[0], inputs.hints))


def optimise_motion(
    inputs: Part2Inputs, flows: torch.Tensor, moving: list[int], config: Part2Config, device: str
) -> tuple[np.ndarray, dict]:
    """motion3d (P, 3) float32 (world units per frame, zero for static points) and the loss report."""
    xyz = torch.as_tensor(inputs.xyz, dtype=torch.float32, device=device)
    region = torch.as_tensor(inputs.point_region, device=device)
    depths = torch.as_tensor(np.stack(inputs.depths), dtype=torch.float32, device=device)
    view_regions = torch.as_tensor(np.stack(inputs.regions), device=device)
    mcfg = MotionConfig(iterations=config.train_iteration, lr=config.motion_lr, smooth_weight=config.smooth_weight)
    targets = sample_flow_targets(
        xyz, region, inputs.cameras, flows, depths, view_regions, moving, mcfg.depth_tolerance
    )
    ids = targets.point_ids
    edges = None
    if mcfg.smooth_weight > 0 and len(ids) > 1:
        edges = knn_edges(xyz[ids], region[ids], mcfg.knn)
    fit = fit_motion(xyz[ids], inputs.cameras, targets.targets, targets.visible, edges, mcfg)
    motion = np.zeros((len(xyz), 3), np.float32)
    motion[ids.cpu().numpy()] = fit.motion.cpu().numpy()
    pred = projected_flow(xyz[ids], fit.motion, inputs.cameras)
    per_view = [_epe(pred[v], targets.targets[v], targets.visible[v]) for v in range(len(inputs.cameras))]
    unseen = int((~targets.visible.any(0)).sum())
    point_region = region[ids]
    per_region = {
        str(r): _epe(
            pred[:, point_region == r], targets.targets[:, point_region == r], targets.visible[:, point_region == r]
        )
        for r in moving
    }
    report = {
        "steps": fit.loss_steps,
        "loss": fit.loss,
        "data_loss_l1": fit.data_loss,
        "epe_px_per_frame": _finite(fit.epe),  # None when no pair is visible (nothing moves)
        "epe_zero_motion_px_per_frame": _finite(fit.epe_initial),
        "epe_per_view": per_view,
        "epe_per_region": per_region,
        "moving_points": len(ids),
        "moving_points_seen_by_no_view": unseen,
        "visible_pairs": int(targets.visible.sum()),
        "views": len(inputs.cameras),
        "moving_regions": moving,
        "config": {
            "iterations": mcfg.iterations,
            "lr": mcfg.lr,
            "smooth_weight": mcfg.smooth_weight,
            "init": mcfg.init,
        },
    }  # no wall-clock time here: outputs must not differ between identical runs (it is in the manifest's timings_s)
    return motion, report


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _epe(pred: torch.Tensor, target: torch.Tensor, visible: torch.Tensor) -> float | None:
    return _finite(end_point_error(pred, target, visible))


def loss_plot(report: dict, width: int = 640, height: int = 360) -> np.ndarray:
    """The loss curve (log scale) with the final EPE, as an (H, W, 3) uint8 picture."""
    import cv2

    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 70, 20, 40, 40
    curves = [(report["loss"], (200, 40, 40)), (report["data_loss_l1"], (40, 40, 200))]
    values = np.array([v for c, _ in curves for v in c if v > 0] or [1.0])
    lo, hi = math.log10(values.min()), math.log10(values.max())
    hi = hi if hi > lo else lo + 1.0
    steps = report["steps"] or [0]
    last = max(steps[-1], 1)
    cv2.rectangle(img, (left, top), (width - right, height - bottom), (0, 0, 0), 1)

    def xy(step: float, value: float) -> tuple[int, int]:
        x = left + (width - left - right) * step / last
        y = top + (height - top - bottom) * (hi - math.log10(max(value, 1e-12))) / (hi - lo)
        return round(x), round(y)

    for curve, colour in curves:
        pts = np.array([xy(s, v) for s, v in zip(steps, curve)], np.int32)
        if len(pts) > 1:
            cv2.polylines(img, [pts], False, colour, 2, cv2.LINE_AA)
    for value in (hi, lo):
        cv2.putText(img, f"{10**value:.2g}", (4, xy(0, 10**value)[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.putText(img, f"step {last}", (width - right - 70, height - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    epe = report["epe_px_per_frame"]
    title = "3D motion: loss (red), L1 data term (blue); final EPE " + (
        f"{epe:.4f} px/frame" if epe is not None else "n/a"
    )
    cv2.putText(img, title, (left, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def view_animation_inputs(
    inputs: Part2Inputs, view: int, flows: torch.Tensor, motion: np.ndarray, moving: list[int], device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """image, flow, mask, depth of one view for :class:`LoopAnimator`.

    View 0 moves with its own 2D flow (as the paper animates the photo); every other view with the
    projection of the optimised 3D motion, so that all videos show one and the same 3D motion.
    """
    image = torch.as_tensor(inputs.images[view], device=device).float() / 255.0
    depth = torch.as_tensor(inputs.depths[view], dtype=torch.float32, device=device)
    regions = torch.as_tensor(inputs.regions[view], device=device)
    in_region = torch.isin(regions, torch.as_tensor(moving or [-1], device=device, dtype=regions.dtype))
    if view == 0:
        return image, flows[0], in_region, depth
    from scene.cameras import CameraBatch

    cam = inputs.cameras[view]
    xyz = torch.as_tensor(inputs.xyz, device=device)
    d = torch.as_tensor(motion, device=device)
    moving_pts = (d != 0).any(1)
    batch = CameraBatch.of([cam], device)
    uv, z = batch.project(xyz)
    flow2d = batch.project(xyz + d)[0][0] - uv[0]
    flow, mask = flow_from_motion(uv[0], z[0], flow2d.nan_to_num(0.0), moving_pts, cam.height, cam.width)
    return image, flow, mask & in_region, depth


def write_video(out: MotionPaths, view: int, animator: LoopAnimator, fps: float) -> dict:
    """video/VV/FFFF.png for every frame and video/VV.mp4 (if imageio-ffmpeg is installed)."""
    from utils.video import write_mp4

    folder = out.video_frame(view, 0).parent
    folder.mkdir(parents=True, exist_ok=True)
    pool = ThreadPoolExecutor(max_workers=4)
    pending = []

    def frames():
        for i, frame in enumerate(animator.frames()):
            array = to_uint8(frame.cpu().numpy())
            pending.append(pool.submit(write_png, out.video_frame(view, i), array, 1))
            yield array

    mp4 = True
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        mp4 = False
    with pool:
        if mp4:
            write_mp4(out.video_mp4(view), frames(), fps=fps)
        else:
            for _ in frames():
                pass
        for job in pending:
            job.result()
    if not mp4:
        warn(f"imageio-ffmpeg is not installed: video/{view:02d}.mp4 skipped (frames are written)")
    return {"view": view, "frames": animator.n, "mp4": mp4}


# ----------------------------------------------------------------------------- the part


def run_part2(out: MotionPaths, inputs: Part2Inputs, config: Part2Config, device: str, run: Any = None) -> dict:
    """Flows, 3D motion and videos written into ``out``; returns the info recorded in the manifest.

    ``run`` is an optional :class:`scene.manifest.StageRun` that times each step.
    """
    check_part2(config)
    views = parse_video_views(config.video_views, len(inputs.cameras))
    if len(inputs.xyz) != len(inputs.point_region):
        raise ValueError("xyz and point_region must have the same length")

    def step(name: str):
        from contextlib import nullcontext

        return run.step(name) if run is not None else nullcontext()

    with step("flows"):
        flows, moving = compute_flows(inputs, config, device)
        write_flows(out, flows, inputs)
    with step("motion3d"):
        motion, report = optimise_motion(inputs, flows, moving, config, device)
        write_npy(out.motion3d, motion)
        hold("motion:motion3d")
        write_json(out.motion_loss, report)
        write_png(out.motion_loss_plot, loss_plot(report))
    if report["epe_px_per_frame"] is not None:
        info(
            f"3D motion: {report['moving_points']} moving points, EPE {report['epe_px_per_frame']:.4f} px/frame "
            f"(zero motion: {report['epe_zero_motion_px_per_frame']:.4f}) after {config.train_iteration} steps"
        )
    videos = []
    with step("video"):
        for v in views:
            image, flow, mask, depth = view_animation_inputs(inputs, v, flows, motion, moving, device)
            animator = LoopAnimator(image, flow, mask, depth, config.n_frames)
            videos.append(write_video(out, v, animator, config.fps))
    result = {
        "moving_regions": moving,
        "epe_px_per_frame": report["epe_px_per_frame"],
        "moving_points": report["moving_points"],
        "videos": videos,
    }
    if run is not None:
        run.info["part2"] = result
    return result
