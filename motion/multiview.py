"""Stage 1, part 1: the photo's point cloud rendered into the view set, holes inpainted and lifted to 3D.

One point per photo pixel (view 0). Views are made in order: view v is rendered from every point so
far (the photo's and those inpainted in views 1..v-1, so views agree where they overlap), its empty
pixels are inpainted, given a depth that continues the background around them, and added to the
cloud as points of view v. The valid mask of a view marks the pixels whose visible point came from
the photo.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch import Tensor

from motion.splat import zbuffer_splat
from scene.cameras import Camera, project_points, unproject, unproject_depth
from scene.io import PointCloud

Inpainter = Callable[..., np.ndarray]
"""(image uint8 [H,W,3], mask bool [H,W]) -> uint8 [H,W,3]. An inpainter with ``guided = True`` is called
as ``inpaint(image, mask, guide)`` with a :class:`FillGuide` (depth and regions to follow, pixels to copy)."""


@dataclass
class FillGuide:
    """What a guided inpainter knows of a view besides its colours; all (H, W).

    depth: float32 z-depth; at the masked pixels the background depth they continue (fill_background).
    regions: int32 region ids; at the masked pixels the background's. source: bool, the pixels a fill
    may copy (rendered, not masked). photo: bool, those of them whose colour came from the photo itself
    (the others were filled in earlier views).
    """

    depth: np.ndarray
    regions: np.ndarray
    source: np.ndarray
    photo: np.ndarray


@dataclass
class Points:
    """The growing point cloud, as tensors on the working device."""

    xyz: Tensor  # [P, 3] float32 world units
    rgb: Tensor  # [P, 3] float32 in [0, 1]
    region: Tensor  # [P] int64
    view: Tensor  # [P] int64

    def append(self, other: Points) -> Points:
        return Points(*(torch.cat([a, b]) for a, b in zip(self.astuple(), other.astuple())))

    def astuple(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.xyz, self.rgb, self.region, self.view

    def to_cloud(self) -> PointCloud:
        rgb = torch.round(self.rgb.clamp(0, 1) * 255).to(torch.uint8)
        return PointCloud(
            xyz=self.xyz.cpu().numpy().astype(np.float32),
            rgb=rgb.cpu().numpy(),
            region=self.region.cpu().numpy().astype(np.int32),
            view=self.view.cpu().numpy().astype(np.int32),
        )


@dataclass
class View:
    """One view, as written to ``motion/views/``."""

    camera: Camera
    image: np.ndarray  # (H, W, 3) uint8, holes inpainted
    depth: np.ndarray  # (H, W) float32 z-depth, scene units (inpainted pixels: background-continuing depth)
    valid: np.ndarray  # (H, W) bool, True = the visible point came from the photo
    regions: np.ndarray  # (H, W) int32 region ids as seen from this view
    info: dict = field(default_factory=dict)
    hole: np.ndarray | None = None  # (H, W) bool, the pixels this view filled (None: the photo, no hole)


def photo_points(image: np.ndarray, depth: np.ndarray, regions: np.ndarray, camera: Camera, device="cpu") -> Points:
    """One point per pixel of the photo (row-major), view 0.

    Args:
        image: (H, W, 3) float in [0, 1] or uint8. depth: (H, W) z-depth. regions: (H, W) int ids.
    """
    h, w = depth.shape
    if image.shape[:2] != (h, w) or regions.shape != (h, w):
        raise ValueError(f"image {image.shape}, depth {depth.shape} and regions {regions.shape} must agree")
    if (camera.height, camera.width) != (h, w):
        raise ValueError(f"camera is {camera.width}x{camera.height}, images are {w}x{h}")
    rgb = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
    d = torch.as_tensor(np.ascontiguousarray(depth), dtype=torch.float32, device=device)
    return Points(
        xyz=unproject_depth(d, camera),
        rgb=torch.as_tensor(rgb.reshape(-1, 3), device=device),
        region=torch.as_tensor(regions.reshape(-1).astype(np.int64), device=device),
        view=torch.zeros(h * w, dtype=torch.long, device=device),
    )


def render_points(points: Points, camera: Camera, footprint: float = 1.5) -> dict[str, Tensor]:
    """Z-buffer render of ``points`` into ``camera``: image [H,W,3], depth [H,W] (inf = hole), covered [H,W],
    photo [H,W] (the visible point came from view 0), region [H,W] int64."""
    uv, z = project_points(points.xyz, camera)
    values = torch.cat(
        [points.rgb, points.region[:, None].to(points.rgb.dtype), (points.view == 0)[:, None].to(points.rgb.dtype)], 1
    )
    image, depth, covered = zbuffer_splat(uv, z, values, camera.height, camera.width, radius=1, footprint=footprint)
    return {
        "image": image[..., :3],
        "depth": depth,
        "covered": covered,
        "photo": (image[..., 4] > 0.5) & covered,
        "region": torch.round(image[..., 3]).long(),
    }


def _nearest_valid(valid: np.ndarray, axis: int, reverse: bool) -> np.ndarray:
    """Per pixel, the index along ``axis`` of the nearest valid pixel before it (after it if ``reverse``); -1 = none."""
    n = valid.shape[axis]
    idx = np.arange(n, dtype=np.int32).reshape((-1, 1) if axis == 0 else (1, -1))
    if reverse:
        marked = np.where(valid, n - 1 - idx, -1).astype(np.int32)
        marked = np.flip(np.maximum.accumulate(np.flip(marked, axis), axis=axis), axis)
        return np.where(marked >= 0, n - 1 - marked, -1)
    return np.maximum.accumulate(np.where(valid, idx, -1).astype(np.int32), axis=axis)


def _far_side(depth: np.ndarray, covered: np.ndarray, axis: int) -> np.ndarray:
    """Index along ``axis`` of the farther of the nearest covered pixels on either side (one side: that one)."""
    before, after = _nearest_valid(covered, axis, False), _nearest_valid(covered, axis, True)
    d_before = np.take_along_axis(depth, before.clip(0), axis)
    d_after = np.take_along_axis(depth, after.clip(0), axis)
    both = (before >= 0) & (after >= 0)
    return np.where(both, np.where(d_before >= d_after, before, after), np.maximum(before, after))


def background_source(depth: np.ndarray, covered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every hole pixel, the covered pixel whose depth it continues: the background side of the hole.

    Along the row, the nearest covered pixels left and right of the hole are found; the farther of the
    two is the background (a disocclusion opens between a near object and what lies behind it). Where
    the row has covered pixels on one side only (the frame edge), that side is used; where it has none,
    the same rule runs along the column. Returns (rows [H,W], cols [H,W]) of the source pixel, -1 where
    the view is empty.
    """
    h, w = depth.shape
    rows = np.broadcast_to(np.arange(h, dtype=np.int32)[:, None], (h, w))
    cols = np.broadcast_to(np.arange(w, dtype=np.int32)[None, :], (h, w))
    out_r, out_c = rows, np.where(covered, cols, _far_side(depth, covered, 1))
    if (out_c < 0).any():  # whole rows without a covered pixel: along the columns instead
        src_row = _far_side(depth, covered, 0)
        lost = out_c < 0
        out_r = np.where(lost, src_row, rows)
        out_c = np.where(lost & (src_row >= 0), cols, out_c)
        out_r = np.where(out_c >= 0, out_r, -1)
    return out_r, out_c


def fill_background(depth: np.ndarray, regions: np.ndarray, covered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth and region ids for the holes, continuing the background around them (:func:`background_source`).

    The filled depth is smoothed inside the holes (a 5 x 5 box filter over hole pixels only) so that it
    varies continuously rather than in streaks. Returns (depth [H,W] float32, regions [H,W]).
    """
    if covered.all():
        return depth.astype(np.float32), regions
    src_r, src_c = background_source(depth, covered)
    empty = src_c < 0
    if empty.all():
        raise ValueError("the view is empty: no point projects into it (camera too far from the photo's)")
    filled = depth[src_r.clip(0), src_c.clip(0)].astype(np.float32)
    regs = regions[src_r.clip(0), src_c.clip(0)]
    filled[empty] = np.max(depth[covered])
    # Smooth in log-depth among hole pixels only (normalised box filter), so the streaks of the row rule
    # blend while the foreground next to a hole never leaks in.
    holes = (~covered).astype(np.float32)
    log_d = np.log(filled) * holes
    weight = cv2.blur(holes, (5, 5))
    smooth = cv2.blur(log_d, (5, 5)) / np.maximum(weight, 1e-6)
    out = np.where(covered, depth, np.exp(smooth)).astype(np.float32)
    return out, np.where(covered, regions, regs)


def _interpolate_lines(image: np.ndarray, known: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of the unknown pixels between the nearest known ones along ``axis``.

    One known side only (a frame edge): that colour, extended. Returns (colours, found [H, W] bool).
    """
    before, after = _nearest_valid(known, axis, False), _nearest_valid(known, axis, True)
    n = known.shape[axis]
    pos = np.arange(n, dtype=np.float32).reshape((-1, 1) if axis == 0 else (1, -1))
    c_before = np.take_along_axis(image, before.clip(0)[..., None], axis)
    c_after = np.take_along_axis(image, after.clip(0)[..., None], axis)
    both = (before >= 0) & (after >= 0)
    span = np.maximum(after - before, 1).astype(np.float32)
    w_after = np.where(both, (pos - before.astype(np.float32)) / span, (after >= 0)).astype(np.float32)
    colours = c_before * (1.0 - w_after[..., None]) + c_after * w_after[..., None]
    return colours, (before >= 0) | (after >= 0)


def smooth_fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Fill of a wide ``hole`` that continues the colours around it smoothly; float32 (H, W, 3).

    Each row is interpolated linearly between the known pixels on either side of the hole (extended
    from the one side at a frame edge; rows with no known pixel use the columns), then the fill is
    blurred among hole pixels only (three box passes, 1/16 of the image size) so the row streaks melt
    into a gradient: a sky extends as sky, the ground as ground, with no structure invented.
    """
    img = image.astype(np.float32)
    known = ~hole
    fill, found = _interpolate_lines(img, known, 1)
    if not found.all():
        by_column, _ = _interpolate_lines(img, known, 0)
        fill = np.where(found[..., None], fill, by_column)
    weight = hole.astype(np.float32)
    k = max(3, (min(hole.shape) // 16) | 1)
    norm = np.maximum(cv2.blur(weight, (k, k)), 1e-6)[..., None]
    for _ in range(3):
        fill = np.where(hole[..., None], cv2.blur(fill * weight[..., None], (k, k)) / norm, img)
    return fill


def inpaint_opencv(image: np.ndarray, hole: np.ndarray, radius: int = 3, coarse_above: int = 20000) -> np.ndarray:
    """Classical inpainting of the ``hole`` pixels of a uint8 (H, W, 3) image: OpenCV Telea.

    Large holes (more than ``coarse_above`` pixels, e.g. the new frame edge of a rotated view) are first
    filled smoothly (:func:`smooth_fill`); then only a band of ``8 * radius`` pixels along their border
    is inpainted by Telea, which keeps the seam sharp, at a fraction of the cost and without the
    streaks Telea draws across wide areas.
    """
    if not hole.any():
        return image
    image = np.ascontiguousarray(image)
    mask = hole.astype(np.uint8)
    if hole.sum() <= coarse_above:
        return cv2.inpaint(image, mask, radius, cv2.INPAINT_TELEA)
    h, w = hole.shape
    if min(h, w) >= 64:  # the fill is smooth: half resolution loses nothing and costs a quarter
        small = cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        small_hole = cv2.resize(mask, (w // 2, h // 2), interpolation=cv2.INTER_AREA) > 0
        smooth = cv2.resize(smooth_fill(small, small_hole), (w, h), interpolation=cv2.INTER_LINEAR)
    else:
        smooth = smooth_fill(image, hole)
    smooth = np.clip(np.rint(smooth), 0, 255).astype(np.uint8)
    border = cv2.dilate(1 - mask, np.ones((8 * radius + 1, 8 * radius + 1), np.uint8)) & mask
    prefilled = np.where(hole[..., None] & ~border.astype(bool)[..., None], smooth, image)
    return cv2.inpaint(prefilled, border, radius, cv2.INPAINT_TELEA)


def guarded_hole(depth: np.ndarray, filled: np.ndarray, hole: np.ndarray, width: int = 4) -> np.ndarray:
    """The mask to hand the inpainter: the holes plus the foreground pixels along them.

    The inpainter should extend the background into a disocclusion, not the object in front of it, so
    pixels within ``width`` of a hole that are much nearer (< 0.8x) than the background depth filled in
    it are hidden from it too (only the hole pixels of its result are kept).
    """
    if not hole.any():
        return hole
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    near_hole = cv2.dilate(hole.astype(np.uint8), kernel).astype(bool) & ~hole
    background = cv2.dilate(np.where(hole, filled, 0).astype(np.float32), kernel)  # farthest hole depth nearby
    return hole | (near_hole & (depth < 0.8 * background))


def fill_guide(
    filled: np.ndarray, regions: np.ndarray, photo: np.ndarray, hole: np.ndarray, mask: np.ndarray, width: int = 4
) -> FillGuide:
    """The :class:`FillGuide` of a view (all (H, W)): ``filled`` depth and ``regions`` (fill_background);
    the foreground pixels that :func:`guarded_hole` added to ``mask`` get the farthest hole depth within
    ``width``, as their fill should continue the background too; every rendered pixel outside ``mask``
    may be copied."""
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    background = cv2.dilate(np.where(hole, filled, 0).astype(np.float32), kernel)
    guide_depth = np.where(mask & ~hole, np.maximum(background, filled), filled).astype(np.float32)
    return FillGuide(guide_depth, regions, ~hole & ~mask, photo & ~mask)


def lift_hole_points(
    image: np.ndarray, depth: np.ndarray, regions: np.ndarray, hole: np.ndarray, camera: Camera, view: int, device
) -> Points:
    """The inpainted pixels of a view as new points (their colour, background depth, region, ``view``)."""
    ys, xs = np.nonzero(hole)
    uv = torch.as_tensor(np.stack([xs, ys], 1), dtype=torch.float32, device=device)
    z = torch.as_tensor(depth[ys, xs], dtype=torch.float32, device=device)
    return Points(
        xyz=unproject(uv, z, camera),
        rgb=torch.as_tensor(image[ys, xs].astype(np.float32) / 255.0, device=device),
        region=torch.as_tensor(regions[ys, xs].astype(np.int64), device=device),
        view=torch.full((len(ys),), view, dtype=torch.long, device=device),
    )


def make_view(points: Points, camera: Camera, index: int, inpaint: Inpainter) -> tuple[View, Points]:
    """Render one view, fill its holes, and return it with the points its inpainted pixels add."""
    out = render_points(points, camera)
    covered = out["covered"].cpu().numpy()
    if not covered.any():
        from utils.errors import UserError

        raise UserError(f"view {index} sees nothing of the photo", "use a smaller --view_span or --pivot_depth")
    depth = out["depth"].cpu().numpy()
    regions = out["region"].cpu().numpy().astype(np.int32)
    image = np.clip(np.rint(out["image"].cpu().numpy() * 255), 0, 255).astype(np.uint8)
    hole = ~covered
    filled, regions = fill_background(np.where(covered, depth, 0), regions, covered)
    if hole.any():
        mask = guarded_hole(depth, filled, hole)
        if getattr(inpaint, "guided", False):
            painted = inpaint(image, mask, fill_guide(filled, regions, out["photo"].cpu().numpy(), hole, mask))
        else:
            painted = inpaint(image, mask)
        image = np.where(hole[..., None], painted, image)
    new = lift_hole_points(image, filled, regions, hole, camera, index, points.xyz.device)
    info = {
        "holes": int(hole.sum()),  # pixels inpainted here = points this view adds
        "hole_fraction": round(float(hole.mean()), 5),
        "photo_fraction": round(float(out["photo"].float().mean()), 5),
    }
    view = View(camera, image, filled, out["photo"].cpu().numpy(), regions, info, hole)
    return view, new


def contact_sheet(images: list[np.ndarray], columns: int = 5, tile_width: int = 256, gap: int = 4) -> np.ndarray:
    """All views in a grid (row-major, view 0 first), each scaled to ``tile_width`` px wide; uint8 (H, W, 3)."""
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    h, w = images[0].shape[:2]
    tw = min(tile_width, w)
    th = max(1, round(h * tw / w))
    columns = min(columns, len(images))
    rows = -(-len(images) // columns)
    sheet = np.full((rows * (th + gap) + gap, columns * (tw + gap) + gap, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        tile = cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)
        y, x = gap + r * (th + gap), gap + c * (tw + gap)
        sheet[y : y + th, x : x + tw] = tile
    return sheet


def build_views(
    photo: np.ndarray,
    depth: np.ndarray,
    regions: np.ndarray,
    cameras: list[Camera],
    inpaint: Inpainter,
    device: str | torch.device = "cpu",
    progress: Callable | None = None,
) -> tuple[list[View], Points]:
    """All views of the set and the merged point cloud (photo points first, row-major, then inpainted ones).

    Args:
        photo: (H, W, 3) uint8. depth: (H, W) float32 z-depth of the photo. regions: (H, W) int ids.
        cameras: the view set, ``cameras[0]`` the photo's. inpaint: the hole filler.
        progress: optional ``track``-like wrapper for the loop over views.
    """
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        raise TypeError(f"photo must be uint8 (H, W, 3), got {photo.dtype} {photo.shape}")
    points = photo_points(photo, depth, regions, cameras[0], device)
    first = View(cameras[0], photo, depth.astype(np.float32), np.ones(depth.shape, bool), regions.astype(np.int32))
    first.info = {"holes": 0, "hole_fraction": 0.0, "photo_fraction": 1.0}
    views = [first]
    indices = range(1, len(cameras))
    for i in progress(indices, "views") if progress else indices:
        view, new = make_view(points, cameras[i], i, inpaint)
        views.append(view)
        points = points.append(new)
    return views, points
