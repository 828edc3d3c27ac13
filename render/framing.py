"""Keeping what the photo never showed out of the frame.

Every Gaussian knows whether it was born from a photo pixel or from a hole filled in another view
(``from_photo``, stage 1's ``points.ply`` view column). Rendering that flag as a colour gives each pixel
the share of its colour that comes from the photo (the *coverage*, 0 where nothing is drawn); a pixel
whose coverage is below one half shows filled (or empty) content. What must stay out of the frame is
filled content that reaches the frame's edge: the band beyond the photo's field of view that a moved
camera brings in (:func:`edge_filled`). Filled content enclosed by the photo's (a disocclusion behind a
ridge, what the fills are for; a speck where a small model's photo Gaussians leave a gap) is counted
apart and not limited. A path is *framed* by a zoom about the image centre (a crop: the original crops
32 px) and, where the largest allowed zoom is not enough, a smaller amplitude of its motion, both chosen
so that no frame has more than ``limit`` of its pixels in filled content at its edge (:func:`frame_path`). A zoom keeps the camera and lengthens the focal, so it shows the
central part of the frame: one coverage render per frame decides the zoom exactly. The render records, per path, the zoom, the amplitude
and the largest filled fractions it measured over all its frames (at the edge, and all).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from render.camera_paths import CameraPath, PresetPath, frame_phases
from scene.cameras import Camera, CameraBatch
from scene.gaussians import GaussianParams

COVERED = 0.5  # a pixel whose colour is at least this much from photo-born Gaussians shows the photo
SEARCH_STEPS = 5  # bisection steps for a smaller amplitude: 1/32 of the range


@dataclass(frozen=True)
class FramedPath:
    """``path`` zoomed by ``zoom`` (focal x zoom about the image centre) with its motion scaled by ``amplitude``."""

    path: CameraPath
    zoom: float = 1.0
    amplitude: float = 1.0

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def loops(self) -> bool:
        return self.path.loops

    def camera(self, s: float, base: Camera, scale: float) -> Camera:
        cam = self.path.camera(s, base, scale * self.amplitude)
        if self.zoom == 1.0:
            return cam
        K = cam.K.copy()
        K[0, 0] *= self.zoom
        K[1, 1] *= self.zoom
        return Camera(K, cam.w2c, cam.width, cam.height)


@dataclass(frozen=True)
class Coverage:
    """The baked loop (one GaussianParams per loop frame) and each row's colour: 1 = born from the photo."""

    baked: list[GaussianParams]
    colours: Tensor  # [N + M, 3] float

    @classmethod
    def of(cls, baked: list[GaussianParams], from_photo: Tensor) -> Coverage:
        flag = from_photo.to(baked[0].means.device, baked[0].means.dtype)
        return cls(baked, flag[:, None].expand(-1, 3).contiguous())


@torch.no_grad()
def filled_maps(coverage: Coverage, cameras: list[Camera], frames: list[int], backend: str) -> Tensor:
    """[K, H, W] bool: the pixels below :data:`COVERED` of each camera seeing loop frame ``frames[k]``
    (cameras of one loop frame are rendered together, in batches of 16)."""
    from gaussian_renderer import render

    device = coverage.colours.device
    w, h = cameras[0].width, cameras[0].height
    out = torch.zeros(len(cameras), h, w, dtype=torch.bool)
    by_frame: dict[int, list[int]] = {}
    for k, j in enumerate(frames):
        by_frame.setdefault(j % len(coverage.baked), []).append(k)
    for j, ks in by_frame.items():
        g = coverage.baked[j]
        for start in range(0, len(ks), 16):
            batch_ks = ks[start : start + 16]
            batch = CameraBatch.of([cameras[k] for k in batch_ks], device)
            rgb = render(
                g.means, g.quats, g.scales, g.opacities, coverage.colours, batch.viewmats, batch.Ks, w, h,
                sh_degree=None, backend=backend, validate=False,
            ).rgb  # fmt: skip
            out[batch_ks] = (rgb[..., 0] < COVERED).cpu()
    return out


def edge_filled(maps: Tensor) -> Tensor:
    """[K, H, W] bool: the filled pixels of each map connected (8 neighbours) to the map's edge."""
    from scipy import ndimage

    out = torch.zeros_like(maps)
    for k, m in enumerate(maps.numpy()):
        labels, n = ndimage.label(m, structure=np.ones((3, 3), bool))
        if n:
            rim = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
            out[k] = torch.from_numpy(np.isin(labels, rim[rim > 0]))
    return out


def filled_fractions(
    coverage: Coverage, cameras: list[Camera], frames: list[int], backend: str, edge: bool = True
) -> np.ndarray:
    """For each camera, the fraction of its pixels in filled content reaching the frame's edge (``edge``;
    else all filled pixels); see :func:`filled_maps`."""
    maps = filled_maps(coverage, cameras, frames, backend)
    return (edge_filled(maps) if edge else maps).float().mean(dim=(1, 2)).numpy()


def after_zoom(maps: Tensor, zoom: float, edge: bool = True) -> np.ndarray:
    """The filled fraction of each map [K, H, W] once zoomed by ``zoom`` about the image centre (a zoom keeps
    the same camera with a longer focal, so it shows exactly the central 1/zoom of the frame): of the
    filled content reaching the crop's edge (``edge``), else of all of it."""
    h, w = maps.shape[1:]
    cw, ch = max(1, round(w / zoom)), max(1, round(h / zoom))
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    crop = maps[:, y0 : y0 + ch, x0 : x0 + cw]
    return (edge_filled(crop) if edge else crop).float().mean(dim=(1, 2)).numpy()


def _path_maps(path: CameraPath, coverage: Coverage, base: Camera, scale: float, n_video: int, backend: str) -> Tensor:
    return paths_maps([path], coverage, base, scale, n_video, backend)[0]


def paths_maps(
    paths: list[CameraPath], coverage: Coverage, base: Camera, scale: float, n_video: int, backend: str
) -> list[Tensor]:
    """The coverage maps [n_video, H, W] of every frame of each path; the paths' cameras of one loop frame
    are rendered together (one rasterizer call per loop frame, not one per path and frame)."""
    cams: list[Camera] = []
    for path in paths:
        phases = frame_phases(n_video, path.loops)
        cams += [path.camera(float(phases[j]), base, scale) for j in range(n_video)]
    maps = filled_maps(coverage, cams, list(range(n_video)) * len(paths), backend)
    return list(maps.split(n_video))


@dataclass(frozen=True)
class Framing:
    """A framed path and the largest filled fractions over its frames: at the edge (limited), and all."""

    path: FramedPath
    edge_max: float
    any_max: float


def frame_path(
    path: CameraPath,
    coverage: Coverage,
    base: Camera,
    scale: float,
    n_video: int,
    limit: float,
    max_zoom: float,
    backend: str = "auto",
    maps: Tensor | None = None,
) -> Framing:
    """The least zoom (up to ``max_zoom``) keeping every frame's filled fraction at its edge <= ``limit``; past
    ``max_zoom``, also the largest amplitude that does (presets only). ``base`` may be a small camera. Every
    frame of the path is rendered once (the coverage maps, or ``maps`` when given: :func:`paths_maps`); zooms
    are crops of them."""
    if maps is None:
        maps = _path_maps(path, coverage, base, scale, n_video, backend)

    def framing(framed: FramedPath, frames: Tensor) -> Framing:
        z = framed.zoom
        return Framing(framed, float(after_zoom(frames, z).max()), float(after_zoom(frames, z, edge=False).max()))

    if limit >= 1.0 or after_zoom(maps, 1.0).max() <= limit:
        return framing(FramedPath(path), maps)
    if after_zoom(maps, max_zoom).max() <= limit or not isinstance(path, PresetPath):
        return framing(FramedPath(path, _least_zoom(maps, limit, max_zoom)), maps)
    lo, hi = 0.0, 1.0  # a smaller motion (rare): lo passes (the photo's camera), hi fails
    for _ in range(SEARCH_STEPS):
        mid = 0.5 * (lo + hi)
        trial = _path_maps(FramedPath(path, 1.0, mid), coverage, base, scale, n_video, backend)
        lo, hi = (mid, hi) if after_zoom(trial, max_zoom).max() <= limit else (lo, mid)
    trial = _path_maps(FramedPath(path, 1.0, lo), coverage, base, scale, n_video, backend)
    return framing(FramedPath(path, max_zoom, round(lo, 4)), trial)


def _least_zoom(maps: Tensor, limit: float, max_zoom: float) -> float:
    """The smallest zoom in [1, max_zoom] whose crops all stay <= ``limit`` (max_zoom if none does)."""
    lo, hi = 1.0, max_zoom
    if after_zoom(maps, hi).max() > limit:
        return max_zoom
    for _ in range(12):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if after_zoom(maps, mid).max() <= limit else (mid, hi)
    return round(hi, 4)
