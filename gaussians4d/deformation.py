"""Deformation field of the moving Gaussians: a periodic HexPlane of (x, y, z, t) and small MLP heads.

In the spirit of 4DGaussians (Wu et al. 2024) and K-Planes: features of six planes (xy, xz, yz spatial;
xt, yt, zt spatial-temporal) at several resolutions are multiplied plane by plane, concatenated across
levels, and decoded by a small MLP into a position offset, a rotation offset and a log-scale offset.

Two changes for looping landscapes:

- Time is periodic by construction: the time axis of every time plane is a ring of ``time_resolution``
  cells sampled with wrap-around interpolation, so features at t and t + 1 are bit-identical.
- Space is sampled in the photo camera's projective coordinates (x/z, y/z, 1/z) rather than in
  world units: a landscape spans 1 to 200 scene units in depth, and a world-space grid would spend all
  its cells on empty distance. Projective coordinates give every cell about the same image footprint.

The heads are initialised to zero, so an untrained field is the identity (the 3D motion prior alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gaussians4d import TRAIN_HELP
from utils.device import to_device
from utils.errors import require

SPATIAL_PAIRS = ((0, 1), (0, 2), (1, 2))


@dataclass(frozen=True)
class DeformationConfig:
    """Hyper-parameters of :class:`HexPlaneDeformation` (saved next to its weights)."""

    grid_resolution: int = 32
    """Spatial resolution of the coarsest HexPlane level (cells per axis)."""
    grid_multires: tuple[int, ...] = (1, 2)
    """Multipliers of grid_resolution for the HexPlane levels (features are concatenated across levels)."""
    time_resolution: int = 16
    """Cells of the periodic time axis of the HexPlane (it wraps around: t = 1 is t = 0)."""
    grid_features: int = 8
    """Feature channels per HexPlane level."""
    mlp_width: int = 32
    """Hidden width of the deformation decoder MLP."""

    def validate(self) -> None:
        require(
            self.grid_resolution >= 2 and self.time_resolution >= 2,
            "grid and time resolutions must be >= 2",
            TRAIN_HELP,
        )
        require(
            len(self.grid_multires) >= 1 and all(m >= 1 for m in self.grid_multires),
            "grid_multires must be >= 1",
            TRAIN_HELP,
        )
        require(self.grid_features >= 1 and self.mlp_width >= 1, "grid_features and mlp_width must be >= 1", TRAIN_HELP)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["grid_multires"] = list(self.grid_multires)
        return data

    @staticmethod
    def from_dict(data: dict) -> DeformationConfig:
        return DeformationConfig(
            grid_resolution=int(data["grid_resolution"]),
            grid_multires=tuple(int(m) for m in data["grid_multires"]),
            time_resolution=int(data["time_resolution"]),
            grid_features=int(data["grid_features"]),
            mlp_width=int(data["mlp_width"]),
        )


def projective_coords(points: Tensor, w2c: Tensor) -> Tensor:
    """(x/z, y/z, 1/z) of world ``points`` [P, 3] in the camera ``w2c`` [4, 4]; z clamped to >= 1e-3."""
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    inv_z = 1.0 / cam[:, 2:3].clamp_min(1e-3)
    return torch.cat([cam[:, :2] * inv_z, inv_z], dim=1)


def _sample_planes(planes: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """Bilinear samples [K, F, P] of K planes [K, F, H, W]: plane k at u[k] (along W) and v[k] (along H).

    ``u`` and ``v`` are [K, P] in [-1, 1]; one grid_sample call for the K planes of a level.
    """
    grid = torch.stack([u, v], dim=-1)[:, None]  # [K, 1, P, 2]
    out = F.grid_sample(planes, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[:, :, 0]


def _hat_weights(coords: Tensor, cells: int) -> Tensor:
    """Linear-interpolation weights [..., cells] of ``coords`` [...] in [-1, 1] over ``cells`` cells
    (align_corners: -1 is cell 0, 1 the last): at most two non-zero, summing to 1."""
    at = (coords + 1) * (0.5 * (cells - 1))
    return (1 - (at[..., None] - torch.arange(cells, device=coords.device, dtype=coords.dtype)).abs()).clamp_min(0)


def _time_weights(times: list[float], rows: int) -> list[list[float]]:
    """[B][rows] linear-interpolation weights of each loop time on the periodic time axis of ``rows`` rows:
    t T lies between rows i and i + 1 (row ``rows`` is row 0, so t and t + 1 weigh the same rows)."""
    out = []
    for t in times:
        at = t % 1.0 * rows
        i = min(int(at), rows - 1)
        w = [0.0] * rows
        w[i] += 1.0 - (at - i)
        w[(i + 1) % rows] += at - i
        out.append(w)
    return out


def _weights_times_rows(weights: Tensor, rows: Tensor, chunk: int = 512) -> Tensor:
    """weights [K, P, W] @ rows [K, W, N] -> [K, P, N], with P cut into chunks of ``chunk`` points.

    The product's backward to ``rows`` reduces over all P points: as one [W, P] x [P, N] product per plane
    cuBLAS ran it at 1.6 ms on an H200 (a long reduction into a small result), as a batch of chunks it is
    many small products and one sum."""
    k, n_points, width = weights.shape
    chunks = max(1, min(64, n_points // chunk))
    pad = -n_points % chunks
    if pad:
        weights = F.pad(weights, (0, 0, 0, pad))
    out = weights.view(k, chunks, -1, width) @ rows[:, None]  # [K, C, P / C, N]
    return out.view(k, -1, rows.shape[-1])[:, :n_points]


def _product(factors: Tensor) -> Tensor:
    """factors[0] * factors[1] * ...: Tensor.prod's backward checks for zeros on the host (a GPU sync)."""
    first, *rest = factors.unbind(0)  # one backward (a stack) rather than a zero-filled copy per factor
    for factor in rest:
        first = first * factor
    return first


class HexPlaneDeformation(nn.Module):
    """Maps canonical positions [P, 3] and a loop time t in [0, 1] to (dx [P, 3], dq [P, 4], dlog_s [P, 3]).

    ``dx`` is returned in the units of the projective depth (callers scale it by each Gaussian's distance
    to the photo camera); ``dq`` is added to the normalised quaternion; ``dlog_s`` to the log scales.
    """

    def __init__(self, config: DeformationConfig, lo: Tensor, hi: Tensor, w2c: Tensor):
        super().__init__()
        if lo.shape != (3,) or hi.shape != (3,) or w2c.shape != (4, 4):
            raise ValueError("lo and hi must be [3] and w2c [4, 4]")
        self.config = config
        self.register_buffer("lo", lo.detach().float().clone())
        self.register_buffer("hi", torch.maximum(hi.detach().float(), lo.detach().float() + 1e-6).clone())
        self.register_buffer("w2c", w2c.detach().float().clone())
        c = config
        self.spatial = nn.ParameterList()
        self.temporal = nn.ParameterList()
        for mult in c.grid_multires:
            r = c.grid_resolution * mult
            for _ in SPATIAL_PAIRS:
                self.spatial.append(nn.Parameter(torch.empty(1, c.grid_features, r, r).uniform_(0.1, 0.5)))
            for _ in range(3):  # time planes start at 1: the product then equals the spatial features
                self.temporal.append(nn.Parameter(torch.ones(1, c.grid_features, c.time_resolution, r)))
        in_dim = c.grid_features * len(c.grid_multires)
        self.trunk = nn.Sequential(
            nn.Linear(in_dim, c.mlp_width), nn.ReLU(), nn.Linear(c.mlp_width, c.mlp_width), nn.ReLU()
        )
        self.head_x = nn.Linear(c.mlp_width, 3)
        self.head_q = nn.Linear(c.mlp_width, 4)
        self.head_s = nn.Linear(c.mlp_width, 3)
        for head in (self.head_x, self.head_q, self.head_s):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def grid_parameters(self) -> list[nn.Parameter]:
        return [*self.spatial, *self.temporal]

    def mlp_parameters(self) -> list[nn.Parameter]:
        return [
            *self.trunk.parameters(),
            *self.head_x.parameters(),
            *self.head_q.parameters(),
            *self.head_s.parameters(),
        ]

    def normalized(self, points: Tensor) -> Tensor:
        """Canonical world points [P, 3] -> grid coordinates in [-1, 1]^3 (clamped at the border)."""
        q = projective_coords(points, self.w2c)
        return ((q - self.lo) / (self.hi - self.lo) * 2 - 1).clamp(-1, 1)

    def level_planes(self, level: int) -> tuple[Tensor, Tensor]:
        """The three spatial planes [3, F, r, r] and three time planes [3, F, T, r] of ``level``, stacked."""
        k = slice(3 * level, 3 * level + 3)
        return torch.cat(list(self.spatial[k])), torch.cat(list(self.temporal[k]))

    def features(self, points: Tensor, t: float | Sequence[float]) -> Tensor:
        """HexPlane features [P, grid_features * levels] at canonical ``points`` and loop time ``t``.

        Per level, the product of the six planes' bilinear samples: xy, xz, yz at the point's projective
        coordinates, and xt, yt, zt at (coordinate, t) on the periodic time axis. A sequence of B times gives
        [B, P, grid_features * levels], the spatial planes sampled once for all of them.

        The time planes are read as two matrix products: every point of one time reads the same two time
        rows, so the rows' blend (planes x time weights [T, B]) times each point's interpolation weights
        along W ([P, W], two non-zero) gives the samples, and the backward is matrix products too.
        (grid_sample's backward adds every point's gradient into those few rows with atomics, which all
        collide: 3 ms of a training iteration at 4 times x 46 000 points.)
        """
        batched = isinstance(t, Sequence)
        times = [float(x) for x in t] if batched else [float(t)]
        p = self.normalized(points).T  # [3, P]
        # Rows picked by stacking: indexing with a list would copy an index tensor to the device.
        axes = p.unbind(0)
        u_space, v_space = (
            torch.stack([axes[a] for a, _ in SPATIAL_PAIRS]),
            torch.stack([axes[b] for _, b in SPATIAL_PAIRS]),
        )
        n_times, n_time_rows = len(times), self.config.time_resolution
        w_time = to_device(_time_weights(times, n_time_rows), p.device).T  # [T, B]
        levels = []
        for level in range(len(self.config.grid_multires)):
            spatial, temporal = self.level_planes(level)  # [3, F, r, r], [3, F, T, r]
            k, f, _, r = temporal.shape
            space = _product(_sample_planes(spatial, u_space, v_space))  # [F, P]
            rows = (temporal.permute(0, 3, 1, 2).reshape(k, r * f, n_time_rows) @ w_time).view(k, r, f * n_times)
            time = _product(_weights_times_rows(_hat_weights(p, r), rows)).view(-1, f, n_times)  # [P, F, B]
            levels.append(space.T[None] * time.permute(2, 0, 1))  # [B, P, F]
        out = torch.cat(levels, dim=-1)
        return out if batched else out[0]

    def forward(self, points: Tensor, t: float | Sequence[float]) -> tuple[Tensor, Tensor, Tensor]:
        """(dx, dq, dlog_s) at loop time ``t`` ([P, ...]), or at each of B times ([B, P, ...])."""
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"points must be [P, 3], got {tuple(points.shape)}")
        h = self.trunk(self.features(points, t))
        return self.head_x(h), self.head_q(h), self.head_s(h)

    def regularization(self, tv_weight: float, time_weight: float) -> Tensor:
        """TV of the spatial planes + periodic second-order smoothness of the time planes along time."""
        tv, smooth = self.lo.new_zeros(()), self.lo.new_zeros(())
        for level in range(len(self.config.grid_multires)):
            spatial, temporal = self.level_planes(level)
            tv, smooth = tv + plane_tv(spatial), smooth + time_smoothness(temporal)
        return tv_weight * tv + time_weight * smooth


def plane_tv(planes: Tensor) -> Tensor:
    """Sum over the K planes [K, F, H, W] of each plane's mean squared first differences along both axes."""
    dh = planes[..., 1:, :] - planes[..., :-1, :]
    dw = planes[..., :, 1:] - planes[..., :, :-1]
    return (dh.square().mean(dim=(1, 2, 3)) + dw.square().mean(dim=(1, 2, 3))).sum()


def time_smoothness(planes: Tensor) -> Tensor:
    """Sum over the K planes [K, F, T, W] of the mean squared second difference along the periodic time axis."""
    first = torch.roll(planes, -1, dims=2) - planes
    second = torch.roll(first, -1, dims=2) - first
    return second.square().mean(dim=(1, 2, 3)).sum()
