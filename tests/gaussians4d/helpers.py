"""Small deterministic fields, points and Gaussians shared by the stage-2 unit tests."""

from __future__ import annotations

import torch

from gaussians4d.adam import Adam
from gaussians4d.config import TrainConfig
from gaussians4d.deformation import DeformationConfig, HexPlaneDeformation
from gaussians4d.model import TrainableGaussians
from scene.gaussians import GaussianParams
from scene.loop import LoopSchedule

CFG = DeformationConfig(grid_resolution=6, grid_multires=(1, 2), time_resolution=5, grid_features=3, mlp_width=8)


def tiny_field(seed: int = 0, randomize: bool = True) -> HexPlaneDeformation:
    torch.manual_seed(seed)
    field = HexPlaneDeformation(CFG, torch.tensor([-1.0, -1.0, 0.01]), torch.tensor([1.0, 1.0, 1.0]), torch.eye(4))
    if randomize:  # untrained heads are zero; give them (and the time planes) something to show
        with torch.no_grad():
            for p in field.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return field


def random_points(n: int = 50, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = 2 + 20 * torch.rand(n, generator=g)
    xy = (torch.rand(n, 2, generator=g) - 0.5) * z[:, None]
    return torch.cat([xy, z[:, None]], 1)


def random_gaussians(n: int = 40, seed: int = 2) -> GaussianParams:
    g = torch.Generator().manual_seed(seed)
    return GaussianParams(
        random_points(n, seed),
        torch.randn(n, 4, generator=g),
        torch.rand(n, 3, generator=g) * 0.1 + 0.01,
        torch.rand(n, generator=g) * 0.9 + 0.05,
        torch.randn(n, 4, 3, generator=g),
    )


def tiny_trainable(n: int = 30) -> TrainableGaussians:
    g = torch.Generator().manual_seed(5)
    xyz = random_points(n, 6)
    depth = xyz.norm(dim=1)
    moving = torch.arange(n) % 2 == 0
    tensors = {
        "means_n": xyz / depth[:, None],
        "quats": torch.tensor([1.0, 0, 0, 0]).repeat(n, 1),
        "log_scales": torch.log(depth * torch.where(torch.arange(n) < n // 2, 0.001, 0.004))[:, None].repeat(1, 3),
        "opacity_logits": torch.zeros(n),
        "sh_dc": torch.rand(n, 1, 3, generator=g),
        "sh_rest": torch.zeros(n, 0, 3),
        "depth_ref": depth,
        "moving": moving,
        "motion": torch.randn(n, 3, generator=g) * moving[:, None],
        "threshold": torch.rand(n, generator=g) * 0.3 + 0.1,
        "from_photo": torch.arange(n) % 3 != 0,
    }
    return TrainableGaussians(tensors, tiny_field(randomize=False), LoopSchedule(8, cycle=4), 1.0)


def optimizer_with_state(model: TrainableGaussians) -> Adam:
    from gaussians4d.trainer import make_optimizer

    opt = make_optimizer(model, TrainConfig().optim)
    at = model.at(0.3)
    loss = at.means.square().sum() + at.opacities.sum() + at.scales.sum() + at.quats.sum() + model.sh_dc.sum()
    loss.backward()
    opt.step()
    opt.zero_grad()
    return opt
