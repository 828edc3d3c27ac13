"""Real spherical harmonics colours (degree 0..3), the standard 3DGS basis and convention."""

from __future__ import annotations

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)
MAX_SH_DEGREE = 3


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients per colour channel for a degree: (degree + 1)^2."""
    return (degree + 1) ** 2


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """SH basis values [..., (degree+1)^2] at directions [..., 3] (normalised here)."""
    d = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    x, y, z = d.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            SH_C2[0] * x * y,
            SH_C2[1] * y * z,
            SH_C2[2] * (2 * zz - xx - yy),
            SH_C2[3] * x * z,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3 * xx - yy),
            SH_C3[1] * x * y * z,
            SH_C3[2] * y * (4 * zz - xx - yy),
            SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            SH_C3[4] * x * (4 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(out, dim=-1)


def sh_to_rgb(degree: int, coeffs: Tensor, means: Tensor, campos: Tensor) -> Tensor:
    """View-dependent RGB [C, N, 3] from SH coefficients.

    Args: coeffs [N, K, 3] with K >= (degree+1)^2 (extra bands ignored), means [N, 3] world,
    campos [C, 3] camera centres in world. Direction = mean - camera centre; result + 0.5, clamped >= 0
    (3DGS convention).
    """
    k = num_sh_bases(degree)
    basis = sh_basis(degree, means[None] - campos[:, None])  # [C, N, k]
    rgb = torch.einsum("cnk,nkd->cnd", basis, coeffs[:, :k])
    return torch.clamp_min(rgb + 0.5, 0.0)
