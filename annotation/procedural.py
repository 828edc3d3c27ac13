"""Procedural landscape scenes with exact ground truth, for the demo and the tests.

A scene is a photo (sky with clouds, two mountain ridges, a river on receding ground), its labelme 5.x
annotation (polygons for the river and the cloud band, ``hint_*`` lines along the intended motion,
``imagePath`` and embedded ``imageData``), and the ground truth the tests need: the region map exactly
as labelme rasterises the polygons, the hint vectors, and the depth layout used to build the photo.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from scene.io import Hint, write_json, write_labels, write_npy, write_png

FOCAL_AT_512 = 582.69  # focal length in pixels for a 512-pixel-high image (the original's)
SKY_DEPTH = 200.0  # scene units; far, not infinite
CAMERA_HEIGHT = 1.0  # scene units above the ground plane


@dataclass
class ProceduralScene:
    image: np.ndarray  # (H, W, 3) uint8
    labelme: dict  # labelme 5.x document
    regions: np.ndarray  # (H, W) int32, 0 = static, k = k-th motion polygon in labelme order
    region_labels: list[str]  # label of region k at index k - 1
    hints: list[Hint]  # full-resolution pixels, region = the region the hint starts in
    depth: np.ndarray  # (H, W) float32 z-depth in scene units
    focal: float  # pixels

    @property
    def mask(self) -> np.ndarray:
        return self.regions > 0


def _fractal_1d(rng: np.random.Generator, n: int, octaves: int = 5) -> np.ndarray:
    """Smooth 1D noise in [-1, 1] of length n."""
    x = np.linspace(0.0, 1.0, n)
    out = np.zeros(n)
    amp = 1.0
    for octave in range(octaves):
        knots = 2 ** (octave + 2) + 1
        out += amp * np.interp(x, np.linspace(0, 1, knots), rng.uniform(-1, 1, knots))
        amp *= 0.5
    return out / np.abs(out).max()


def _noise_2d(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth value noise in [0, 1] with about ``cells`` features across the width."""
    gh, gw = max(2, cells * h // max(w, 1) + 2), cells + 2
    grid = rng.uniform(0, 1, (gh, gw)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, mode="F").resize((w, h), Image.BICUBIC)).clip(0, 1)


def _rasterize(shape_points: list[list[float]], size: tuple[int, int]) -> np.ndarray:
    """A polygon exactly as labelme rasterises it (PIL, outline and fill)."""
    img = Image.new("1", size, 0)
    ImageDraw.Draw(img).polygon([tuple(p) for p in shape_points], outline=1, fill=1)
    return np.asarray(img, bool)


def _river_polygon(w: int, h: int, horizon: int, rng: np.random.Generator, n: int = 12) -> list[list[float]]:
    """A river from the horizon (narrow) to the bottom edge (wide), gently winding."""
    ys = np.linspace(horizon + 1, h - 1, n)
    s = (ys - horizon) / max(h - horizon, 1)  # 0 at horizon, 1 at bottom
    phase = rng.uniform(0, 2 * np.pi)
    centre = w * (0.5 + 0.12 * np.sin(phase + 3.0 * s) * (1 - 0.5 * s))
    half = w * (0.02 + 0.22 * s**1.3) + 1.0
    left = [[float(c - hw), float(y)] for c, hw, y in zip(centre, half, ys, strict=True)]
    right = [[float(c + hw), float(y)] for c, hw, y in zip(centre, half, ys, strict=True)]
    pts = left + right[::-1]
    return [[round(min(max(x, 0.0), w - 1.0), 2), round(y, 2)] for x, y in pts]


def _cloud_polygon(w: int, h: int, top: float, bottom: float) -> list[list[float]]:
    xs = np.linspace(0, w - 1, 8)
    upper = [[float(x), top + 0.02 * h * np.sin(i)] for i, x in enumerate(xs)]
    lower = [[float(x), bottom + 0.02 * h * np.cos(i)] for i, x in enumerate(xs)][::-1]
    return [[round(x, 2), round(y, 2)] for x, y in upper + lower]


def _line(label: str, start: tuple[float, float], end: tuple[float, float]) -> dict:
    return {
        "label": label,
        "points": [[round(start[0], 2), round(start[1], 2)], [round(end[0], 2), round(end[1], 2)]],
        "group_id": None,
        "description": "",
        "shape_type": "line",
        "flags": {},
        "mask": None,
    }


def _polygon(label: str, points: list[list[float]]) -> dict:
    return {
        "label": label,
        "points": points,
        "group_id": None,
        "description": "",
        "shape_type": "polygon",
        "flags": {},
        "mask": None,
    }


def _png_base64(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def make_landscape(width: int = 640, height: int = 360, seed: int = 0) -> ProceduralScene:
    """A deterministic landscape photo, its labelme annotation and ground truth."""
    if width < 32 or height < 32:
        raise ValueError(f"scene must be at least 32x32, got {width}x{height}")
    rng = np.random.default_rng(seed)
    w, h = int(width), int(height)
    focal = FOCAL_AT_512 * h / 512.0
    horizon = round(h * rng.uniform(0.50, 0.56))
    cloud_top, cloud_bottom = 0.06 * h, 0.26 * h
    image, depth = _paint_sky_and_mountains(rng, w, h, horizon, cloud_top, cloud_bottom)
    image, depth, river_pts = _paint_ground_and_river(rng, image, depth, w, h, horizon, focal)
    photo = np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)
    shapes, labels, regions, hints = _annotate(river_pts, w, h, cloud_top, cloud_bottom, seed)
    labelme = {
        "version": "5.2.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": "image.png",
        "imageData": _png_base64(photo),
        "imageHeight": h,
        "imageWidth": w,
    }
    return ProceduralScene(photo, labelme, regions, labels, hints, depth, focal)


def _paint_sky_and_mountains(rng, w: int, h: int, horizon: int, cloud_top: float, cloud_bottom: float):
    """Sky (gradient and soft clouds in a band well above the mountains) and two ridges behind the horizon."""
    yy = np.mgrid[0:h, 0:w][0].astype(np.float32)
    t = (yy / horizon)[..., None]
    image = (1 - t) * np.array([0.25, 0.45, 0.80]) + t * np.array([0.75, 0.85, 0.95])
    clouds = _noise_2d(rng, h, w, 9) * _noise_2d(rng, h, w, 23) ** 0.5
    band = np.clip(1 - np.abs((yy - (cloud_top + cloud_bottom) / 2) / ((cloud_bottom - cloud_top) / 2)), 0, 1)
    cloud_alpha = np.clip((clouds - 0.25) * 2.5, 0, 1) * band**0.7
    image = image * (1 - cloud_alpha[..., None]) + cloud_alpha[..., None] * np.array([0.97, 0.97, 0.98])
    depth = np.full((h, w), SKY_DEPTH, np.float32)
    # A far bluish ridge and a near green-grey one.
    for ridge_depth, base, colour, rough in (
        (90.0, 0.34, (0.45, 0.52, 0.65), 0.10),
        (45.0, 0.42, (0.30, 0.40, 0.33), 0.06),
    ):
        ridge = h * (base + rough * _fractal_1d(rng, w))
        inside = yy >= ridge[None, :]
        inside &= yy < horizon + 1
        shade = 0.8 + 0.4 * _noise_2d(rng, h, w, 30)[..., None]
        image = np.where(inside[..., None], np.array(colour) * shade, image)
        depth = np.where(inside, ridge_depth, depth)
    return image, depth


def _paint_ground_and_river(rng, image, depth, w: int, h: int, horizon: int, focal: float):
    """The ground plane below the horizon (z = f * camera_height / (y - horizon), capped at the near ridge) and
    a river on it, with ripples across the flow so that motion is visible. Returns (image, depth, river polygon)."""
    yy = np.mgrid[0:h, 0:w][0].astype(np.float32)
    below = yy > horizon
    ground_depth = focal * CAMERA_HEIGHT / np.maximum(yy - horizon, 1e-3)
    depth = np.where(below, np.minimum(ground_depth, 44.0), depth).astype(np.float32)
    grass = 0.75 + 0.5 * _noise_2d(rng, h, w, 40)[..., None] * _noise_2d(rng, h, w, 7)[..., None]
    image = np.where(below[..., None], np.array([0.33, 0.45, 0.20]) * grass, image)
    river_pts = _river_polygon(w, h, horizon, rng)
    river = _rasterize(river_pts, (w, h))
    ripples = 0.5 + 0.5 * np.sin(2 * np.pi * (ground_depth.clip(0, 60) * 1.3) + 3 * _noise_2d(rng, h, w, 12))
    water = (
        np.array([0.18, 0.38, 0.62]) * (0.8 + 0.35 * ripples[..., None]) + 0.08 * _noise_2d(rng, h, w, 60)[..., None]
    )
    return np.where(river[..., None], water, image), depth, river_pts


def _annotate(river_pts, w: int, h: int, cloud_top: float, cloud_bottom: float, seed: int):
    """labelme shapes (river = region 1, clouds = 2, then the hint lines), labels, the region map and the hints."""
    cloud_pts = _cloud_polygon(w, h, cloud_top, cloud_bottom)
    shapes = [_polygon("water", river_pts), _polygon("cloud", cloud_pts)]
    labels = ["water", "cloud"]
    regions = np.zeros((h, w), np.int32)
    for k, shape in enumerate(shapes, 1):
        regions[_rasterize(shape["points"], (w, h))] = k
    hints: list[Hint] = []
    river_arr = np.asarray(river_pts)
    n_side = len(river_arr) // 2
    centre = (river_arr[:n_side] + river_arr[::-1][:n_side]) / 2  # centreline from horizon to bottom
    for i, frac in enumerate((0.45, 0.7, 0.9)):
        a = centre[int(frac * (n_side - 1)) - 1]
        b = centre[int(frac * (n_side - 1))]
        direction = (b - a) / np.linalg.norm(b - a)
        start = a + 0.3 * (b - a)
        length = 0.12 * h * (0.4 + frac)
        # The arrow stays inside the image (a hint pointing out of it is a warning for the user).
        room = min(
            ((lim - p) / d if d > 0 else -p / d) for p, d, lim in zip(start, direction, (w - 1, h - 1)) if abs(d) > 1e-9
        )
        end = start + direction * min(length, 0.98 * room)
        hints.append(Hint((float(start[0]), float(start[1])), (float(end[0]), float(end[1])), 1, f"hint_{i}"))
    for j, fx in enumerate((0.3, 0.7)):
        y = (cloud_top + cloud_bottom) / 2
        hints.append(Hint((fx * w, y), (fx * w + 0.08 * w, y), 2, f"hint_{3 + j}"))
    hints = [
        Hint(tuple(round(v, 2) for v in hh.start), tuple(round(v, 2) for v in hh.end), hh.region, hh.label)
        for hh in hints
    ]
    shapes += [_line(hh.label, hh.start, hh.end) for hh in hints]
    for hh in hints:  # ground truth must agree with the annotation itself
        x, y = (round(v) for v in hh.start)
        if regions[y, x] != hh.region:
            raise RuntimeError(f"procedural hint {hh.label} lies outside its region (seed {seed})")
    return shapes, labels, regions, hints


def save_scene(scene: ProceduralScene, folder: str | Path, ground_truth: bool = False) -> Path:
    """Write ``image.png`` and ``image.json`` (and ``ground_truth/`` if asked) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_png(folder / "image.png", scene.image)
    write_json(folder / "image.json", scene.labelme)
    if ground_truth:
        gt = folder / "ground_truth"
        write_labels(gt / "regions.png", scene.regions)
        write_npy(gt / "depth.npy", scene.depth)
        write_json(
            gt / "truth.json",
            {
                "focal": scene.focal,
                "region_labels": scene.region_labels,
                "hints": [{"start": hh.start, "end": hh.end, "region": hh.region} for hh in scene.hints],
            },
        )
    return folder
