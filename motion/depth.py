"""Depth of the photo: the weight-free landscape prior, the learned backend's conversion, scene units.

Scene units (docs/scene_format.md, "train_motion: views"): every depth map, whatever made it, is
scaled so that its near content (the 5th percentile of the non-sky depths) lies at ``NEAR_DEPTH`` = 2
units, clamped to ``[NEAR_DEPTH / 4, FAR_DEPTH]``, and the sky is put at ``SKY_DEPTH`` (far, finite).
With the default focal length (1.14 x H) a camera move of 0.1 unit then shifts the near ground by
~6% of the image height (about 40 px at 720p) and the far land by ~1 px: the camera paths' amplitudes
(~0.1 unit) are visible but gentle moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

NEAR_DEPTH = 2.0  # scene units of the 5th percentile of non-sky depth
FAR_DEPTH = 100.0  # farthest non-sky depth (mountains at the horizon)
SKY_DEPTH = 200.0  # the sky: far, not infinite
_WORK_HEIGHT = 256  # sky detection runs at about this height (speed, scale-invariance)


@dataclass
class DepthResult:
    """The photo's depth in scene units and how it was made."""

    depth: np.ndarray  # (H, W) float32 z-depth, scene units
    sky: np.ndarray  # (H, W) bool
    method: str  # "prior" or "model:<name>"
    info: dict


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"image must be uint8 or float in [0, 1], got {image.dtype}")
    return image.astype(np.float32)


def _sky_candidates(small: np.ndarray) -> np.ndarray:
    """Pixels that look like sky: blue or bright-and-grey (clouds), and smooth."""
    r, g, b = small[..., 0], small[..., 1], small[..., 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    saturation = small.max(2) - small.min(2)
    blue = (b > r + 0.04) & (b > 0.18) & (b >= g - 0.05)
    cloud = (luma > 0.55) & (saturation < 0.18)
    blurred = cv2.GaussianBlur(luma, (0, 0), 1.0)
    grad = np.hypot(cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=3))
    texture = cv2.blur(grad, (5, 5))
    return (blue | cloud) & (texture < 0.12)


def detect_sky(image: np.ndarray) -> np.ndarray:
    """(H, W) bool sky mask: sky-like pixels connected to the top edge, extended down each column.

    A pixel is sky-like when it is blue (or bright and grey: clouds) and smooth. The sky is the union
    of the sky-like components that touch the top edge; in each column it runs from the top edge down
    to their lowest pixel (so clouds inside the sky are sky, objects below it never are). Limits: sky
    cut off from the top edge by textured clouds is missed (it gets the depth of distant land), and
    smooth bluish mountains touching the sky may be taken for it.
    """
    rgb = _check_image(image)
    h, w = rgb.shape[:2]
    scale = min(1.0, _WORK_HEIGHT / h)
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA) if scale < 1 else rgb
    cand = _sky_candidates(small).astype(np.uint8)
    cand = cv2.morphologyEx(cand, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    _, labels = cv2.connectedComponents(cand, connectivity=4)
    top = np.unique(labels[0][cand[0] > 0])
    sky_small = np.isin(labels, top[top > 0])
    # Column-monotone: everything above a column's lowest sky pixel is sky (clouds enclosed in it too).
    lowest = np.where(sky_small.any(0), sh - np.argmax(sky_small[::-1], axis=0), 0)
    skyline = lowest.astype(np.float32) / sh  # fraction of the height, per column
    skyline = np.interp(np.linspace(0, sw - 1, w), np.arange(sw), skyline) * h
    return np.arange(h)[:, None] < np.rint(skyline)[None, :]


def horizon_row(sky: np.ndarray) -> float:
    """Row of the horizon (vanishing line of the ground) from the sky mask, in pixels (may be < 0).

    With a sky: the lower envelope of the skyline (its 90th percentile over columns). Without: the
    camera is taken to look down at receding ground whose horizon lies half an image above the top.
    """
    h = sky.shape[0]
    skyline = sky.sum(0)
    if skyline.max(initial=0) == 0:
        return -0.5 * h
    return float(np.percentile(skyline, 90))


def prior_depth(image: np.ndarray, focal: float) -> DepthResult:
    """The weight-free landscape prior, in scene units.

    Ground: a plane below the camera, z = focal * height / (y - horizon), receding to the horizon;
    rows closer than 2% of the image height to the horizon are capped (distant land). Objects (non-sky
    pixels at or above the horizon: mountains, trees) stand on the ground where their column meets it:
    at the horizon, i.e. the cap. Sky: :func:`detect_sky`, at ``SKY_DEPTH``.
    """
    rgb = _check_image(image)
    if focal <= 0:
        raise ValueError(f"focal must be positive, got {focal}")
    h, w = rgb.shape[:2]
    sky = detect_sky(rgb)
    horizon = horizon_row(sky)
    rows = np.arange(h, dtype=np.float64)
    below = np.maximum(rows - horizon, 0.02 * h)
    column = (focal * 1.0 / below).astype(np.float32)  # camera 1 unit above the ground before scaling
    depth = np.repeat(column[:, None], w, axis=1)
    info = {"horizon_row": round(horizon, 2), "sky_fraction": round(float(sky.mean()), 4)}
    return DepthResult(normalise_depth(depth, sky), sky, "prior", info)


def normalise_depth(depth: np.ndarray, sky: np.ndarray | None = None) -> np.ndarray:
    """Metric-like z-depth (any scale) -> scene units (module docstring); ``sky`` pixels -> SKY_DEPTH."""
    depth = np.asarray(depth, np.float64)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {depth.shape}")
    sky = np.zeros(depth.shape, bool) if sky is None else np.asarray(sky, bool)
    if sky.shape != depth.shape:
        raise ValueError(f"sky must be {depth.shape}, got {sky.shape}")
    solid = ~sky & np.isfinite(depth) & (depth > 0)
    out = np.full(depth.shape, SKY_DEPTH)
    if solid.any():
        scale = NEAR_DEPTH / np.percentile(depth[solid], 5)
        out[solid] = np.clip(depth[solid] * scale, NEAR_DEPTH / 4, FAR_DEPTH)
    bad = ~sky & ~solid  # non-finite or non-positive model output: far, not sky
    out[bad] = FAR_DEPTH
    return out.astype(np.float32)


def depth_from_prediction(prediction: np.ndarray, kind: str, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A learned model's raw output -> (depth in scene units, sky mask).

    ``kind`` "disparity" (relative models: DPT, Depth Anything): the sky is where the disparity is
    below 2% of its 99th percentile, depth = 1 / disparity elsewhere. "metric" (ZoeDepth, metric Depth
    Anything): the sky is the colour-detected sky that the model also puts beyond half its far range
    (99th percentile).
    Either way the result goes through :func:`normalise_depth`.
    """
    pred = np.asarray(prediction, np.float64)
    if kind == "disparity":
        top = np.percentile(pred[np.isfinite(pred)], 99) if np.isfinite(pred).any() else 0.0
        sky = ~(pred > 0.02 * top) if top > 0 else np.ones(pred.shape, bool)
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = np.where(sky, np.inf, 1.0 / pred)
    elif kind == "metric":
        finite = np.isfinite(pred)
        far = np.percentile(pred[finite], 99) if finite.any() else 0.0
        sky = detect_sky(image) & (pred > 0.5 * far)
        depth = pred
    else:
        raise ValueError(f"kind must be 'disparity' or 'metric', got {kind!r}")
    return normalise_depth(depth, sky), sky


def depth_preview(depth: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 colour preview of a depth map (turbo colour map of inverse depth: near = red)."""
    depth = np.asarray(depth, np.float64)
    inv = 1.0 / np.maximum(depth, 1e-6)
    lo, hi = inv.min(), inv.max()
    norm = (inv - lo) / (hi - lo) if hi > lo else np.zeros_like(inv)
    bgr = cv2.applyColorMap(np.rint(norm * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    return bgr[..., ::-1].copy()


def estimate_depth(
    image: np.ndarray, focal: float, method: str = "auto", model: str | None = None, device: str = "cpu"
) -> DepthResult:
    """The photo's depth in scene units by the chosen method.

    ``method``: "prior" (weight-free), "model" (``model`` required; failures are errors), or "auto"
    (the model when one is named, else the default model where it can be had (see
    :func:`thirdparty.depth_transformers.default_depth_model`), else the prior; a hub model that cannot be
    had gives one warning and the prior). A local ``model`` path that does not exist or does not load is
    always an error.
    """
    from utils.console import warn
    from utils.errors import UserError

    if method not in ("auto", "prior", "model"):
        raise ValueError(f"method must be auto, prior or model, got {method!r}")
    if method == "model" and not model:
        raise UserError("--depth model needs a model", "add --depth_model PATH_OR_HUB_ID, or use --depth prior")
    from thirdparty.depth_transformers import ModelUnavailable, TransformersDepth, default_depth_model

    if method == "prior":
        return prior_depth(image, focal)
    found = "given"
    if not model:  # auto without a name: the default model where it can be had
        model, found = default_depth_model()
        if model is None:
            result = prior_depth(image, focal)
            result.info["no_model"] = found  # why: the stage warns with it
            return result

    try:
        backend = TransformersDepth(model, device)
    except ModelUnavailable as exc:
        if method == "model":
            raise UserError(str(exc), "download it into ckpts/ and pass the folder, or use --depth prior") from None
        warn(f"{exc}; using the geometric landscape prior instead (sky far, ground receding to the horizon)")
        result = prior_depth(image, focal)
        result.info["fallback_from"] = model
        return result
    rgb = _check_image(image)
    depth, sky = depth_from_prediction(backend.predict(rgb), backend.kind, rgb)
    info = {"kind": backend.kind, "sky_fraction": round(float(sky.mean()), 4), "found": found}
    return DepthResult(depth, sky, f"model:{model}", info)
