"""Random-but-plausible Gaussian scenes shared by the tests and the benchmark (no side effects)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .sh import num_sh_bases


@dataclass
class RandomScene:
    """Inputs of :func:`gaussian_renderer.render` (keyword names match)."""

    means: Tensor  # [N, 3]
    quats: Tensor  # [N, 4]
    scales: Tensor  # [N, 3]
    opacities: Tensor  # [N]
    colors: Tensor  # [N, 3] or [N, K, 3]
    viewmats: Tensor  # [C, 4, 4]
    Ks: Tensor  # [C, 3, 3]
    width: int
    height: int
    sh_degree: int | None

    def inputs(self) -> dict:
        """Keyword arguments for ``render(**scene.inputs())``."""
        return dict(self.__dict__)

    def params(self) -> list[Tensor]:
        """The five differentiable per-Gaussian tensors."""
        return [self.means, self.quats, self.scales, self.opacities, self.colors]

    def requires_grad_(self) -> RandomScene:
        for p in self.params():
            p.requires_grad_(True)
        return self


def look_at_cameras(n_cams: int, spread_deg: float = 4.0, generator: torch.Generator | None = None) -> Tensor:
    """[C, 4, 4] world-to-camera matrices near the origin looking down +z, small random yaw/pitch/offset."""
    mats = []
    for i in range(n_cams):
        if i == 0:
            yaw = pitch = 0.0
            offset = torch.zeros(3)
        else:
            angles = (torch.rand(2, generator=generator) * 2 - 1) * math.radians(spread_deg)
            yaw, pitch = float(angles[0]), float(angles[1])
            offset = (torch.rand(3, generator=generator) * 2 - 1) * 0.2
        cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
        r_yaw = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        r_pitch = torch.tensor([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
        m = torch.eye(4)
        m[:3, :3] = r_pitch @ r_yaw
        m[:3, 3] = offset
        mats.append(m)
    return torch.stack(mats)


def random_scene(
    n: int,
    width: int = 96,
    height: int = 64,
    n_cams: int = 1,
    sh_degree: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    size_factor: float = 1.0,
) -> RandomScene:
    """N Gaussians filling the view frustum of camera 0 at depths 2..8.

    Screen-space sizes scale with the pixel area per Gaussian, sqrt(W H / N), times a log-uniform factor
    in [0.5, 2.5] (times ``size_factor``), with random anisotropy and rotation, so that the depth complexity
    (~30 overlapping splats per pixel, alpha ~0.9) stays similar at any N and resolution. Opacities in [0.05, 0.95].
    """
    g = torch.Generator().manual_seed(seed)
    focal = 0.9 * max(width, height)
    depth = 2.0 + 6.0 * torch.rand(n, generator=g)
    # Uniform in the image plane with a 10% margin, back-projected to the sampled depth.
    u = (torch.rand(n, generator=g) * 1.2 - 0.1) * width
    v = (torch.rand(n, generator=g) * 1.2 - 0.1) * height
    means = torch.stack([(u - width / 2) / focal * depth, (v - height / 2) / focal * depth, depth], dim=-1)
    px_sigma = math.sqrt(width * height / max(n, 1)) * size_factor
    px_sigma = px_sigma * torch.exp(torch.empty(n).uniform_(math.log(0.5), math.log(2.5), generator=g))
    aniso = torch.rand(n, 3, generator=g) * 0.7 + 0.3
    scales = (px_sigma * depth / focal)[:, None] * aniso
    quats = torch.randn(n, 4, generator=g)
    quats = quats / quats.norm(dim=-1, keepdim=True)
    opacities = torch.rand(n, generator=g) * 0.9 + 0.05
    if sh_degree is None:
        colors = torch.rand(n, 3, generator=g)
    else:
        colors = torch.randn(n, num_sh_bases(sh_degree), 3, generator=g) * 0.2
        colors[:, 0] = (torch.rand(n, 3, generator=g) - 0.5) / 0.28209479177387814
    k = torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=torch.float32)
    viewmats = look_at_cameras(n_cams, generator=g)
    like = {"device": device, "dtype": dtype}
    return RandomScene(
        means=means.to(**like),
        quats=quats.to(**like),
        scales=scales.to(**like),
        opacities=opacities.to(**like),
        colors=colors.to(**like),
        viewmats=viewmats.to(**like),
        Ks=k[None].expand(n_cams, 3, 3).contiguous().to(**like),
        width=width,
        height=height,
        sh_degree=sh_degree,
    )
