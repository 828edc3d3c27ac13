"""The loop schedule: where the moving content is at each loop time, and which copy of it is shown.

Stage 1's video and stage 2's 4D model follow the same schedule (stage 1 records it in its manifest,
``config.video``), so that the model can reproduce the video frame for frame. Content moves along
the flow; it is drawn as two *layers* (copies of the photo's moving content), each displaced along the
flow by ``d_k(t)`` video frames and shown with weight ``w_k``, ``w_0 + w_1 = 1``.

``layers`` (the default): a short cycle of ``C`` frames (``N`` a multiple of ``C``). With ``u = t N / C``,

    d_0 = C (frac(u + 1/2) - 1/2),    d_1 = C (frac(u) - 1/2)          (both in [-C/2, C/2))

so each layer drifts forward at the flow's speed and jumps back by ``C`` once per cycle, the two half a
cycle apart. At a pixel whose *threshold* is ``h`` in [eps/2, 1/2 - eps/2] (smooth noise over the photo, equalised),

    w_0 = clamp(1/2 + (1/2 - h - |d_0| / C) / eps, 0, 1),   w_1 = 1 - w_0.

A layer's weight is 0 whenever it jumps (|d_k| = C/2), so no jump is ever seen; each pixel switches
from one layer to the other twice per cycle, quickly (over ``eps`` of a cycle) and at its own moment
(``h`` varies smoothly over the image), so no frame is a global cross-fade and no copy travels more
than C/2 frames' worth of motion from where the photo has it. At t = 0, ``d_0 = 0`` and ``w_0 = 1``
everywhere: frame 0 is the photo. The video blends the two layers preserving contrast (motion/animate.py);
the 4D model splits each moving Gaussian's opacity between two copies (gaussians4d/model.py).

``crossfade`` (the behaviour before the layers, for comparison): ``d_0 = t N``, ``d_1 = -(1 - t) N``,
``w_0 = 1 - t``, ``w_1 = t`` everywhere: one global cross-fade of copies a whole loop apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

LoopMode = Literal["layers", "crossfade"]
CYCLE_TARGET = 40  # frames: the default cycle is the divisor of N nearest to this (1.3 s at 30 fps)


def default_cycle(n_frames: int, target: int = CYCLE_TARGET) -> int:
    """The divisor of ``n_frames`` nearest to ``target`` (the larger one on a tie)."""
    divisors = [c for c in range(1, n_frames + 1) if n_frames % c == 0]
    return min(divisors, key=lambda c: (abs(c - target), -c))


@dataclass(frozen=True)
class LoopSchedule:
    """The schedule of one loop (see the module docstring). ``photo_size`` = (W, H) of the threshold's pixels."""

    n_frames: int
    mode: LoopMode = "layers"
    cycle: int = 24
    transition: float = 0.1
    seed: int = 0
    photo_size: tuple[int, int] = (640, 360)

    def __post_init__(self) -> None:
        if self.n_frames < 1:
            raise ValueError(f"n_frames must be >= 1, got {self.n_frames}")
        if self.mode not in ("layers", "crossfade"):
            raise ValueError(f"mode must be layers or crossfade, got {self.mode!r}")
        if self.mode == "layers":
            if self.cycle < 2 or self.n_frames % self.cycle:
                raise ValueError(f"cycle must be >= 2 and divide n_frames {self.n_frames}, got {self.cycle}")
            if not 0.0 < self.transition <= 0.5:
                raise ValueError(f"transition must be in (0, 0.5], got {self.transition}")

    # ----------------------------------------------------------------------------- displacements

    def steps(self, i: int) -> tuple[int, int]:
        """Integer displacements (video frames) of the two layers at frame ``i`` of the loop."""
        i %= self.n_frames
        if self.mode == "crossfade":
            return i, -(self.n_frames - i)
        half = self.cycle // 2
        return (i + half) % self.cycle - half, i % self.cycle - half

    def displacements(self, t: float) -> tuple[float, float]:
        """Displacements (video frames) at loop time ``t`` (any real; periodic with period 1)."""
        t = float(t) % 1.0
        if self.mode == "crossfade":
            return t * self.n_frames, -(1.0 - t) * self.n_frames
        u = t * self.n_frames / self.cycle
        return self.cycle * ((u + 0.5) % 1.0 - 0.5), self.cycle * (u % 1.0 - 0.5)

    @property
    def max_steps(self) -> int:
        """The largest displacement of a layer, in video frames."""
        return self.n_frames if self.mode == "crossfade" else self.cycle // 2

    # ----------------------------------------------------------------------------- weights

    def weight0(self, d0: float, threshold: Tensor, t: float) -> Tensor:
        """w_0 (same shape as ``threshold``) for layer 0 at displacement ``d0`` and loop time ``t``."""
        if self.mode == "crossfade":
            return torch.full_like(threshold, 1.0 - float(t) % 1.0)
        x = 0.5 + (0.5 - threshold - abs(d0) / self.cycle) / self.transition
        return x.clamp(0.0, 1.0)

    def threshold(self, uv: Tensor) -> Tensor:
        """Each point's threshold h (see the module docstring) from its pixel ``uv`` [..., 2] in the photo.

        The noise is equalised (its values replaced by their rank over the photo), so thresholds are spread
        evenly over [eps/2, 1/2 - eps/2]: at any moment the same small share of pixels is switching.
        """
        lo, hi = 0.55 * self.transition, 0.5 - 0.55 * self.transition  # a margin: rounding never shows a jump
        return lo + (hi - lo) * equalised_noise(uv, self.photo_size, self.seed)


def equalised_noise(uv: Tensor, size: tuple[int, int], seed: int, samples: int = 96) -> Tensor:
    """:func:`smooth_noise` mapped through its own distribution over the photo (a grid of ``samples`` points
    along the longer side): uniform in [0, 1], as smooth, the same at the same place."""
    w, h = size
    step = max(w, h) / samples
    gx, gy = torch.meshgrid(
        torch.arange(0.5 * step, w, step, dtype=uv.dtype),
        torch.arange(0.5 * step, h, step, dtype=uv.dtype),
        indexing="xy",
    )
    reference = torch.sort(smooth_noise(torch.stack([gx, gy], -1).reshape(-1, 2), size, seed)).values.to(uv.device)
    n = smooth_noise(uv, size, seed)
    rank = torch.searchsorted(reference, n.contiguous()).clamp(1, len(reference) - 1)
    lo, hi = reference[rank - 1], reference[rank]
    frac = ((n - lo) / (hi - lo).clamp(min=1e-12)).clamp(0, 1)
    return ((rank - 1).to(uv.dtype) + frac) / (len(reference) - 1)


def smooth_noise(uv: Tensor, size: tuple[int, int], seed: int, cells: int = 6) -> Tensor:
    """Value noise in [0, 1] at photo pixels ``uv`` [..., 2]: a seeded random lattice of ``cells`` cells
    across the photo's longer side (and a margin around it), smoothly (cubic Hermite) interpolated."""
    w, h = size
    cell = max(w, h) / cells
    margin = 4
    nx, ny = math.ceil(w / cell) + 2 * margin + 1, math.ceil(h / cell) + 2 * margin + 1
    lattice = torch.as_tensor(np.random.default_rng(seed).random((ny, nx)), dtype=uv.dtype, device=uv.device)
    gx = (uv[..., 0] / cell + margin).clamp(0, nx - 1.001)
    gy = (uv[..., 1] / cell + margin).clamp(0, ny - 1.001)
    x0, y0 = gx.floor(), gy.floor()
    fx, fy = gx - x0, gy - y0
    sx, sy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    ix, iy = x0.long(), y0.long()
    v00, v01 = lattice[iy, ix], lattice[iy, ix + 1]
    v10, v11 = lattice[iy + 1, ix], lattice[iy + 1, ix + 1]
    top = v00 + (v01 - v00) * sx
    bottom = v10 + (v11 - v10) * sx
    return top + (bottom - top) * sy


def loop_record(schedule: LoopSchedule) -> dict:
    """The schedule as manifests and model files record it (read back by :func:`loop_schedule`)."""
    return {
        "n_frames": schedule.n_frames,
        "mode": schedule.mode,
        "cycle": schedule.cycle,
        "transition": schedule.transition,
        "seed": schedule.seed,
        "photo_size": list(schedule.photo_size),
    }


def loop_schedule(record: dict) -> LoopSchedule:
    """The schedule a :func:`loop_record` describes (ValueError/KeyError/TypeError if it is not one)."""
    return LoopSchedule(
        n_frames=int(record["n_frames"]),
        mode=str(record["mode"]),  # type: ignore[arg-type]
        cycle=int(record["cycle"]),
        transition=float(record["transition"]),
        seed=int(record["seed"]),
        photo_size=(int(record["photo_size"][0]), int(record["photo_size"][1])),
    )
