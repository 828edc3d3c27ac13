"""What a looping video looks like, as numbers: texture retention, the loop seam, the motion it shows.

- **Texture retention** of a frame: the high-frequency energy inside the moving region divided by the
  photo's. Grey (float in [0, 1]) minus its Gaussian blur (sigma = 2 px), squared, averaged over the
  motion mask eroded by a 9 x 9 square; the photo is first resized to the frame's size. 1 = as much fine
  texture as the photo; a smear tends to 0. Over a loop: min, median, max and the pulse max / min.
- **Seam**: the mean absolute change from the last frame to the first divided by the mean change between
  consecutive frames (1 = the wrap-around is an ordinary step).
- **Motion**: OpenCV's DIS optical flow between consecutive frames inside the eroded mask, against the
  target flow (pixels per frame): the ratio of the median speeds and the median direction cosine.

- **Fills** of the views (hole pixels): :func:`fill_texture_ratio`, the texture energy (the same high-pass)
  of the filled pixels over that of the photo-derived pixels of the same view, both masks eroded by 7 x 7;
  :func:`fill_anisotropy`, ``max(Ex / Ey, Ey / Ex)`` of the Sobel energies over the eroded filled pixels
  (streaks along rows or columns give large values).

Used by train_motion.py and render_4DGS.py (recorded in their manifests, plotted in report.html) and by
the benchmarks. Inputs are (H, W, 3) uint8 or float images and (H, W) bool masks.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import cv2
import numpy as np

BLUR_SIGMA = 2.0
ERODE = 9
MIN_TARGET_SPEED = 0.05  # px/frame: slower target pixels carry no direction


def _grey(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    image = image.astype(np.float32)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def eroded(mask: np.ndarray, size: int = ERODE) -> np.ndarray:
    """``mask`` eroded by a ``size`` x ``size`` square (outside the frame counts as outside the mask)."""
    m = np.pad(np.asarray(mask, np.uint8), 1)
    return cv2.erode(m, np.ones((size, size), np.uint8))[1:-1, 1:-1].astype(bool)


def high_frequency_energy(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean of (grey - GaussianBlur(grey, sigma 2))^2 over ``mask`` (already eroded); NaN on an empty mask."""
    return _grey_energy(_grey(image), mask)


def _grey_energy(grey: np.ndarray, mask: np.ndarray) -> float:
    detail = grey - cv2.GaussianBlur(grey, (0, 0), BLUR_SIGMA)
    return float(np.mean(detail[mask] ** 2)) if mask.any() else float("nan")


def _resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return cv2.resize(np.asarray(image), (width, height), interpolation=cv2.INTER_AREA)


def _mask_at(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    return _resized(mask.astype(np.uint8), width, height) > 0 if mask.shape != (height, width) else mask


class LoopMeter:
    """The figures of one loop, fed frame by frame (no loop is held in memory): see the module docstring.

    ``target_flow`` (H, W, 2) px per video frame and ``scale`` (video frames per rendered frame) enable the
    motion figures; ``motion_every`` measures every k-th frame pair only (DIS costs ~0.1 s at full HD).
    The DIS flows run on ``workers`` threads (OpenCV releases the GIL), each frame's grey image is made
    once, and :meth:`result` collects the flows in frame order: the figures do not depend on ``workers``.
    """

    def __init__(
        self,
        photo: np.ndarray,
        mask: np.ndarray,
        target_flow=None,
        scale: float = 1.0,
        motion_every: int = 1,
        workers: int | None = None,
    ):
        self.photo, self.mask, self.target, self.scale, self.every = (
            photo,
            mask,
            target_flow,
            scale,
            max(1, motion_every),
        )
        self.workers = workers or max(1, min(4, (os.cpu_count() or 1) - 1))
        self.retention: list[float] = []
        self.steps: list[float] = []
        self._flows: list[Future] = []
        self._first = self._last = self._last_grey = self._reference = self._region = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()  # one DIS instance per worker thread

    def add(self, frame: np.ndarray) -> None:
        frame = np.asarray(frame)
        if self._first is None:
            self._start(frame)
        grey = _grey(frame) if self.photo is not None or self._pool is not None else None
        grey8 = _grey_uint8(grey) if self._pool is not None else None  # DIS's input
        if self.photo is not None:
            energy = _grey_energy(grey, self._region)
            self.retention.append(energy / self._reference if self._reference > 0 else float("nan"))
        if self._last is not None:
            self.steps.append(_mean_abs_difference(frame, self._last))
            if self._pool is not None and (len(self.steps) - 1) % self.every == 0:
                self._flows.append(self._pool.submit(self._measure, self._last_grey, grey8))
        self._last, self._last_grey = frame, grey8

    def _start(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        self._first = frame
        if self.photo is not None:
            self._region = eroded(_mask_at(self.mask, w, h))
            self._reference = high_frequency_energy(_resized(self.photo, w, h), self._region)
        if self.target is not None:
            self._prepare_motion(w, h)

    def _prepare_motion(self, w: int, h: int) -> None:
        target = np.asarray(self.target, np.float32)
        if target.shape[:2] != (h, w):
            sx, sy = w / target.shape[1], h / target.shape[0]
            target = cv2.resize(target, (w, h), interpolation=cv2.INTER_LINEAR) * np.float32([sx, sy])
        self._target = target * np.float32(self.scale)
        self._speed_t = np.hypot(self._target[..., 0], self._target[..., 1])
        self._motion_region = self._region & (self._speed_t > MIN_TARGET_SPEED)
        if self._motion_region.any():
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="loop-meter")

    def _measure(self, ga: np.ndarray, gb: np.ndarray) -> tuple[float, float]:
        """(median measured speed, median direction cosine) of the DIS flow from grey ``ga`` to ``gb``."""
        dis = getattr(self._local, "dis", None)
        if dis is None:
            dis = self._local.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        region = self._motion_region
        flow, t = dis.calc(ga, gb, None)[region], self._target[region]
        speed_m = np.hypot(flow[:, 0], flow[:, 1])
        cos = (flow * t).sum(1) / np.maximum(speed_m * self._speed_t[region], 1e-9)
        return float(np.median(speed_m)), float(np.median(cos))

    @property
    def speeds(self) -> list[float]:
        return [f.result()[0] for f in self._flows]

    @property
    def cosines(self) -> list[float]:
        return [f.result()[1] for f in self._flows]

    def seam_ratio(self) -> float:
        """Mean |frame 0 - last frame| over the mean consecutive change (NaN below 3 frames)."""
        if len(self.steps) < 2:
            return float("nan")
        seam = _mean_abs_difference(self._first, self._last)
        return seam / max(float(np.mean(self.steps)), 1e-12)

    def result(self) -> dict:
        """{"texture_retention": [per frame], "retention": summary, "seam_ratio", "motion": {...} when measured}."""
        out = {
            "texture_retention": [_round(float(v)) for v in self.retention],
            "retention": summary(np.asarray(self.retention)),
            "seam_ratio": _round(self.seam_ratio()),
        }
        if self.target is not None:
            speeds, cosines = self.speeds, self.cosines
            if self._pool is not None:
                self._pool.shutdown()
            ok = speeds and self._motion_region.any()
            ratio = float(np.median(speeds) / np.median(self._speed_t[self._motion_region])) if ok else float("nan")
            cosine = float(np.median(cosines)) if ok else float("nan")
            out["motion"] = {"speed_ratio": _round(ratio), "direction_cosine": _round(cosine)}
        return out


def _grey_uint8(grey: np.ndarray) -> np.ndarray:
    return np.clip(grey * 255, 0, 255).astype(np.uint8)


def _mean_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |a - b| over every pixel and channel (uint8 frames: OpenCV's exact absdiff, summed in float64)."""
    if a.dtype == np.uint8 and b.dtype == np.uint8:
        return float(cv2.absdiff(a, b).mean())
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def _round(value: float) -> float | None:
    return round(value, 4) if np.isfinite(value) else None


def texture_retention(frames: Iterable[np.ndarray], photo: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Texture retention of every frame (see the module docstring); ``mask`` is the photo's motion mask."""
    meter = LoopMeter(photo, mask)
    for frame in frames:
        meter.add(frame)
    return np.asarray(meter.retention, np.float64)


def seam_ratio(frames: Iterable[np.ndarray]) -> float:
    """Mean |frame 0 - last frame| over the mean |frame i+1 - frame i| (whole frames; NaN below 3 frames)."""
    meter = LoopMeter(None, None)
    for frame in frames:
        meter.add(frame)
    return meter.seam_ratio()


def measured_motion(
    frames: Sequence[np.ndarray], target: np.ndarray, mask: np.ndarray, scale: float = 1.0, every: int = 1
) -> dict[str, float | None]:
    """DIS optical flow of consecutive frames vs ``scale`` x ``target`` (H, W, 2) px/frame inside the eroded mask:
    {"speed_ratio": median measured / median target speed, "direction_cosine": median cosine}."""
    meter = LoopMeter(frames[0], mask, target, scale, every)
    for frame in frames:
        meter.add(frame)
    return meter.result()["motion"]


def summary(retention: np.ndarray) -> dict[str, float | None]:
    """min, median, max and pulse (max / min) of a retention curve, rounded for manifests."""
    r = np.asarray(retention, np.float64)
    r = r[np.isfinite(r)]
    if not len(r):
        return {"min": None, "median": None, "max": None, "pulse": None}
    lo, hi = float(r.min()), float(r.max())
    return {
        "min": round(lo, 4),
        "median": round(float(np.median(r)), 4),
        "max": round(hi, 4),
        "pulse": round(hi / lo, 4) if lo > 0 else None,
    }


def video_quality(
    frames: Iterable[np.ndarray],
    photo: np.ndarray,
    mask: np.ndarray,
    target_flow: np.ndarray | None = None,
    scale: float = 1.0,
    motion_every: int = 1,
) -> dict:
    """:class:`LoopMeter`'s figures for a whole loop of frames."""
    meter = LoopMeter(photo, mask, target_flow, scale, motion_every)
    for frame in frames:
        meter.add(frame)
    return meter.result()


def retention_plot(curves: dict[str, Sequence[float | None]]) -> np.ndarray:
    """Texture retention over the loop (x: loop time 0..1) of each named curve, with the targets; (H, W, 3) uint8."""
    from utils.plots import BLUE, GREEN, GREY, PURPLE, RED, Curve, line_plot

    colours = [RED, BLUE, GREEN, PURPLE]
    lines = [
        Curve([i / len(c) for i in range(len(c))], c, colours[k % 4], name)
        for k, (name, c) in enumerate(curves.items())
    ]
    targets = [(1.0, GREY, "the photo"), (0.8, GREY, "median target"), (0.6, GREY, "min target")]
    return line_plot(lines, "texture retention over the loop (loop time 0..1)", y_range=(0.0, 1.5), hlines=targets)


# ----------------------------------------------------------------------------- fills

FILL_ERODE = 7  # the filled and photo masks are eroded by a 7 x 7 square (the seam and the frame edge do not count)


def texture_energy(image: np.ndarray, mask: np.ndarray, erode: int = FILL_ERODE) -> float:
    """Mean of (grey - GaussianBlur(grey, sigma 2))^2 over ``mask`` eroded by ``erode`` x ``erode``; NaN if empty."""
    return high_frequency_energy(image, eroded(mask, erode))


def _check_fill(image: np.ndarray, *masks: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"view image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    for m in masks:
        if m.shape != image.shape[:2] or m.dtype != bool:
            raise ValueError(f"masks must be bool {image.shape[:2]}, got {m.dtype} {m.shape}")


def fill_texture_ratio(view_image: np.ndarray, filled_mask: np.ndarray, photo_mask: np.ndarray) -> float:
    """Texture energy of a view's filled pixels over that of its photo-derived (and not filled) pixels.

    1 = as detailed as the photo, 0 = flat. NaN when an eroded mask is empty or the photo part is flat.
    """
    _check_fill(view_image, filled_mask, photo_mask)
    photo = texture_energy(view_image, photo_mask & ~filled_mask)
    if not photo > 0:
        return float("nan")
    return texture_energy(view_image, filled_mask) / photo


def fill_anisotropy(view_image: np.ndarray, filled_mask: np.ndarray) -> float:
    """``max(Ex / Ey, Ey / Ex)`` of the 3 x 3 Sobel energies over the eroded filled mask (1 = no preferred
    direction; streaks along rows or columns give large values); NaN if empty, inf if one direction is flat."""
    _check_fill(view_image, filled_mask)
    g = _grey(view_image)
    inner = eroded(filled_mask, FILL_ERODE)
    if not inner.any():
        return float("nan")
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)[inner].astype(np.float64)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)[inner].astype(np.float64)
    ex, ey = float(np.mean(gx**2)), float(np.mean(gy**2))
    if ex == 0.0 and ey == 0.0:
        return 1.0  # flat: no direction at all (the texture ratio says it is flat)
    if ex == 0.0 or ey == 0.0:
        return float("inf")
    return max(ex / ey, ey / ex)
