"""Region masks and hints of an annotation: labelme's rasterisation, region ids, hint regions, the preview."""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image, ImageDraw

from annotation.labelme import RegionShape
from scene.io import Hint
from utils.console import warn


def _draw_shape(draw: ImageDraw.ImageDraw, shape: RegionShape, value: int) -> None:
    """Draw one shape with fill and outline ``value``, as labelme's ``shape_to_mask`` does."""
    pts = shape.points
    if shape.shape_type == "circle":
        (cx, cy), (px, py) = pts
        r = math.hypot(cx - px, cy - py)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=value, fill=value)
    elif shape.shape_type == "rectangle" and len(pts) == 2:
        # PIL needs corners ordered; labelme stores the two clicks in drawing order.
        (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
        draw.rectangle([x0, y0, x1, y1], outline=value, fill=value)
    else:  # polygon, oriented rectangle, or a 4-corner rectangle
        draw.polygon([tuple(p) for p in pts.tolist()], outline=value, fill=value)


def _paint(img: Image.Image, draw: ImageDraw.ImageDraw, shape: RegionShape, value: int) -> None:
    """Paint one shape with ``value``: drawn, or for a labelme "mask" shape its bitmap pasted at its box."""
    if shape.bitmap is None:
        _draw_shape(draw, shape, value)
        return
    x1, y1 = shape.points[0].astype(int)  # labelme truncates the box corner to integers
    img.paste(value, (int(x1), int(y1)), Image.fromarray(shape.bitmap.astype(np.uint8) * 255))


def rasterize_shape(shape: RegionShape, width: int, height: int) -> np.ndarray:
    """(H, W) bool mask of one shape, labelme's rasterisation (PIL, outline included)."""
    img = Image.new("L", (width, height), 0)
    _paint(img, ImageDraw.Draw(img), shape, 1)
    return np.asarray(img, bool)


def rasterize_regions(shapes: list[RegionShape], width: int, height: int) -> np.ndarray:
    """(H, W) int32 region map: 0 static, shape k (1-based, in order) -> k; later shapes overwrite earlier."""
    # One int32 canvas drawn in order gives the same pixels as per-shape masks assigned in order.
    img = Image.new("I", (width, height), 0)
    draw = ImageDraw.Draw(img)
    for k, shape in enumerate(shapes, 1):
        _paint(img, draw, shape, k)
    return np.asarray(img, np.int32).copy()


def drop_empty_regions(
    regions: np.ndarray, shapes: list[RegionShape], add: Callable[[str], None] = warn
) -> tuple[np.ndarray, list[RegionShape]]:
    """Renumber so that every id 1..K has pixels (warning about shapes that cover none)."""
    counts = np.bincount(regions.ravel(), minlength=len(shapes) + 1)
    keep = [k for k in range(1, len(shapes) + 1) if counts[k] > 0]
    for k in range(1, len(shapes) + 1):
        if counts[k] == 0:
            s = shapes[k - 1]
            add(f"shape {s.index} '{s.label}' ({s.shape_type}) covers no pixel (outside the image or hidden): skipped")
    if len(keep) == len(shapes):
        return regions, shapes
    lut = np.zeros(len(shapes) + 1, np.int32)
    lut[keep] = np.arange(1, len(keep) + 1)
    return lut[regions], [shapes[k - 1] for k in keep]


def assign_hint_regions(hints: list[Hint], regions: np.ndarray, add: Callable[[str], None] = warn) -> list[Hint]:
    """Each hint gets the region its start point falls in (nearest pixel); 0, warned, if none."""
    h, w = regions.shape
    out = []
    for hint in hints:
        x = min(max(round(hint.start[0]), 0), w - 1)
        y = min(max(round(hint.start[1]), 0), h - 1)
        region = int(regions[y, x])
        if region == 0:
            add(
                f"hint '{hint.label}' from ({hint.start[0]:.1f}, {hint.start[1]:.1f}) starts outside every motion "
                "region: kept with region 0 (it still steers the motion nearby; move its start into a region to tie it)"
            )
        out.append(Hint(hint.start, hint.end, region, hint.label))
    return out


# ----------------------------------------------------------------------------- preview

_PALETTE = np.array(
    [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230)],
    np.float32,
)


def render_preview(image: np.ndarray, regions: np.ndarray, hints: list[Hint], alpha: float = 0.45) -> np.ndarray:
    """(H, W, 3) uint8: the photo, each region tinted in its own colour, hints as yellow arrows."""
    if image.shape[:2] != regions.shape:
        raise ValueError(f"image {image.shape} and regions {regions.shape} differ in size")
    colours = np.vstack([np.zeros((1, 3), np.float32), _PALETTE[np.arange(int(regions.max(initial=0))) % 7]])
    tint = colours[regions]
    inside = (regions > 0)[..., None]
    out = np.where(inside, image * (1 - alpha) + tint * alpha, image).astype(np.uint8)
    h, w = regions.shape
    thick = max(1, round(min(h, w) / 300))
    for hint in hints:
        a = (round(hint.start[0]), round(hint.start[1]))
        b = (round(hint.end[0]), round(hint.end[1]))
        length = max(math.dist(a, b), 1.0)
        tip = min(0.4, max(0.15, 6.0 * thick / length))
        cv2.arrowedLine(out, a, b, (0, 0, 0), thick + 2, cv2.LINE_AA, tipLength=tip)
        cv2.arrowedLine(out, a, b, (255, 230, 0), thick, cv2.LINE_AA, tipLength=tip)
        cv2.circle(out, a, thick + 1, (255, 230, 0), -1, cv2.LINE_AA)
    return out
