"""What stage 1 writes into its motion folder, and how the views are read back (docs/scene_format.md).

:func:`write_views` / :func:`read_views` are a pair: the view set in memory (:class:`ViewSet`) and on
disk hold the same images, depths, valid masks, regions, cameras and point cloud. PNGs are written with
fast zlib settings (level 1) from a few threads (zlib releases the GIL).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from motion.animate import LoopAnimator
from motion.multiview import View, contact_sheet
from scene.cameras import Camera
from scene.io import (
    Hint,
    PointCloud,
    read_cameras,
    read_hints,
    read_labels,
    read_mask,
    read_npy,
    read_points,
    read_rgb,
    to_uint8,
    write_cameras,
    write_json,
    write_labels,
    write_mask,
    write_npy,
    write_png,
    write_points,
)
from scene.paths import MASK_CMD, MOTION_CMD, MotionPaths, ScenePaths
from scene.quality import LoopMeter, retention_plot
from utils.console import track, warn
from utils.plots import BLUE, RED, Curve, line_plot


@dataclass
class ViewSet:
    """Stage 1's multi-view images at the working resolution: view 0 is the photo.

    ``hints`` are in view-0 pixels; ``cloud`` rows are the rows of ``points.ply`` and ``motion3d.npy``.
    """

    views: list[View]
    hints: list[Hint]
    cloud: PointCloud

    @property
    def cameras(self) -> list[Camera]:
        return [v.camera for v in self.views]

    @property
    def photo(self) -> View:
        return self.views[0]


# ----------------------------------------------------------------------------- views


def write_views(out: MotionPaths, views: ViewSet) -> None:
    """depth.npy/png, cameras.json, views/NN*, points.ply, views.png."""
    from motion.depth import depth_preview

    write_npy(out.depth, views.photo.depth.astype(np.float32))
    write_png(out.depth_preview, depth_preview(views.photo.depth), compress_level=1)
    write_cameras(out.cameras, views.cameras)
    out.views_dir.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> None:
        v = views.views[i]
        write_png(out.view_image(i), v.image, compress_level=1)
        write_npy(out.view_depth(i), v.depth.astype(np.float32))
        write_mask(out.view_valid(i), v.valid)
        write_labels(out.view_regions(i), v.regions)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1) + 1) as pool:
        cloud = pool.submit(write_points, out.points, views.cloud)
        sheet = pool.submit(lambda: write_png(out.views_sheet, contact_sheet([v.image for v in views.views])))
        list(pool.map(one, range(len(views.views))))
        cloud.result()
        sheet.result()


def read_views(scene: ScenePaths, out: MotionPaths) -> ViewSet:
    """The view set from the files :func:`write_views` wrote into ``out`` (hints rescaled to view 0's size)."""
    made_by = MOTION_CMD.replace("SCENE", str(scene.root))
    cameras = read_cameras(out.cameras, made_by)
    h, w = cameras[0].height, cameras[0].width
    views = [
        View(
            camera,
            to_uint8(read_rgb(out.view_image(i), made_by)),
            read_npy(out.view_depth(i), (h, w), np.float32, made_by, finite=False),
            read_mask(out.view_valid(i), made_by),
            read_labels(out.view_regions(i), made_by),
        )
        for i, camera in enumerate(cameras)
    ]
    mask_cmd = MASK_CMD.replace("SCENE", str(scene.root))
    photo_regions = read_labels(scene.regions, mask_cmd)
    sx, sy = w / photo_regions.shape[1], h / photo_regions.shape[0]
    hints = [h_.scaled(sx, sy) for h_ in read_hints(scene.hints, mask_cmd)]
    return ViewSet(views, hints, read_points(out.points, made_by))


# ----------------------------------------------------------------------------- flows and 3D motion


def write_flows(out: MotionPaths, flows: torch.Tensor, views: ViewSet) -> None:
    """flows/NN.npy + NN.png (one colour scale for all views) and flow_arrows.png on view 0."""
    from motion.flow import draw_flow_arrows, flow_to_rgb

    arrays = flows.cpu().numpy().astype(np.float32)
    peak = float(np.hypot(arrays[..., 0], arrays[..., 1]).max()) or 1.0
    out.flows_dir.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> None:
        write_npy(out.flow(i), arrays[i])
        write_png(out.flow_preview(i), flow_to_rgb(arrays[i], peak), 1)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, range(len(arrays))))
    write_png(out.flow_arrows, draw_flow_arrows(views.photo.image, arrays[0], views.hints))


def loss_plot(report: dict) -> np.ndarray:
    """The 3D motion fit's loss curves (log scale) with the final EPE, as an (H, W, 3) uint8 picture."""
    steps = report["steps"] or [0]
    epe = report["epe_px_per_frame"]
    title = "3D motion fit; final EPE " + (f"{epe:.4f} px/frame" if epe is not None else "n/a")
    curves = [
        Curve(steps, report["loss"], RED, "loss (data + prior)"),
        Curve(steps, report["data_loss_l1"], BLUE, "L1 data term"),
    ]
    return line_plot(curves, title, width=640, height=360, log_y=True)


# ----------------------------------------------------------------------------- video


def write_video(
    out: MotionPaths, view: int, animator: LoopAnimator, fps: float, meter: LoopMeter | None = None
) -> dict:
    """video/VV/FFFF.png for every frame and video/VV.mp4 (if imageio-ffmpeg is installed); ``meter``
    measures every frame on the way (scene/quality.py)."""
    from utils.video import write_mp4

    folder = out.video_frame(view, 0).parent
    folder.mkdir(parents=True, exist_ok=True)
    pool = ThreadPoolExecutor(max_workers=4)  # PNG encoding
    measure = ThreadPoolExecutor(max_workers=1)  # the meter, in frame order, beside the GPU's next frame
    pending = []

    def frames():
        for i, frame in enumerate(track(animator.frames(), f"video {view:02d}", total=animator.n)):
            array = frame_to_uint8(frame)
            pending.append(pool.submit(write_png, out.video_frame(view, i), array, 1))
            if meter is not None:
                pending.append(measure.submit(meter.add, array))
            yield array

    mp4 = True
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        mp4 = False
    with pool, measure:
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


def frame_to_uint8(frame: torch.Tensor) -> np.ndarray:
    """An [H, W, 3] float frame in [0, 1] as uint8, converted on its device (a quarter of the bytes cross to
    the host); the same values as scene.io.to_uint8 (float64 product, rounding half to even)."""
    if not bool(torch.isfinite(frame).all()):
        raise ValueError("image has non-finite values")
    return (frame.double() * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def write_loop_quality(out: MotionPaths, results: dict[int, dict]) -> dict:
    """loop_quality.json (every video's figures, per frame) and loop_quality.png (the retention curves);
    returns the summary the manifest records (no per-frame lists)."""
    write_json(out.loop_quality, {f"{v:02d}": r for v, r in results.items()})
    write_png(out.loop_quality_plot, retention_plot({f"view {v}": r["texture_retention"] for v, r in results.items()}))
    return {f"{v:02d}": {k: x for k, x in r.items() if k != "texture_retention"} for v, r in results.items()}
