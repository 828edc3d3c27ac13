"""The training loop of train_4DGS.py: a :class:`Trainer` owns the model, its optimizer, the densification
state, the random generator and the config, and runs the coarse then the fine stage.

Coarse stage (iterations 1..coarse_iterations): static Gaussians on the multi-view images at t = 0.
Fine stage (``TrainConfig.is_fine``): the deformation field is trained too, on the views and the video
frames at their loop time. One iteration = draw ``batch_size`` images, render them in one call, loss,
backward, densification statistics, Adam, refinement. The loss is read back (the one host sync) one iteration late, so that the
CPU queues the next iteration while the GPU works, and always before a checkpoint, a preview or a log
line: a non-finite loss stops the run before any checkpoint holds what it did. Checkpoints
(gaussians4d/checkpoints.py) make every run resumable, exactly.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gaussians4d import densify
from gaussians4d.adam import Adam
from gaussians4d.checkpoints import latest_checkpoint, load_checkpoint, read_meta, save_checkpoint
from gaussians4d.config import OptimConfig, TrainConfig
from gaussians4d.data import Sample, TrainData
from gaussians4d.losses import photometric_loss, psnr
from gaussians4d.model import FourDGaussians, TrainableGaussians
from scene.io import write_png
from utils.console import console, info, progress, warn
from utils.errors import UserError
from utils.failpoints import hold

# ----------------------------------------------------------------------------- optimisation


def make_optimizer(model: TrainableGaussians, cfg: OptimConfig) -> Adam:
    """Adam over the Gaussians and the field; the scheduled rates (means, grid, mlp) are set per iteration
    by :func:`set_learning_rates`. Batches scale every rate by sqrt(batch_size) (the square-root rule)."""
    scale = math.sqrt(cfg.batch_size)
    groups = [
        {"name": "means_n", "params": [model.means_n], "lr": cfg.lr_means},
        {"name": "quats", "params": [model.quats], "lr": cfg.lr_quats * scale},
        {"name": "log_scales", "params": [model.log_scales], "lr": cfg.lr_scales * scale},
        {"name": "opacity_logits", "params": [model.opacity_logits], "lr": cfg.lr_opacity * scale},
        {"name": "sh_dc", "params": [model.sh_dc], "lr": cfg.lr_sh * scale},
        {"name": "sh_rest", "params": [model.sh_rest], "lr": cfg.lr_sh / 20 * scale},
        {"name": "grid", "params": model.field.grid_parameters(), "lr": cfg.lr_grid},
        {"name": "mlp", "params": model.field.mlp_parameters(), "lr": cfg.lr_mlp},
    ]
    fused = model.means_n.is_cuda  # one kernel per group and step on the GPU; the CPU keeps the single-tensor Adam
    betas = (0.9**cfg.batch_size, 0.999**cfg.batch_size)  # the moments' memory spans as many images at any batch
    return Adam(groups, betas=betas, eps=1e-15, fused=fused)  # torch.optim.Adam's update, without torch._dynamo


def _exp_decay(lr: float, final_ratio: float, progress_: float) -> float:
    return lr * final_ratio ** min(max(progress_, 0.0), 1.0)


def set_learning_rates(optimizer: Adam, cfg: TrainConfig, iteration: int) -> None:
    """Means decay x0.01 over the run; the deformation x0.1 over the fine stage; it is frozen in the coarse stage.

    Every rate is scaled by sqrt(batch_size) (the square-root rule for Adam: fewer, less noisy steps)."""
    opt = cfg.optim
    fine = cfg.is_fine(iteration)
    fine_progress = (iteration - opt.coarse_iterations) / max(opt.fine_iterations, 1)
    scale = math.sqrt(opt.batch_size)
    for group in optimizer.param_groups:
        if group["name"] == "means_n":
            group["lr"] = scale * _exp_decay(opt.lr_means, 0.01, iteration / opt.total_iterations)
        elif group["name"] == "grid":
            group["lr"] = scale * _exp_decay(opt.lr_grid, 0.1, fine_progress) if fine else 0.0
        elif group["name"] == "mlp":
            group["lr"] = scale * _exp_decay(opt.lr_mlp, 0.1, fine_progress) if fine else 0.0


def render_at(
    model: TrainableGaussians | FourDGaussians,
    data: TrainData,
    cams: list[int],
    t: float,
    *,
    fine: bool,
    backend: str,
    validate: bool = True,
):
    """Render ``model`` at loop time ``t`` into the cameras ``cams`` (differentiable for a trainable model).

    ``validate=False`` skips the renderer's value checks (a device sync): the training step passes it, as its
    loss is checked for NaN/inf every iteration anyway."""
    params = model.at(t, use_field=fine) if isinstance(model, TrainableGaussians) else model.at_time(t)
    viewmats, ks = _cameras(data, cams)
    return _render(model, data, params, viewmats, ks, backend, validate)


def _render(model, data: TrainData, params, viewmats, ks, backend: str, validate: bool):
    from gaussian_renderer import render

    # Training, previews and the evaluation read colours only: no depth channel.
    return render(
        *params.tensors(), viewmats, ks, data.width, data.height, sh_degree=model.sh_degree, backend=backend,
        validate=validate, depth=False,
    )  # fmt: skip


def _cameras(data: TrainData, cams: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """viewmats [C, 4, 4] and Ks [C, 3, 3] of cameras ``cams``, gathered on the device: an index tensor made
    from the list would be a host-to-device copy, which waits for the GPU every iteration."""
    if len(cams) == 1:
        c = cams[0]
        return data.viewmats[c : c + 1], data.Ks[c : c + 1]
    return torch.stack([data.viewmats[c] for c in cams]), torch.stack([data.Ks[c] for c in cams])


def render_samples(model: TrainableGaussians, data: TrainData, samples: list[Sample], *, fine: bool, backend: str):
    """Render a training batch in one rasterizer call (no value checks: the loss is checked instead).

    Samples at one time (every coarse batch: t = 0) are one set of Gaussians seen by their cameras
    (rgb [B, H, W, 3]); samples at several times are a batched render of the scene at each of them
    (rgb [B, 1, H, W, 3]: sample b seen by its own camera)."""
    cams, times = [s.cam for s in samples], [s.t for s in samples]
    if not fine or len(set(times)) == 1:
        return render_at(model, data, cams, times[0], fine=fine, backend=backend, validate=False)
    viewmats, ks = _cameras(data, cams)
    return _render(model, data, model.at(times, use_field=True), viewmats[:, None], ks[:, None], backend, False)


def _batch_weight(samples: list[Sample]) -> torch.Tensor | None:
    """Pixel weights [B, H, W] of a batch (1 for images without), or None when no image has any."""
    if all(s.weight is None for s in samples):
        return None
    ones = torch.ones_like(samples[0].image[..., 0], dtype=torch.float32)
    return torch.stack([ones if s.weight is None else s.weight for s in samples])


# ----------------------------------------------------------------------------- progress


class _Progress:
    """Progress with it/s, ETA, loss, PSNR and Gaussian count (rich bar on a terminal, lines otherwise)."""

    def __init__(self, total: int, done: int):
        self.total, self.done, self.start = total, done, time.perf_counter()
        self.last_print = 0.0
        self.bar = progress() if console.is_terminal else None
        if self.bar:
            self.bar.start()
            self.task = self.bar.add_task("train_4DGS", total=total, completed=done, status="")

    def update(self, iteration: int, status: str) -> None:
        if self.bar:
            self.bar.update(self.task, completed=iteration, status=status)
            return
        now = time.perf_counter()
        if now - self.last_print > 5.0 or iteration == self.total:
            rate = (iteration - self.done) / max(now - self.start, 1e-9)
            eta = (self.total - iteration) / rate if rate > 0 else float("nan")
            console.print(f"train_4DGS: {iteration}/{self.total} {rate:.2f} it/s ETA {eta:.0f}s {status}")
            self.last_print = now

    def close(self) -> None:
        if self.bar:
            self.bar.stop()


class NonFiniteLoss(UserError):
    pass


# ----------------------------------------------------------------------------- the trainer


@dataclass
class RunState:
    iteration: int = 0
    losses: list[list[float]] = field(default_factory=list)  # [iteration, loss, psnr]
    last_checkpoint: Path | None = None


class Trainer:
    """Model, optimizer, densification state and generator of one training run (like gsplat's Runner).

    ``meta`` is what every checkpoint records about the run's inputs (config key, stage 1's manifest hash);
    ``folder`` is the stage's output folder (``SCENE/gaussians``).
    """

    def __init__(self, cfg: TrainConfig, data: TrainData, model: TrainableGaussians, folder: Path, meta: dict):
        self.cfg, self.data, self.model, self.folder, self.meta = cfg, data, model, Path(folder), meta
        self.device = data.viewmats.device
        self.backend = "gsplat" if self.device.type == "cuda" else "torch"
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # the SSIM blur without Triton: let cuDNN pick its kernel
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.optimizer = make_optimizer(model, cfg.optim)
        self.dstate = densify.initialize_state(len(model), self.device)
        self.state = RunState()

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"

    def resume(self, fresh: bool) -> None:
        """Continue from the newest checkpoint made with the same config and stage-1 outputs, or start afresh."""
        ckpt = None if fresh else latest_checkpoint(self.checkpoints)
        if ckpt is not None:
            saved = read_meta(ckpt)
            if all(saved.get(k) == self.meta[k] for k in ("config_key", "motion_manifest")):
                opt = lambda m: make_optimizer(m, self.cfg.optim)  # noqa: E731
                self.optimizer, self.dstate, saved = load_checkpoint(ckpt, self.model, opt, self.gen, self.device)
                info(f"resuming from {ckpt} (iteration {saved['iteration']})")
                self.state = RunState(int(saved["iteration"]), saved.get("losses", []), ckpt)
                return
            warn(f"ignoring {ckpt}: it was made with another config or other stage-1 outputs; starting afresh")
        for old in self.checkpoints.glob("iter_*"):
            old.unlink()

    def step(self, it: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One iteration (see the module docstring); returns (the loss, detached, on the device; rgb, target),
        rgb and target [B, H, W, 3] for a batch of B images."""
        cfg, model, data = self.cfg, self.model, self.data
        fine = cfg.is_fine(it)
        set_learning_rates(self.optimizer, cfg, it)
        samples = [data.draw(fine, cfg.optim.video_fraction, self.gen) for _ in range(cfg.optim.batch_size)]
        out = render_samples(model, data, samples, fine=fine, backend=self.backend)
        rgb = out.rgb.reshape(len(samples), data.height, data.width, 3)
        target = torch.stack([s.image for s in samples]).float() / 255
        loss = photometric_loss(rgb, target, cfg.optim.lambda_dssim, _batch_weight(samples))
        if fine:
            loss = loss + model.field.regularization(cfg.optim.plane_tv_weight, cfg.optim.time_smoothness_weight)
        loss.backward()
        with torch.no_grad():
            total = cfg.optim.total_iterations
            if cfg.densify.densify_from <= it < cfg.densify.stop(total):
                densify.update_state(self.dstate, out, model.rendered_rows(), data.width, data.height)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            densify.step(model, self.optimizer, self.dstate, cfg.densify, it, total, self.gen)
        return loss.detach(), rgb, target

    def _check_finite(self, value: float, it: int) -> None:
        if math.isfinite(value):
            return
        last = self.state.last_checkpoint
        where = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        raise NonFiniteLoss(
            f"the loss became {value} at iteration {it}; {where}",
            "lower the learning rates (e.g. --lr_means, --lr_grid) and re-run: it resumes from that checkpoint",
        )

    def train(self) -> bool:
        """Iterate from the current iteration to the end; returns False when stopped early by ``stop_after``."""
        cfg, run = self.cfg, self.cfg.run
        total = cfg.optim.total_iterations
        bar = _Progress(total, self.state.iteration)
        started, ema, pending = self.state.iteration, None, None

        def read(item) -> float:  # the loss of an earlier iteration, checked; the EMA follows every iteration
            nonlocal ema
            value = float(item[1])
            self._check_finite(value, item[0])
            ema = value if ema is None else 0.9 * ema + 0.1 * value
            return value

        try:
            for it in range(self.state.iteration + 1, total + 1):
                loss, rgb, target = self.step(it)
                if pending is not None:
                    read(pending)
                pending = (it, loss)
                stop = bool(run.stop_after) and it - started >= run.stop_after
                logging = it % run.log_every == 0 or it == total
                previewing = bool(run.preview_every) and it % run.preview_every == 0
                saving = it % run.checkpoint_every == 0 or it == cfg.optim.coarse_iterations or stop
                if logging or previewing or saving:  # logging includes the last iteration
                    read(pending)
                    pending = None
                self.state.iteration = it
                if logging:
                    p = psnr(rgb, target)
                    self.state.losses.append([it, round(ema, 6), round(p, 3)])
                    stage = "fine" if cfg.is_fine(it) else "coarse"
                    bar.update(it, f"{stage} loss {ema:.4f} PSNR {p:.2f} dB n={len(self.model)}")
                if previewing:
                    self.preview(self.folder / "previews" / f"iter_{it:06d}.png", cfg.is_fine(it))
                if saving:
                    self.checkpoint()
                if stop:
                    return False
        finally:
            bar.close()
        return True

    def checkpoint(self) -> None:
        meta = {**self.meta, "iteration": self.state.iteration, "losses": self.state.losses}
        self.state.last_checkpoint = save_checkpoint(
            self.checkpoints, self.model, self.optimizer, self.dstate, self.gen, meta
        )
        hold("gaussians:checkpoint")

    def preview(self, path: Path, fine: bool) -> None:
        """Ground truth beside renders of the photo's view at t = 0 and t = 0.5."""
        data = self.data
        with torch.no_grad():
            rows = []
            for t in (0.0, 0.5):
                out = render_at(self.model, data, [0], t, fine=fine, backend=self.backend)
                gt = next((s.image for s in data.frames + data.heldout if s.cam == 0 and abs(s.t - t) < 1e-9), None)
                gt = data.views[0].image if gt is None and t == 0 else gt
                gt_img = gt.float() / 255 if gt is not None else torch.zeros_like(out.rgb[0])
                rows.append(torch.cat([gt_img, out.rgb[0].clamp(0, 1)], dim=1))
        write_png(path, torch.cat(rows, dim=0).cpu().numpy(), compress_level=1)  # fast: it interrupts training

    def evaluate(self, model: FourDGaussians, samples: list[Sample]) -> float | None:
        """Mean PSNR (dB) over up to ``eval_max_images`` evenly spaced ``samples``; None when there are none."""
        if not samples:
            return None
        limit = self.cfg.data.eval_max_images
        picks = [samples[i] for i in np.linspace(0, len(samples) - 1, min(limit, len(samples))).round().astype(int)]
        values = []
        with torch.no_grad():
            for s in picks:
                out = render_at(model, self.data, [s.cam], s.t, fine=True, backend=self.backend)
                values.append(psnr(out.rgb, s.image[None].float() / 255))
        return float(np.mean(values))
