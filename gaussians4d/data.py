"""What train_4DGS.py trains on: stage 1's views (t = 0) and video frames (their loop time), on the device.

Supervision: every multi-view image at t = 0 from its camera (inpainted pixels weighted by
``inpainted_weight``) and every animated video frame i of view v at t = i / N from camera v, except the
held-out frames (i % holdout_every == holdout_every // 2) kept for the held-out PSNR.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gaussians4d.config import TrainConfig
from scene.cameras import Camera, CameraBatch, image_size
from scene.io import read_cameras, read_mask, read_rgb8
from scene.loop import LoopSchedule, loop_schedule
from scene.manifest import require_stage
from scene.paths import ScenePaths
from utils.errors import UserError


@dataclass
class Sample:
    """One supervising image: camera index, loop time, image [H, W, 3] uint8, pixel weight [H, W] or None."""

    cam: int
    t: float
    image: Tensor
    weight: Tensor | None
    name: str


@dataclass
class TrainData:
    cameras: list[Camera]  # stage 1's cameras at their own size
    viewmats: Tensor  # [V, 4, 4]
    Ks: Tensor  # [V, 3, 3] at the training size
    width: int
    height: int
    views: list[Sample]  # t = 0
    frames: list[Sample]  # training video frames
    heldout: list[Sample]  # held-out video frames
    schedule: LoopSchedule  # stage 1's loop (its n_frames is the video's length)

    @property
    def n_video_frames(self) -> int:
        return self.schedule.n_frames

    def draw(self, fine: bool, video_fraction: float, gen: torch.Generator) -> Sample:
        """A random view at t = 0, or (fine stage, with probability ``video_fraction``) a random video frame."""
        u = float(torch.rand((), generator=gen))
        pool = self.frames if fine and self.frames and u < video_fraction else self.views
        return pool[int(torch.randint(len(pool), (), generator=gen))]


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    if image.shape[1] == width and image.shape[0] == height:
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _image(path: Path, width: int, height: int, made_by: str | None = None) -> Tensor:
    """The RGB image at ``path`` as uint8 [H, W, 3] at the training size (resized in float, never upsampled)."""
    image = read_rgb8(path, made_by)
    if image.shape[:2] != (height, width):
        image = np.clip(np.rint(_resize(image.astype(np.float32) / 255.0, width, height) * 255), 0, 255)
    return torch.from_numpy(image.astype(np.uint8))


def _images(paths: list[Path], width: int, height: int, made_by: str | None, device) -> list[Tensor]:
    """:func:`_image` of every path, decoded on a few threads (PNG decoding releases the GIL), in order."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return [image.to(device) for image in pool.map(lambda p: _image(p, width, height, made_by), paths)]


def _video_views(scene: ScenePaths) -> list[int]:
    root = scene.motion.video_dir
    if not root.is_dir():
        return []
    return sorted(int(d.name) for d in root.iterdir() if d.is_dir() and d.name.isdigit())


def _schedule(scene: ScenePaths, manifest: dict) -> LoopSchedule:
    """Stage 1's loop schedule, as its manifest records it (``info.loop``)."""
    try:
        return loop_schedule(manifest["info"]["loop"])
    except (KeyError, TypeError, ValueError):
        raise UserError(
            f"{scene.manifest('motion')} records no loop schedule (made by an older train_motion.py)",
            f"re-run python train_motion.py --input_dir {scene.root}",
        ) from None


def _views(scene: ScenePaths, cfg: TrainConfig, n: int, width: int, height: int, device) -> list[Sample]:
    images = _images([scene.motion.view_image(i) for i in range(n)], width, height, "train_motion.py", device)
    views = []
    for i, image in enumerate(images):
        weight = None
        if scene.motion.view_valid(i).is_file() and cfg.data.inpainted_weight < 1:
            valid = _resize(read_mask(scene.motion.view_valid(i)).astype(np.float32), width, height)
            weight = torch.from_numpy(valid + (1 - valid) * cfg.data.inpainted_weight).float().to(device)
        views.append(Sample(i, 0.0, image, weight, f"view {i:02d}"))
    return views


def _frames(scene, cfg, cameras, n_video, width, height, device) -> tuple[list[Sample], list[Sample]]:
    keys, paths = [], []
    for v in _video_views(scene):
        if v >= len(cameras):
            raise UserError(f"video of view {v} has no camera in {scene.motion.cameras}", "re-run train_motion.py")
        for i in range(n_video):
            path = scene.motion.video_frame(v, i)
            if not path.is_file():
                raise UserError(f"{path} is missing (stage 1 video incomplete)", "re-run train_motion.py")
            keys.append((v, i))
            paths.append(path)
    images = _images(paths, width, height, None, device)
    frames, heldout = [], []
    k = cfg.data.holdout_every
    for (v, i), image in zip(keys, images):
        sample = Sample(v, i / n_video, image, None, f"video {v:02d}/{i:04d}")
        (heldout if k and i % k == k // 2 else frames).append(sample)
    return frames, heldout


def load_data(scene: ScenePaths, cfg: TrainConfig, device: torch.device) -> TrainData:
    """Stage 1's views, video frames and cameras, resized to the training resolution (never upsampled)."""
    manifest = require_stage(scene, "motion")
    cameras = read_cameras(scene.motion.cameras)
    if not cameras:
        raise UserError(f"{scene.motion.cameras} holds no camera", "re-run train_motion.py")
    w0, h0 = cameras[0].width, cameras[0].height
    width, height = image_size(cfg.data.resolution, w0, h0)
    if width > w0 or height > h0:
        raise UserError(
            f"--resolution {width}x{height} is larger than stage 1's images ({w0}x{h0})",
            "give a smaller --resolution, or none for stage 1's size",
        )
    batch = CameraBatch.of([c.scaled(width, height) for c in cameras], device)
    views = _views(scene, cfg, len(cameras), width, height, device)
    schedule = _schedule(scene, manifest)
    frames, heldout = _frames(scene, cfg, cameras, schedule.n_frames, width, height, device)
    return TrainData(cameras, batch.viewmats, batch.Ks, width, height, views, frames, heldout, schedule)
