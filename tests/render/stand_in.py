"""A stand-in for a trained 4D scene (gaussians4d.model.FourDGaussians) for render tests and benchmarks.

Random Gaussians filling the photo camera's view between depths 2 and 10 (a landscape-like depth range),
a third of them swaying sideways with the loop phase; ``at_time`` is exactly periodic (t is wrapped).
"""

from __future__ import annotations

import math

import torch

from scene.cameras import Camera, source_camera
from scene.gaussians import GaussianParams, rgb_to_sh_dc


class StandInLoop:
    """Same attributes as FourDGaussians: ``n_frames``, ``cameras``, ``sh_degree``, ``at_time(t)``."""

    def __init__(
        self,
        n_gaussians: int = 500,
        width: int = 48,
        height: int = 32,
        n_frames: int = 4,
        sh_degree: int = 1,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ):
        g = torch.Generator().manual_seed(seed)
        n = n_gaussians
        self.cameras: list[Camera] = [source_camera(width, height)]
        focal = float(self.cameras[0].K[1, 1])
        z = 2.0 + 8.0 * torch.rand(n, generator=g)
        uv = (torch.rand(n, 2, generator=g) - 0.5) * 1.3 * torch.tensor([width, height], dtype=torch.float32)
        self.means = torch.cat([uv * z[:, None] / focal, z[:, None]], dim=1)
        self.quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=1)
        pixel = z / focal  # world size of one pixel at the Gaussian's depth
        self.scales = pixel[:, None] * (1.0 + 3.0 * torch.rand(n, 3, generator=g))
        self.opacities = 0.4 + 0.6 * torch.rand(n, generator=g)
        k = (sh_degree + 1) ** 2
        self.sh = 0.2 * torch.randn(n, k, 3, generator=g)
        self.sh[:, 0] = rgb_to_sh_dc(torch.rand(n, 3, generator=g))
        self.moving = torch.rand(n, generator=g) < 0.33
        self.n_frames = n_frames
        self.sh_degree = sh_degree
        self.device = torch.device(device)

    def at_time(self, t: float) -> GaussianParams:
        phase = 2.0 * math.pi * (float(t) % 1.0)  # t = 1 is exactly t = 0
        offset = torch.zeros_like(self.means)
        offset[self.moving, 0] = 0.15 * math.sin(phase) * self.means[self.moving, 2] / 5.0
        params = GaussianParams(self.means + offset, self.quats, self.scales, self.opacities, self.sh)
        return params.to(self.device)
