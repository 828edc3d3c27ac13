"""Stage 1's video against a real video of the scene: PSNR, SSIM and (with local weights only) LPIPS.

A scene folder may hold ``gt.mp4``: a real video of the same scene from the photo's viewpoint, as in the
paper's evaluation on the Holynski et al. set (the paper: PSNR 20.57, SSIM 0.90, LPIPS 0.14). Its first
N frames (``--eval_frames``, 60) are compared with the first N frames of stage 1's video of view 0
(``motion/video/00/*.png``); ground-truth frames are resized to the video's size. Each figure is the mean
over the frames of the per-frame figure; a frame identical to its ground truth has an infinite PSNR.

SSIM is 3DGS's (Gaussian 11 x 11 window, sigma 1.5: ``gaussians4d.losses.ssim``) on RGB in [0, 1].
LPIPS (AlexNet) is computed only when the ``lpips`` package and both its weights (its own linear layers
and torchvision's AlexNet in the torch hub cache) are already on disk: nothing is ever downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scene.paths import ScenePaths
from utils.errors import UserError

GT_VIDEO = "gt.mp4"
NO_LPIPS = "n/a (no LPIPS weights)"


def read_frames(path: Path, limit: int) -> np.ndarray:
    """The first ``limit`` frames of a video as (T, H, W, 3) uint8; an unreadable or empty video is a UserError."""
    from utils.video import read_video

    try:
        frames = read_video(path, limit)
    except (OSError, RuntimeError, StopIteration, KeyError, ValueError) as exc:
        raise UserError(f"{path} is not a readable video ({str(exc)[:120]})", "replace it with an mp4") from None
    if not len(frames):
        raise UserError(f"{path} has no frames", "replace it with a video of the scene")
    return frames


def stage1_frames(scene: ScenePaths, limit: int) -> np.ndarray:
    """The first ``limit`` frames of stage 1's video of view 0, (T, H, W, 3) uint8."""
    from scene.io import read_rgb, to_uint8

    files = sorted(scene.motion.video_frame(0, 0).parent.glob("[0-9][0-9][0-9][0-9].png"))[:limit]
    if not files:
        raise UserError(f"{scene.root} has no stage-1 video of view 0", f"run train_motion.py --input_dir {scene.root}")
    return np.stack([to_uint8(read_rgb(f)) for f in files])


def resized(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """(T, h, w, 3) uint8 frames at (height, width): area averaging when shrinking, bilinear when enlarging."""
    import cv2

    if frames.shape[1:3] == (height, width):
        return frames
    shrink = width * height < frames.shape[1] * frames.shape[2]
    mode = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (width, height), interpolation=mode) for f in frames])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images of one shape (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two (H, W, 3) uint8 images (``gaussians4d.losses.ssim``: 11 x 11 Gaussian window)."""
    import torch

    from gaussians4d.losses import ssim as ssim_torch

    x, y = (torch.from_numpy(np.ascontiguousarray(im)).float().div(255.0)[None] for im in (a, b))
    with torch.no_grad():
        return float(ssim_torch(x, y))


def lpips_model():
    """An LPIPS (AlexNet) callable on (H, W, 3) uint8 pairs when its weights are on disk, else None."""
    try:
        import lpips
        import torch
    except ImportError:
        return None
    own = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    backbone = list((Path(torch.hub.get_dir()) / "checkpoints").glob("alexnet-*.pth"))
    if not own.is_file() or not backbone:
        return None
    net = lpips.LPIPS(net="alex", verbose=False).eval()

    def distance(a: np.ndarray, b: np.ndarray) -> float:
        x, y = (torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1)[None].float() / 127.5 - 1 for im in (a, b))
        with torch.no_grad():
            return float(net(x, y))

    return distance


def evaluate_scene(scene_dir: Path, frames: int = 60) -> dict:
    """PSNR, SSIM and LPIPS (or :data:`NO_LPIPS`) of stage 1's video of view 0 against ``SCENE/gt.mp4``.

    Returns ``{"frames", "psnr", "ssim", "lpips", "size": [W, H]}``; a missing or unreadable video is a UserError.
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    scene = ScenePaths(scene_dir)
    ours = stage1_frames(scene, frames)
    h, w = ours.shape[1:3]
    truth = resized(read_frames(scene.root / GT_VIDEO, frames), w, h)
    n = min(len(ours), len(truth))
    pairs = list(zip(ours[:n], truth[:n]))
    metric = lpips_model()
    return {
        "frames": n,
        "size": [int(w), int(h)],
        "psnr": float(np.mean([psnr(a, b) for a, b in pairs])),
        "ssim": float(np.mean([ssim(a, b) for a, b in pairs])),
        "lpips": float(np.mean([metric(a, b) for a, b in pairs])) if metric else NO_LPIPS,
    }
