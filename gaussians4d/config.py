"""The one typed configuration of train_4DGS.py (stage 2), in groups, with "cpu" and "gpu" presets.

Every leaf is a command-line option of the same name. The resolved config is saved as
``SCENE/gaussians/config.json`` and read back with :func:`utils.config.from_dict` (known names and
declared types only). A preset is a set of leaf values applied before the user's options.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from gaussians4d import TRAIN_HELP
from gaussians4d.deformation import DeformationConfig
from gaussians4d.densify import DensifyConfig
from scene.cameras import image_size
from utils.config import from_dict, get, leaves, to_dict, validate, with_overrides
from utils.errors import UserError, require


@dataclass(frozen=True)
class DataConfig:
    resolution: str | None = "320"
    """Training size: N = longest side N pixels, WxH, or none = stage 1's size (never above it)."""
    max_points: int = 20_000
    """Initial Gaussians: stage 1's point cloud is subsampled (uniformly at random) to at most this many."""
    holdout_every: int = 8
    """Every k-th video frame (i % k == k // 2) is held out of training and used for the held-out PSNR; 0 = none."""
    inpainted_weight: float = 0.5
    """Weight of the photometric loss on inpainted pixels of the multi-view images (1 = same as seen pixels)."""
    eval_max_images: int = 12
    """PSNRs at the end are averaged over at most this many evenly spaced images per set (views, training
    frames, held-out frames): rendering every frame would cost minutes on a CPU."""

    def validate(self) -> None:
        image_size(self.resolution, 8192, 8192)  # the syntax and range, before any work
        require(self.eval_max_images >= 1, f"--eval_max_images must be >= 1, got {self.eval_max_images}", TRAIN_HELP)
        require(self.max_points >= 1, f"--max_points must be >= 1, got {self.max_points}", TRAIN_HELP)
        require(
            0 <= self.inpainted_weight <= 1,
            f"--inpainted_weight must be in [0, 1], got {self.inpainted_weight}",
            TRAIN_HELP,
        )
        require(self.holdout_every == 0 or self.holdout_every >= 2, "--holdout_every must be 0 or >= 2", TRAIN_HELP)


@dataclass(frozen=True)
class ModelConfig:
    sh_degree: int = 0
    """Spherical-harmonics degree of the colours (0..3); 0 = view-independent colour."""
    flow_scale: float = 1.0
    """Scales stage 1's 3D motion per rendered frame: the loop keeps the video's content and has
    round(n_video_frames / flow_scale) frames, so motion per frame is flow_scale times the video's.
    0 freezes the scene (no motion, no fine stage)."""
    init_opacity: float = 0.5
    """Initial opacity of every Gaussian."""
    deformation: DeformationConfig = field(default_factory=DeformationConfig)

    def validate(self) -> None:
        require(self.flow_scale >= 0, f"--flow_scale must be >= 0, got {self.flow_scale}", TRAIN_HELP)
        require(0 <= self.sh_degree <= 3, f"--sh_degree must be in 0..3, got {self.sh_degree}", TRAIN_HELP)
        require(0 < self.init_opacity < 1, f"--init_opacity must be in (0, 1), got {self.init_opacity}", TRAIN_HELP)


@dataclass(frozen=True)
class OptimConfig:
    coarse_iterations: int = 300
    """Static iterations on the multi-view images at t = 0 (no deformation)."""
    fine_iterations: int = 1200
    """Iterations with deformation, on the views (t = 0) and the video frames (their time)."""
    video_fraction: float = 0.7
    """Probability that a fine-stage draw is a video frame rather than a t = 0 view."""
    batch_size: int = 1
    """Images drawn per iteration, rendered in one rasterizer call, their loss averaged. The learning rates are
    scaled by sqrt(batch_size) and Adam's betas raised to the power batch_size (moments over as many images)."""
    lambda_dssim: float = 0.2
    """Weight of the D-SSIM term; the L1 term has weight 1 - lambda_dssim."""
    plane_tv_weight: float = 2e-4
    """Total variation of the spatial HexPlane planes."""
    time_smoothness_weight: float = 1e-3
    """Second-order smoothness of the time planes along (periodic) time."""
    lr_means: float = 1.6e-4
    """Learning rate of the means, in units of the Gaussian's distance to the photo's camera (decays x0.01)."""
    lr_sh: float = 2.5e-3
    """Learning rate of the SH DC colour (the higher bands use lr_sh / 20)."""
    lr_opacity: float = 0.05
    """Learning rate of the opacity logits."""
    lr_scales: float = 5e-3
    """Learning rate of the log scales."""
    lr_quats: float = 1e-3
    """Learning rate of the rotations."""
    lr_grid: float = 1.6e-3
    """Learning rate of the HexPlane features (decays x0.1)."""
    lr_mlp: float = 1.6e-4
    """Learning rate of the deformation MLP (decays x0.1)."""

    @property
    def total_iterations(self) -> int:
        return self.coarse_iterations + self.fine_iterations

    def validate(self) -> None:
        require(self.coarse_iterations >= 0 and self.fine_iterations >= 0, "iterations must be >= 0", TRAIN_HELP)
        require(self.total_iterations >= 1, "--coarse_iterations + --fine_iterations must be >= 1", TRAIN_HELP)
        require(
            0 <= self.video_fraction <= 1, f"--video_fraction must be in [0, 1], got {self.video_fraction}", TRAIN_HELP
        )
        require(1 <= self.batch_size <= 64, f"--batch_size must be in 1..64, got {self.batch_size}", TRAIN_HELP)
        require(0 <= self.lambda_dssim <= 1, f"--lambda_dssim must be in [0, 1], got {self.lambda_dssim}", TRAIN_HELP)
        for f in fields(self):
            require(getattr(self, f.name) >= 0, f"--{f.name} must be >= 0, got {getattr(self, f.name)}", TRAIN_HELP)


@dataclass(frozen=True)
class RunConfig:
    """Options that do not change what is trained: a checkpoint made under other values can be resumed."""

    device: str = "auto"
    """auto (CUDA if available), cpu, cuda or cuda:N; the rasterizer backend follows the device."""
    checkpoint_every: int = 250
    """Iterations between checkpoints (also written at the end of each stage)."""
    preview_every: int = 500
    """Iterations between preview PNGs (0 = none)."""
    log_every: int = 25
    """Iterations between progress updates (loss, PSNR, Gaussian count)."""
    stop_after: int = 0
    """Stop (as if interrupted) after this many iterations of this run, leaving a checkpoint; 0 = run to the end."""

    def validate(self) -> None:
        require(self.checkpoint_every >= 1 and self.log_every >= 1, "intervals must be >= 1", TRAIN_HELP)
        require(self.preview_every >= 0 and self.stop_after >= 0, "counts must be >= 0", TRAIN_HELP)


@dataclass(frozen=True)
class TrainConfig:
    """Options of train_4DGS.py."""

    input_dir: str = ""
    """Scene folder (after train_motion.py)."""
    preset: Literal["auto", "cpu", "gpu"] = "auto"
    """Defaults for the machine: gpu with CUDA, else cpu (PRESETS in gaussians4d/config.py)."""
    fresh: bool = False
    """Ignore existing checkpoints and start over."""
    seed: int = 0
    """Random seed (subsampling, camera draws, densification)."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self) -> None:
        for leaf in leaves(type(self)):
            value = get(self, leaf.path)
            if isinstance(value, float):
                require(math.isfinite(value), f"--{leaf.name} must be finite, got {value}", TRAIN_HELP)

    def is_fine(self, iteration: int) -> bool:
        """Iteration ``iteration`` (1-based) belongs to the fine stage: the deformation is trained and used."""
        return iteration > self.optim.coarse_iterations and self.model.flow_scale > 0

    def resume_key(self) -> dict[str, Any]:
        """What a checkpoint must have been made with to be resumed: everything but the run options."""
        data = to_dict(self)
        for name in ("input_dir", "preset", "fresh", "run"):
            data.pop(name)
        return data


PRESETS: dict[str, dict[str, Any]] = {
    # The 640x360 demo's train_4DGS in about a minute on a 2-core CPU with the PyTorch rasterizer: two
    # images per iteration trained 8-16 % faster than one image per iteration for twice as many iterations
    # (PSNR -0.1 dB, the same texture retention; four per iteration was slower); 320 px with 20 000 points
    # kept more texture but took the demo past its 3 minutes (docs/BENCHMARKS.md "Demo").
    "cpu": {
        "resolution": "256",
        "max_points": 12_000,
        "batch_size": 2,
        "coarse_iterations": 75,
        "fine_iterations": 175,
        "densify_from": 50,
        "densify_every": 50,
        "max_gaussians": 20_000,
        "checkpoint_every": 50,
        "preview_every": 125,
        "eval_max_images": 8,
    },
    # Four images per iteration (one rasterizer call; the per-iteration work -- kernel launches, Adam, the
    # field's regularisers -- shared by four): 3600 images in 900 iterations. On mom_scene_0 (H200) one image
    # per iteration for 3000 iterations trained 65 s for 47.64 dB held-out; this 34-45 s for 47.4-47.5 dB;
    # 4 x 750 iterations lost 0.7 dB, 2 x 1500 took 43 s (docs/BENCHMARKS.md "train_4DGS").
    "gpu": {
        "resolution": None,
        "max_points": 1_000_000,
        "sh_degree": 1,
        "grid_resolution": 64,
        "grid_multires": (1, 2),
        "time_resolution": 30,
        "grid_features": 16,
        "mlp_width": 64,
        "batch_size": 4,
        "coarse_iterations": 150,
        "fine_iterations": 750,
        "densify_from": 75,
        "densify_every": 50,
        "max_gaussians": 1_500_000,
        "checkpoint_every": 1000,  # a checkpoint (300 MB at 1 M Gaussians) at the end of the coarse stage
        "preview_every": 450,
        "log_every": 50,
        "eval_max_images": 60,
    },
}


def machine_preset(device: str) -> str:
    """The preset ``auto`` stands for: gpu when CUDA is available and not refused by ``device``, else cpu."""
    import torch

    return "cpu" if device == "cpu" or not torch.cuda.is_available() else "gpu"


def preset(name: str, **overrides: Any) -> TrainConfig:
    """The named preset ("cpu" or "gpu") with leaf ``overrides`` applied and validated."""
    if name not in PRESETS:
        raise UserError(f"unknown preset '{name}'", f"use one of {', '.join(PRESETS)}")
    cfg = with_overrides(with_overrides(TrainConfig(preset=name), PRESETS[name]), overrides)  # type: ignore[arg-type]
    validate(cfg)
    return cfg


def preset_defaults() -> dict[str, str]:
    """{leaf: "cpu: X, gpu: Y"} for the help of the leaves the presets set."""
    base = TrainConfig()
    out = {}
    for leaf in leaves(TrainConfig):
        values = [PRESETS[p].get(leaf.name, get(base, leaf.path)) for p in sorted(PRESETS)]
        if any(leaf.name in PRESETS[p] for p in PRESETS):
            out[leaf.name] = ", ".join(f"{p}: {_shown(v)}" for p, v in zip(sorted(PRESETS), values))
    return out


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def load_config(data: Any) -> TrainConfig:
    """A :class:`TrainConfig` from ``gaussians/config.json``'s content (safe loader)."""
    cfg = from_dict(TrainConfig, data, "training config")
    validate(cfg)
    return cfg


__all__ = ["PRESETS", "TrainConfig", "load_config", "machine_preset", "preset", "preset_defaults"]
