"""3DGS-style densification: grow where the screen-space gradient is large, prune, reset opacities.

As gsplat's strategies: a config dataclass (:class:`DensifyConfig`) kept apart from the run state (a dict
of tensors from :func:`initialize_state`), and hooks called by the trainer. It only reads a
``gaussian_renderer.RenderOutput`` (``radii``, ``means2d`` gradient through ``screen_grad_norm``), so it
behaves the same on both rasterizer backends.

Landscape scenes span 1 to 200 scene units in depth, so the size thresholds are relative: a Gaussian's
size is its largest scale divided by its distance to the photo camera (about its angular size).
Gaussians densified from a static Gaussian stay static, and children of a moving one inherit its motion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from gaussian_renderer.projection import quat_to_rotmat
from gaussians4d import TRAIN_HELP
from gaussians4d.adam import Adam
from gaussians4d.model import TrainableGaussians
from utils.errors import require

SPLIT_SHRINK = 1.6  # children of a split are this much smaller (3DGS)


@dataclass(frozen=True)
class DensifyConfig:
    """When and how to grow and prune."""

    densify: bool = True
    """Grow and prune Gaussians (3DGS-style)."""
    densify_from: int = 100
    """First iteration (counted over both stages) at which Gaussians are grown or pruned."""
    densify_until_fraction: float = 0.6
    """Densification stops at this fraction of the total iterations."""
    densify_every: int = 100
    """Iterations between two densification steps."""
    grow_grad2d: float = 2e-4
    """Screen-space gradient threshold (gaussian_renderer.screen_grad_norm units) above which a Gaussian grows."""
    grow_scale: float = 0.002
    """Gaussians larger than this (x their distance to the photo's camera) are split, smaller ones cloned."""
    prune_opacity: float = 0.005
    """Gaussians more transparent than this are pruned."""
    prune_scale: float = 0.05
    """Gaussians larger than this (x their distance to the photo's camera) are pruned."""
    reset_opacity_every: int = 0
    """Iterations between opacity resets (0 = never; the reset needs many iterations to recover)."""
    max_gaussians: int = 60_000
    """Hard cap on the number of canonical Gaussians; growth stops there."""

    def validate(self) -> None:
        require(self.densify_every >= 1, "--densify_every must be >= 1", TRAIN_HELP)
        require(self.reset_opacity_every >= 0, "--reset_opacity_every must be >= 0", TRAIN_HELP)
        require(self.max_gaussians >= 1, f"--max_gaussians must be >= 1, got {self.max_gaussians}", TRAIN_HELP)
        for name in ("grow_grad2d", "grow_scale", "prune_opacity", "prune_scale"):
            require(getattr(self, name) >= 0, f"--{name} must be >= 0", TRAIN_HELP)

    def stop(self, total_iterations: int) -> int:
        """The first iteration without refinement (0 when densification is off)."""
        return int(self.densify_until_fraction * total_iterations) if self.densify else 0


def initialize_state(n: int, device: torch.device | str) -> dict[str, Tensor]:
    """Per-Gaussian accumulators: summed screen-space gradient and the number of renders that saw it."""
    zeros = torch.zeros(n, device=device)
    return {"grad2d": zeros.clone(), "count": zeros.clone()}


def update_state(state: dict[str, Tensor], out, rows: Tensor, width: int, height: int) -> None:
    """Accumulate the statistics of one rendered batch (call after ``backward``).

    ``rows`` [R] maps each rendered Gaussian to its canonical row (the moving Gaussians' two copies
    both feed their canonical Gaussian).
    """
    from gaussian_renderer import screen_grad_norm

    if out.means2d.grad is None:
        raise ValueError("out.means2d has no gradient: call out.means2d.retain_grad() before backward")
    grad = screen_grad_norm(out, width, height).detach()
    radii = out.radii.detach().reshape(-1, out.radii.shape[-1])  # [C, N], a batched render's B x C images as C
    visible = (radii.max(dim=0).values > 0).to(grad.dtype)  # seen by any camera (0/1)
    state["grad2d"].index_add_(0, rows, grad * visible)  # unseen rows add exact zeros: no boolean index, no sync
    state["count"].index_add_(0, rows, visible)


def _relative_size(model: TrainableGaussians) -> Tensor:
    return torch.exp(model.log_scales.detach()).max(dim=1).values / model.depth_ref


def _edit(model: TrainableGaussians, optimizer: Adam, src: Tensor, fresh: Tensor, new: dict[str, Tensor]) -> None:
    """Rebuild every per-Gaussian tensor as ``old[src]`` (then ``new`` overrides) and the Adam state with it.

    Rows flagged ``fresh`` start with zero Adam moments, as new Gaussians in 3DGS.
    """
    old = {k: v.detach() for k, v in model.per_gaussian().items()}
    tensors = {k: v[src] for k, v in old.items()}
    tensors.update(new)
    old_params = {name: getattr(model, name) for name in model.PARAMS}
    model.set_per_gaussian(tensors)
    for group in optimizer.param_groups:
        name = group.get("name")
        if name not in old_params:
            continue
        p_old, p_new = old_params[name], getattr(model, name)
        state = optimizer.state.pop(p_old, None)
        group["params"] = [p_new]
        if state:
            for key in ("exp_avg", "exp_avg_sq"):
                moment = state[key][src].clone()
                moment[fresh] = 0
                state[key] = moment
            optimizer.state[p_new] = state


def _grow(
    model: TrainableGaussians,
    optimizer,
    state: dict[str, Tensor],
    cfg: DensifyConfig,
    generator: torch.Generator | None,
) -> tuple[int, int]:
    avg = state["grad2d"] / state["count"].clamp_min(1)
    grow = avg > cfg.grow_grad2d
    budget = max(0, cfg.max_gaussians - len(model))
    if int(grow.sum()) > budget:  # keep the strongest gradients within the cap
        keep = torch.zeros_like(grow)
        keep[torch.topk(torch.where(grow, avg, -1.0), budget).indices] = True
        grow &= keep
    small = _relative_size(model) <= cfg.grow_scale
    clone_idx = (grow & small).nonzero().squeeze(1)
    split_idx = (grow & ~small).nonzero().squeeze(1)
    if clone_idx.numel() + split_idx.numel() == 0:
        return 0, 0
    n = len(model)
    rest = torch.ones(n, dtype=torch.bool, device=grow.device)
    rest[split_idx] = False
    keep_idx = rest.nonzero().squeeze(1)
    src = torch.cat([keep_idx, clone_idx, split_idx, split_idx])
    fresh = torch.arange(len(src), device=src.device) >= len(keep_idx)
    # Split children: sampled from the parent's Gaussian, shrunk (in world units, then re-normalised).
    scales = torch.exp(model.log_scales.detach()[split_idx]).repeat(2, 1)
    rot = quat_to_rotmat(model.quats.detach()[split_idx]).repeat(2, 1, 1)
    depth = model.depth_ref[split_idx].repeat(2)
    centre = (model.means_n.detach()[split_idx] * model.depth_ref[split_idx, None]).repeat(2, 1)
    noise = torch.randn(scales.shape, generator=generator).to(scales.device)  # the run's generator: resumable
    sample = centre + (rot @ (noise * scales)[..., None])[..., 0]
    means_n = model.means_n.detach()[src].clone()
    log_scales = model.log_scales.detach()[src].clone()
    tail = len(keep_idx) + len(clone_idx)
    means_n[tail:] = sample / depth[:, None]
    log_scales[tail:] = torch.log(scales / SPLIT_SHRINK)
    _edit(model, optimizer, src, fresh, {"means_n": means_n, "log_scales": log_scales})
    return int(clone_idx.numel()), int(split_idx.numel())


def _prune(model: TrainableGaussians, optimizer, cfg: DensifyConfig) -> int:
    opacity = torch.sigmoid(model.opacity_logits.detach())
    bad = (opacity < cfg.prune_opacity) | (_relative_size(model) > cfg.prune_scale)
    if bool(bad.all()):  # never empty the scene
        bad[torch.argmax(opacity)] = False
    n_bad = int(bad.sum())
    if n_bad:
        keep = (~bad).nonzero().squeeze(1)
        _edit(model, optimizer, keep, torch.zeros(len(keep), dtype=torch.bool, device=keep.device), {})
    return n_bad


def reset_opacity(model: TrainableGaussians, optimizer, cfg: DensifyConfig) -> None:
    """Clamp opacities to twice the prune threshold (at least 0.01, as 3DGS), zeroing their Adam moments."""
    ceiling = min(max(2 * cfg.prune_opacity, 0.01), 0.5)
    logit = math.log(ceiling / (1 - ceiling))
    src = torch.arange(len(model), device=model.opacity_logits.device)
    _edit(
        model,
        optimizer,
        src,
        torch.ones_like(src, dtype=torch.bool),
        {"opacity_logits": model.opacity_logits.detach().clamp(max=logit)},
    )


def step(
    model: TrainableGaussians,
    optimizer,
    state: dict[str, Tensor],
    cfg: DensifyConfig,
    iteration: int,
    total_iterations: int,
    generator: torch.Generator | None = None,
) -> dict[str, int] | None:
    """The refinement hook, called after the optimizer step of ``iteration`` (1-based) of ``total_iterations``.

    ``generator`` (CPU) draws the split children's positions, so that a resumed run repeats them.

    Returns counts {cloned, split, pruned} when a refinement happened (the state is then reset), else None.
    """
    stop = cfg.stop(total_iterations)
    if cfg.reset_opacity_every and iteration % cfg.reset_opacity_every == 0 and iteration < stop:
        reset_opacity(model, optimizer, cfg)
    if not (cfg.densify_from <= iteration < stop and iteration % cfg.densify_every == 0):
        return None
    cloned, split = _grow(model, optimizer, state, cfg, generator)
    pruned = _prune(model, optimizer, cfg)
    state.update(initialize_state(len(model), model.means_n.device))
    return {"cloned": cloned, "split": split, "pruned": pruned}
