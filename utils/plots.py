"""Small line plots written as pictures (loss curves, texture retention, training curves): OpenCV, no display."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

BLUE, RED, GREEN, PURPLE, GREY = (40, 40, 200), (200, 40, 40), (40, 150, 40), (150, 40, 150), (170, 170, 170)


@dataclass(frozen=True)
class Curve:
    """One polyline: ``x`` and ``y`` of the same length, an RGB colour and a legend label."""

    x: Sequence[float]
    y: Sequence[float]
    colour: tuple[int, int, int]
    label: str


def line_plot(
    curves: Sequence[Curve],
    title: str = "",
    *,
    width: int = 640,
    height: int = 320,
    log_y: bool = False,
    y_range: tuple[float, float] | None = None,
    hlines: Sequence[tuple[float, tuple[int, int, int], str]] = (),
    vlines: Sequence[tuple[float, tuple[int, int, int], str]] = (),
) -> np.ndarray:
    """The curves on shared axes, as an (H, W, 3) uint8 RGB picture.

    ``log_y``: logarithmic y (values <= 0 dropped). ``y_range``: fixed (low, high), else the data's.
    ``hlines`` / ``vlines``: (value, colour, label) reference lines (a target, a stage boundary).
    NaN and None values are skipped.
    """
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 60, 20, 46, 30
    x0, x1, y0, y1 = left, width - right, top, height - bottom
    cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 1)

    def f(v: float) -> float:
        return math.log10(v) if log_y else v

    points = [(float(a), float(b)) for c in curves for a, b in zip(c.x, c.y) if _ok(b, log_y)]
    ys = [f(b) for _, b in points] + [f(v) for v, _, _ in hlines if _ok(v, log_y)]
    lo, hi = (f(y_range[0]), f(y_range[1])) if y_range else (min(ys, default=0.0), max(ys, default=1.0))
    hi = hi if hi > lo else lo + 1.0
    xs = [a for a, _ in points] + [v for v, _, _ in vlines]
    xlo, xhi = min(xs, default=0.0), max(xs, default=1.0)
    xhi = xhi if xhi > xlo else xlo + 1.0

    def xy(a: float, b: float) -> tuple[int, int]:
        px = x0 + (x1 - x0) * (a - xlo) / (xhi - xlo)
        py = y1 - (y1 - y0) * (min(max(f(b), lo), hi) - lo) / (hi - lo)
        return round(px), round(py)

    for value, colour, label in hlines:
        if _ok(value, log_y):
            _line(img, xy(xlo, value), xy(xhi, value), colour, label)
    for value, colour, label in vlines:
        top_pt, bottom_pt = (round(x0 + (x1 - x0) * (value - xlo) / (xhi - xlo)), y0), None
        bottom_pt = (top_pt[0], y1)
        _line(img, top_pt, bottom_pt, colour, label)
    for k, c in enumerate(curves):
        pts = np.array([xy(float(a), float(b)) for a, b in zip(c.x, c.y) if _ok(b, log_y)], np.int32)
        if len(pts) > 1:
            cv2.polylines(img, [pts], False, c.colour, 2, cv2.LINE_AA)
        _text(img, c.label, (x0 + 8 + 200 * (k % 3), y0 - 8 - 14 * (k // 3)), c.colour)
    for v in (hi, lo):
        _text(img, f"{10**v if log_y else v:.3g}", (4, xy(xlo, 10**v if log_y else v)[1] + 4))
    _text(img, f"{xlo:.3g}", (x0, height - 12))
    _text(img, f"{xhi:.3g}", (x1 - 40, height - 12))
    _text(img, title, (x0, 16))
    return img


def _ok(value, log_y: bool) -> bool:
    return value is not None and math.isfinite(float(value)) and (float(value) > 0 or not log_y)


def _line(img: np.ndarray, a: tuple[int, int], b: tuple[int, int], colour, label: str) -> None:
    cv2.line(img, a, b, colour, 1, cv2.LINE_AA)
    if label:
        _text(img, label, (min(a[0], b[0]) + 4, min(a[1], b[1]) - 4), colour)


def _text(img: np.ndarray, text: str, at: tuple[int, int], colour=(0, 0, 0)) -> None:
    cv2.putText(img, text, at, cv2.FONT_HERSHEY_SIMPLEX, 0.42, colour, 1, cv2.LINE_AA)
