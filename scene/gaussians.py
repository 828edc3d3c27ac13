"""Gaussian parameters as the rasterizer takes them, and the standard 3DGS PLY layout.

The PLY layout is the one 3D Gaussian Splatting viewers read: ``x y z nx ny nz f_dc_0..2
f_rest_0..(3*(K-1)-1) opacity scale_0..2 rot_0..3`` with opacity as a logit, scales as logs,
rotations as (unnormalised) wxyz quaternions and ``f_rest`` stored channel-major (all red
coefficients, then green, then blue).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from scene.io import atomic_path
from utils.errors import UserError

SH_C0 = 0.28209479177387814  # zeroth SH basis constant: rgb = SH_C0 * f_dc + 0.5


def rgb_to_sh_dc(rgb: Tensor) -> Tensor:
    return (rgb - 0.5) / SH_C0


def sh_coeff_count(degree: int) -> int:
    return (degree + 1) ** 2


@dataclass
class GaussianParams:
    """Activated Gaussian parameters, ready for :func:`gaussian_renderer.render`."""

    means: Tensor  # [N, 3] world units
    quats: Tensor  # [N, 4] wxyz (need not be normalised)
    scales: Tensor  # [N, 3] positive, world units
    opacities: Tensor  # [N] in [0, 1]
    sh: Tensor  # [N, K, 3] SH coefficients, K = (sh_degree + 1) ** 2; sh[:, 0] is the DC term
    # B sets of N Gaussians (one batched render) are the same fields with a leading B: means [B, N, 3], ...

    def __post_init__(self) -> None:
        lead, n = tuple(self.means.shape[:-2]), self.means.shape[-2] if self.means.ndim >= 2 else -1
        shapes = {
            "means": (self.means, (*lead, n, 3)),
            "quats": (self.quats, (*lead, n, 4)),
            "scales": (self.scales, (*lead, n, 3)),
            "opacities": (self.opacities, (*lead, n)),
        }
        if len(lead) > 1 or n < 0:
            raise ValueError(f"GaussianParams.means must be [N, 3] or [B, N, 3], got {tuple(self.means.shape)}")
        for name, (tensor, shape) in shapes.items():
            if tuple(tensor.shape) != shape:
                raise ValueError(f"GaussianParams.{name} must have shape {shape}, got {tuple(tensor.shape)}")
        sh = self.sh
        if sh.ndim != 3 + len(lead) or tuple(sh.shape[:-2]) != (*lead, n) or sh.shape[-1] != 3:
            raise ValueError(f"GaussianParams.sh must be [N, K, 3], got {tuple(sh.shape)}")
        if math.isqrt(sh.shape[-2]) ** 2 != sh.shape[-2]:
            raise ValueError(f"GaussianParams.sh has K={sh.shape[-2]} coefficients, not a square")

    def __len__(self) -> int:
        return self.means.shape[-2]

    @property
    def sh_degree(self) -> int:
        return math.isqrt(self.sh.shape[-2]) - 1

    def to(self, device: torch.device | str) -> GaussianParams:
        return GaussianParams(*(t.to(device) for t in self.tensors()))

    def tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        return self.means, self.quats, self.scales, self.opacities, self.sh

    def detach(self) -> GaussianParams:
        return GaussianParams(*(t.detach() for t in self.tensors()))


def _ply_names(k: int) -> list[str]:
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * (k - 1))]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return names


def save_ply(path: str | os.PathLike, params: GaussianParams) -> None:
    """Write ``params`` in the standard 3DGS PLY layout (binary little-endian float32)."""
    from plyfile import PlyData, PlyElement

    p = params.detach().to("cpu")
    n, k = len(p), p.sh.shape[1]
    eps = 1e-7
    columns = [
        p.means.numpy(),
        np.zeros((n, 3), np.float32),
        p.sh[:, 0].numpy(),
        p.sh[:, 1:].transpose(1, 2).reshape(n, -1).numpy(),  # channel-major
        torch.logit(p.opacities.clamp(eps, 1 - eps)).numpy()[:, None],
        torch.log(p.scales.clamp_min(1e-12)).numpy(),
        p.quats.numpy(),
    ]
    flat = np.concatenate(columns, axis=1).astype(np.float32)
    data = np.empty(n, dtype=[(name, "f4") for name in _ply_names(k)])
    for i, name in enumerate(data.dtype.names):
        data[name] = flat[:, i]
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(data, "vertex")]).write(str(tmp))


def load_ply(path: str | os.PathLike, device: torch.device | str = "cpu") -> GaussianParams:
    """Read a standard 3DGS PLY (any SH degree) into activated :class:`GaussianParams`."""
    from plyfile import PlyData, PlyParseError

    try:
        v = PlyData.read(str(path))["vertex"].data
        names = v.dtype.names
        n_rest = sum(1 for name in names if name.startswith("f_rest_"))
        k = n_rest // 3 + 1
        if n_rest % 3 or math.isqrt(k) ** 2 != k:
            raise ValueError(f"{n_rest} f_rest columns do not form an SH basis")

        def cols(keys: list[str]) -> Tensor:
            if not keys:  # SH degree 0: no f_rest columns
                return torch.zeros(len(v), 0)
            return torch.from_numpy(np.stack([np.asarray(v[key], np.float32) for key in keys], axis=1))

        rest = cols([f"f_rest_{i}" for i in range(n_rest)]).reshape(len(v), 3, k - 1).transpose(1, 2)
        params = GaussianParams(
            means=cols(["x", "y", "z"]),
            quats=cols([f"rot_{i}" for i in range(4)]),
            scales=torch.exp(cols([f"scale_{i}" for i in range(3)])),
            opacities=torch.sigmoid(cols(["opacity"])[:, 0]),
            sh=torch.cat([cols(["f_dc_0", "f_dc_1", "f_dc_2"])[:, None], rest], dim=1),
        )
    except (OSError, KeyError, ValueError, IndexError, PlyParseError) as exc:
        raise UserError(f"{path} is not a 3DGS PLY ({exc})", "re-run train_4DGS.py") from None
    if not all(torch.isfinite(t).all() for t in params.tensors()):
        raise UserError(f"{path} contains NaN or infinite values", "re-run train_4DGS.py")
    return params.to(device)
