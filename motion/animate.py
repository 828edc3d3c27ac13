"""Stage 5: a seamlessly looping video of a view by symmetric splatting of an Eulerian flow.

Frame ``i`` of ``N`` (t = i / N): every pixel of the motion mask is carried along the flow ``i`` steps
forward (Euler integration: ``p <- p + flow(p)``, flow sampled bilinearly) and, separately, ``N - i``
steps backward (``q <- q - flow(q)``); both sets of pixels are splatted with a z-buffer (the photo's
depth orders them, :func:`motion.splat.zbuffer_splat`) and blended per pixel with weights ``1 - i/N``
and ``i/N`` (where only one splat covers a pixel it is used alone). Frame 0 is the photo (forward by
0 steps, weight 1) and frame N would be the photo again (backward by 0 steps, weight 1): the loop
closes without a seam. Pixels no splat reaches are filled from their neighbours inside the mask
(pull-push over a pyramid); pixels outside the mask are the photo, unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from motion.splat import zbuffer_splat
from scene.cameras import CameraBatch, pixel_grid, unproject_depth
from scene.loop import LoopSchedule

if TYPE_CHECKING:
    from motion.outputs import ViewSet


def _check_view(image: Tensor, flow: Tensor, mask: Tensor, depth: Tensor) -> None:
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {tuple(image.shape)}")
    h, w = image.shape[:2]
    if flow.shape != (h, w, 2):
        raise ValueError(f"flow must be ({h}, {w}, 2), got {tuple(flow.shape)}")
    if mask.shape != (h, w) or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a ({h}, {w}) bool tensor, got {tuple(mask.shape)} {mask.dtype}")
    if depth.shape != (h, w):
        raise ValueError(f"depth must be ({h}, {w}), got {tuple(depth.shape)}")


def sample_flow(flow: Tensor, points: Tensor, mode: str = "bilinear", padding: str = "zeros") -> Tensor:
    """Sample of an image flow [H, W, C] at points [N, 2] (pixels) -> [N, C]; zero outside the image.

    ``mode``: "bilinear", "bicubic" (sharper, for colours) or "nearest" (for labels); ``padding``: "zeros"
    or "border" (the edge pixels continue, for colours).
    """
    h, w = flow.shape[:2]
    scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], device=points.device, dtype=points.dtype)
    grid = (points * scale - 1.0)[None, None]  # [1, 1, N, 2]
    out = F.grid_sample(flow.permute(2, 0, 1)[None], grid, mode=mode, padding_mode=padding, align_corners=True)
    return out[0, :, 0].T


def integrate(flow: Tensor, start: Tensor, steps: int, direction: float = 1.0, keep_every: int = 1) -> list[Tensor]:
    """Euler-integrate points [N, 2] through flow [H, W, 2] (``p <- p + direction * flow(p)``).

    Returns the positions after 0, keep_every, 2 keep_every, ... <= steps steps.
    """
    positions, p = [start], start
    for step in range(1, steps + 1):
        p = p + direction * sample_flow(flow, p)
        if step % keep_every == 0:
            positions.append(p)
    return positions


def fill_holes(image: Tensor, known: Tensor, region: Tensor) -> Tensor:
    """Fill the pixels of ``region`` [H, W] that are not ``known`` [H, W] from the known pixels of ``region``.

    Pull-push (a normalised-convolution pyramid): known colours are averaged down a pyramid of 2x2
    blocks and each hole takes the upsampled average of the finest level that reaches it, so small
    holes take their immediate neighbours and any hole is filled, in a few full-image passes.
    Known pixels and pixels outside ``region`` are returned unchanged. image: [H, W, C].
    """
    todo = region & ~known
    if not bool(todo.any()):
        return image
    source = (known & region).to(image.dtype)[None, None]
    if not bool(source.any()):
        return image
    colours = [(image.permute(2, 0, 1)[None] * source, source)]
    while min(colours[-1][1].shape[-2:]) > 1:
        c, w = colours[-1]
        colours.append((F.avg_pool2d(c, 2, ceil_mode=True), F.avg_pool2d(w, 2, ceil_mode=True)))
    # Coarse to fine: where a level has no weight, take the (already filled) coarser level.
    filled = colours[-1][0] / colours[-1][1].clamp(min=1e-12)
    for c, w in reversed(colours[:-1]):
        up = F.interpolate(filled, size=c.shape[-2:], mode="bilinear", align_corners=False)
        own = c / w.clamp(min=1e-12)
        filled = torch.where(w > 1e-6, own, up)
    out = image.clone()
    out[todo] = filled[0].permute(1, 2, 0)[todo].to(out.dtype)
    return out


def soft_splat(
    uv: Tensor, z: Tensor, values: Tensor, height: int, width: int, depth_tolerance: float | Tensor = 0.01
) -> tuple[Tensor, Tensor]:
    """Bilinear forward splatting with depth ordering (sub-pixel motion stays smooth).

    Each point spreads ``values`` over its 4 nearest pixels with bilinear weights; at every pixel
    only the points within ``(1 + depth_tolerance)`` of the nearest depth that lands there with a
    weight of at least 0.1 count (the z-buffer), and their values are averaged by weight. A point on
    a pixel centre reaches only that pixel, so an unmoved image is reproduced exactly.

    Args:
        uv: [P, 2] pixels. z: [P] depths (> 0). values: [P, C]. height, width: output size.
        depth_tolerance: relative slack, a float or [P] per point (see :func:`surface_tolerance`).

    Returns:
        image [H, W, C] (zeros where empty) and coverage [H, W] (sum of the kept weights).
    """
    n_pix = height * width
    base = torch.floor(uv)
    frac = uv - base
    corners = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1]], device=uv.device, dtype=uv.dtype)
    taps = base[:, None, :] + corners[None]  # [P, 4, 2]
    wx = torch.where(corners[None, :, 0] > 0, frac[:, None, 0], 1 - frac[:, None, 0])
    wy = torch.where(corners[None, :, 1] > 0, frac[:, None, 1], 1 - frac[:, None, 1])
    # No boolean indexing below: taps off the image or unused get weight 0 on a clamped pixel (faster).
    ok = (taps[..., 0] >= 0) & (taps[..., 0] < width) & (taps[..., 1] >= 0) & (taps[..., 1] < height)
    ok &= (torch.isfinite(z) & (z > 0))[:, None]
    weight = torch.where(ok, wx * wy, torch.zeros_like(wx))  # [P, 4]
    pixel = (taps[..., 1].clamp(0, height - 1) * width + taps[..., 0].clamp(0, width - 1)).long()
    pz = z[:, None].expand(-1, 4)
    zmin = torch.full((n_pix,), float("inf"), device=uv.device, dtype=z.dtype)
    zmin.scatter_reduce_(0, pixel.reshape(-1), torch.where(weight >= 0.1, pz, torch.inf).reshape(-1), reduce="amin")
    tol = depth_tolerance[:, None] if isinstance(depth_tolerance, Tensor) else depth_tolerance
    weight = torch.where(pz <= zmin[pixel] * (1.0 + tol), weight, torch.zeros_like(weight)).reshape(-1, 1)
    pixel = pixel.reshape(-1)
    acc = torch.zeros(n_pix, values.shape[1], device=uv.device, dtype=values.dtype)
    acc.index_add_(0, pixel, (values[:, None, :] * weight.view(-1, 4, 1).to(values.dtype)).reshape(-1, values.shape[1]))
    cover = torch.zeros(n_pix, device=uv.device, dtype=values.dtype)
    cover.index_add_(0, pixel, weight[:, 0].to(values.dtype))
    image = acc / cover.clamp(min=1e-12)[:, None]
    return image.reshape(height, width, -1), cover.reshape(height, width)


def surface_tolerance(depth: Tensor, base: float = 0.01, cap: float = 0.5) -> Tensor:
    """Per-pixel relative depth slack [H, W]: ``base + 2 |grad log z|``, at most ``cap``.

    Neighbouring samples of one slanted surface (ground seen at a grazing angle changes depth by many
    percent per pixel) must blend, not occlude each other; a real depth edge still occludes.
    """
    logz = torch.log(torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.ones_like(depth)))
    pad = F.pad(logz[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    gx = (pad[1:-1, 2:] - pad[1:-1, :-2]).abs() / 2
    gy = (pad[2:, 1:-1] - pad[:-2, 1:-1]).abs() / 2
    return (base + 2.0 * torch.maximum(gx, gy)).clamp(max=cap)


class _Trajectories:
    """Positions of the particles after ``d`` Euler steps along the flow (``d < 0``: backward), on demand.

    Every ``seg``-th position of each direction is kept as a checkpoint and a few segments are
    re-integrated from them when asked (memory ~ a few sqrt(steps) position sets instead of all of them).
    Any access order gives the same floats as one plain integration from the start.
    """

    def __init__(self, flow: Tensor, start: Tensor, backward: int, forward: int):
        self.flow, self.seg = flow, max(1, math.isqrt(max(backward, forward, 1)))
        self.checkpoints = {
            1: integrate(flow, start, forward, 1.0, keep_every=self.seg),
            -1: integrate(flow, start, backward, -1.0, keep_every=self.seg),
        }
        self._segments: dict[tuple[int, int], list[Tensor]] = {}

    def at(self, d: int) -> Tensor:
        sign, k = (1 if d >= 0 else -1), abs(d)
        first = (k // self.seg) * self.seg
        key = (sign, first)
        if key not in self._segments:
            if len(self._segments) >= 4:  # two layers, each at most two segments apart
                self._segments.pop(next(iter(self._segments)))
            start = self.checkpoints[sign][first // self.seg]
            self._segments[key] = integrate(self.flow, start, self.seg - 1, float(sign))
        return self._segments[key][k - first]


def _low_pass(image: Tensor, factor: int = 4) -> Tensor:
    """A smooth copy of [H, W, C]: 4 x 4 block means, bilinearly upsampled (the scale below fine texture)."""
    x = image.permute(2, 0, 1)[None]
    small = F.avg_pool2d(x, factor, ceil_mode=True)
    return F.interpolate(small, size=image.shape[:2], mode="bilinear", align_corners=False)[0].permute(1, 2, 0)


def contrast_preserving_blend(a: Tensor, b: Tensor, wa: Tensor, wb: Tensor) -> Tensor:
    """Blend images a, b [H, W, C] with weights wa + wb = 1 [H, W], keeping their fine-texture contrast.

    The smooth parts blend linearly; the details (image minus :func:`_low_pass`) are blended and divided by
    sqrt(wa^2 + wb^2), so two unrelated textures mixed half and half keep the contrast of one
    (a plain blend halves their variance: the smear of a cross-fade). Where one weight is 0 the other
    image is returned unchanged. (Neyret 2003; Yu, Neyret, Bruneton, Holzschuch 2011.)
    """
    low_a, low_b = _low_pass(a), _low_pass(b)
    wa3, wb3 = wa[..., None], wb[..., None]
    detail = (wa3 * (a - low_a) + wb3 * (b - low_b)) / torch.sqrt(wa3 * wa3 + wb3 * wb3).clamp(min=1e-12)
    out = wa3 * low_a + wb3 * low_b + detail
    return torch.where(wb3 <= 0, a, torch.where(wa3 <= 0, b, out))


class LoopAnimator:
    """Frames of one view's looping video (see the module docstring and scene/loop.py).

    Args:
        image: [H, W, 3] float in [0, 1]. flow: [H, W, 2] pixels per frame (Eulerian). mask: [H, W] bool,
            the pixels that move. depth: [H, W] z-depth used to order overlapping splats.
        schedule: the loop (its ``n_frames`` frames, the layers' displacements and weights).
        threshold: [H, W] each pixel's switching threshold (``schedule.threshold`` of its place in the
            photo); needed by the ``layers`` schedule.
        region_ids: [H, W] motion-region id of each pixel: a moving pixel takes colour only from its own
            region (default: the mask as one region).

    ``layers`` draws each layer by sampling backward along the trajectories (bicubic: the photo's fine
    texture survives, where a forward splat's bilinear footprint blurs it); ``crossfade`` keeps the
    forward splats it always had.
    """

    min_weight = 0.1  # blend weight below which a pixel counts as a hole

    def __init__(
        self,
        image: Tensor,
        flow: Tensor,
        mask: Tensor,
        depth: Tensor,
        schedule: LoopSchedule,
        threshold: Tensor | None = None,
        region_ids: Tensor | None = None,
    ):
        _check_view(image, flow, mask, depth)
        if schedule.mode == "layers" and (threshold is None or threshold.shape != mask.shape):
            raise ValueError(f"the layers schedule needs a threshold map of shape {tuple(mask.shape)}")
        self.image, self.mask, self.schedule, self.n = image, mask, schedule, schedule.n_frames
        self.threshold = threshold
        self.flow = torch.where(mask[..., None], flow, torch.zeros_like(flow))
        ys, xs = torch.nonzero(mask, as_tuple=True)
        self.start = torch.stack([xs, ys], -1).to(flow.dtype)
        self.colour = image[ys, xs]
        z = depth[ys, xs].to(flow.dtype)
        self.z = torch.where(torch.isfinite(z) & (z > 0), z, torch.ones_like(z))
        self.tolerance = surface_tolerance(depth.to(flow.dtype))[ys, xs]
        self._ys, self._xs = ys, xs
        self._region = (
            region_ids[..., None].to(flow.dtype) if region_ids is not None else mask[..., None].to(flow.dtype)
        )
        steps = schedule.max_steps
        self.paths = _Trajectories(self.flow, self.start, steps, steps)

    def _splat(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        h, w = self.mask.shape
        img, cover = soft_splat(positions, self.z, self.colour, h, w, self.tolerance)
        return img, torch.where(self.mask, cover, torch.zeros_like(cover))

    def _sample(self, d: int) -> tuple[Tensor, Tensor]:
        """Layer at displacement ``d`` by backward sampling: each moving pixel shows the photo where its
        trajectory was ``d`` steps ago (bicubic); valid [H, W] where that place lies in the pixel's own region."""
        if d == 0:
            return self.image, self.mask.to(self.image.dtype)
        source = self.paths.at(-d)
        colour = sample_flow(self.image, source, "bicubic", "border")
        same = sample_flow(self._region, source, "nearest")[:, 0] == self._region[self._ys, self._xs, 0]
        image = self.image.clone()
        image[self._ys, self._xs] = colour.to(image.dtype)
        valid = torch.zeros_like(self.mask, dtype=self.image.dtype)
        valid[self._ys, self._xs] = same.to(valid.dtype)
        return image, valid

    def _layer(self, d: int) -> tuple[Tensor, Tensor]:
        return self._splat(self.paths.at(d)) if self.schedule.mode == "crossfade" else self._sample(d)

    def _weights(self, i: int, d0: int) -> tuple[Tensor | float, Tensor | float]:
        if self.schedule.mode == "crossfade":
            alpha = i / self.n
            return 1.0 - alpha, alpha
        w0 = self.schedule.weight0(d0, self.threshold, i / self.n)
        return w0, 1.0 - w0

    def frame(self, i: int) -> Tensor:
        """Frame i (0 <= i <= N; frame N equals frame 0) as [H, W, 3] float in [0, 1]."""
        if not 0 <= i <= self.n:
            raise ValueError(f"frame index must be in [0, {self.n}], got {i}")
        d0, d1 = self.schedule.steps(i)
        first, cover_0 = self._layer(d0)
        second, cover_1 = self._layer(d1)
        w0, w1 = self._weights(i, d0)
        w_0 = cover_0.clamp(max=1.0) * w0
        w_1 = cover_1.clamp(max=1.0) * w1
        total = w_0 + w_1
        if self.schedule.mode == "crossfade":
            blend = (first * w_0[..., None] + second * w_1[..., None]) / total.clamp(min=1e-12)[..., None]
        else:
            norm = total.clamp(min=1e-12)
            blend = contrast_preserving_blend(first, second, w_0 / norm, w_1 / norm)
        # A pixel reached only by a layer whose weight is nearly 0 would show content displaced far
        # (particles piled up at the mask's edge): treat it as a hole instead.
        known = total >= self.min_weight
        out = torch.where(self.mask[..., None], blend, self.image)
        out = fill_holes(out, known, self.mask)
        return out.clamp(0.0, 1.0)

    def frames(self) -> Iterator[Tensor]:
        """Frames 0 .. N-1 in order."""
        for i in range(self.n):
            yield self.frame(i)


def flow_from_motion(
    uv: Tensor, z: Tensor, flow2d: Tensor, moving: Tensor, height: int, width: int
) -> tuple[Tensor, Tensor]:
    """A view's flow image from its points' projected motion.

    Args:
        uv: [P, 2] projections of the points in the view. z: [P] their depths. flow2d: [P, 2] projected
            motion (pixels per frame). moving: [P] bool, points of a moving region.
        height, width: image size.

    Returns:
        flow [H, W, 2] (zero where the nearest surface is static or empty) and mask [H, W] bool (pixels
        whose nearest surface moves).
    """
    values = torch.cat([flow2d, moving.to(flow2d.dtype)[:, None]], -1)
    img, _, valid = zbuffer_splat(uv, z, values, height, width)
    mask = valid & (img[..., 2] > 0.5)
    flow = torch.where(mask[..., None], img[..., :2], torch.zeros_like(img[..., :2]))
    return flow, mask


def photo_threshold(schedule: LoopSchedule, height: int, width: int, device: torch.device | str = "cpu") -> Tensor:
    """[H, W] switching threshold of every pixel of the photo (view 0)."""
    return schedule.threshold(pixel_grid(height, width, device)).reshape(height, width)


def view_animation_inputs(
    views: ViewSet, view: int, flows: Tensor, motion: np.ndarray, moving: list[int], schedule: LoopSchedule, device: str
) -> dict[str, Tensor]:
    """The :class:`LoopAnimator` arguments of one view: image, flow, mask, depth, threshold, region_ids.

    View 0 moves with its own 2D flow (as the paper animates the photo); every other view with the
    projection of the optimised 3D motion, so that all videos show one and the same 3D motion. The
    threshold of a pixel is the schedule's at the place its surface has in the photo, so every view (and
    the 4D model) switches layers at the same places.
    """
    v = views.views[view]
    image = torch.as_tensor(v.image, device=device).float() / 255.0
    depth = torch.as_tensor(v.depth, dtype=torch.float32, device=device)
    regions = torch.as_tensor(v.regions, device=device)
    in_region = torch.isin(regions, torch.as_tensor(moving or [-1], device=device, dtype=regions.dtype))
    h, w = depth.shape
    out = {"image": image, "depth": depth, "region_ids": torch.where(in_region, regions, torch.zeros_like(regions))}
    if view == 0:
        return out | {"flow": flows[0], "mask": in_region, "threshold": photo_threshold(schedule, h, w, device)}
    photo_uv = CameraBatch.of([views.photo.camera], device).project(unproject_depth(depth, v.camera))[0][0]
    threshold = schedule.threshold(photo_uv.nan_to_num(0.0)).reshape(h, w)
    xyz = torch.as_tensor(views.cloud.xyz, device=device)
    d = torch.as_tensor(motion, device=device)
    batch = CameraBatch.of([v.camera], device)
    uv, z = batch.project(xyz)
    flow2d = batch.project(xyz + d)[0][0] - uv[0]
    flow, mask = flow_from_motion(uv[0], z[0], flow2d.nan_to_num(0.0), (d != 0).any(1), v.camera.height, v.camera.width)
    return out | {"flow": flow, "mask": mask & in_region, "threshold": threshold}
