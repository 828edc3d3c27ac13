"""The training loop of train_4DGS.py: data from stage 1, coarse + fine stages, checkpoints, outputs.

Supervision: every multi-view image at t = 0 from its camera (inpainted pixels weighted by
``inpainted_weight``) and every animated video frame i of view v at t = i / N from camera v, except the
held-out frames (i % holdout_every == holdout_every // 2) kept for the held-out PSNR.

Checkpoints (``gaussians/checkpoints/iter_NNNNNN.safetensors`` + ``.json``, the JSON written last) hold
every tensor of the run (parameters, Adam moments, densification statistics, random generator state);
re-running the same command resumes from the latest one whose config and stage-1 inputs still match.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gaussians4d import densify
from gaussians4d.config import TrainConfig, config_from_dict
from gaussians4d.deformation import DeformationConfig
from gaussians4d.losses import photometric_loss, psnr
from gaussians4d.model import FourDGaussians, TrainableGaussians, init_gaussians, save_trained
from scene.cameras import CameraBatch
from scene.io import (
    Camera,
    atomic_path,
    read_cameras,
    read_json,
    read_mask,
    read_npy,
    read_points,
    read_rgb,
    remove_stale_temps,
    write_json,
    write_png,
)
from scene.manifest import StageRun, check_writable, file_hash, require_stage
from scene.paths import GAUSSIANS_CMD, ScenePaths
from utils.console import console, info, progress, warn
from utils.errors import UserError
from utils.failpoints import hold

CHECKPOINTS_KEPT = 2
# Fields that do not change what is trained: a checkpoint made under other values can be resumed.
RUN_ONLY_FIELDS = ("device", "stop_after", "log_every", "preview_every", "checkpoint_every")


# ----------------------------------------------------------------------------- data


@dataclass
class Sample:
    """One supervising image: camera index, loop time, image [H, W, 3] uint8, pixel weight [H, W] or None."""

    cam: int
    t: float
    image: Tensor
    weight: Tensor | None
    name: str


@dataclass
class TrainData:
    cameras: list[Camera]  # stage 1's cameras at their own size
    viewmats: Tensor  # [V, 4, 4]
    Ks: Tensor  # [V, 3, 3] at the training size
    width: int
    height: int
    views: list[Sample]  # t = 0
    frames: list[Sample]  # training video frames
    heldout: list[Sample]  # held-out video frames
    n_video_frames: int


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    if image.shape[1] == width and image.shape[0] == height:
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _to_u8(image: np.ndarray, device: torch.device) -> Tensor:
    return torch.from_numpy(np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)).to(device)


def _video_views(scene: ScenePaths) -> list[int]:
    root = scene.motion.video_dir
    if not root.is_dir():
        return []
    return sorted(int(d.name) for d in root.iterdir() if d.is_dir() and d.name.isdigit())


def _n_video_frames(scene: ScenePaths, manifest: dict, views: list[int]) -> int:
    config = manifest.get("config") or {}
    for n in (config.get("n_frames"), (config.get("part2") or {}).get("n_frames")):  # train_motion nests it
        if isinstance(n, int) and not isinstance(n, bool) and n >= 1:
            return n
    counts = [len(list((scene.motion.video_dir / f"{v:02d}").glob("*.png"))) for v in views]
    return max(counts, default=1)


def load_data(scene: ScenePaths, cfg: TrainConfig, device: torch.device) -> TrainData:
    """Stage 1's views, video frames and cameras, resized to the training resolution."""
    manifest = require_stage(scene, "motion")
    cameras = read_cameras(scene.motion.cameras)
    if not cameras:
        raise UserError(f"{scene.motion.cameras} holds no camera", "re-run train_motion.py")
    w0, h0 = cameras[0].width, cameras[0].height
    width = min(cfg.resolution, w0) if cfg.resolution else w0  # never upsample stage 1's images
    height = max(8, round(width * h0 / w0))
    scaled = [c.scaled(width, height) for c in cameras]
    batch = CameraBatch.of(scaled, device)
    viewmats, Ks = batch.viewmats, batch.Ks
    views = []
    for i in range(len(cameras)):
        image = _resize(read_rgb(scene.motion.view_image(i), "train_motion.py"), width, height)
        weight = None
        if scene.motion.view_valid(i).is_file() and cfg.inpainted_weight < 1:
            valid = _resize(read_mask(scene.motion.view_valid(i)).astype(np.float32), width, height)
            weight = torch.from_numpy(valid + (1 - valid) * cfg.inpainted_weight).float().to(device)
        views.append(Sample(i, 0.0, _to_u8(image, device), weight, f"view {i:02d}"))
    anim = _video_views(scene)
    n_video = _n_video_frames(scene, manifest, anim)
    frames, heldout = [], []
    for v in anim:
        if v >= len(cameras):
            raise UserError(f"video of view {v} has no camera in {scene.motion.cameras}", "re-run train_motion.py")
        for i in range(n_video):
            path = scene.motion.video_frame(v, i)
            if not path.is_file():
                raise UserError(f"{path} is missing (stage 1 video incomplete)", "re-run train_motion.py")
            sample = Sample(
                v, i / n_video, _to_u8(_resize(read_rgb(path), width, height), device), None, f"video {v:02d}/{i:04d}"
            )
            k = cfg.holdout_every
            (heldout if k and i % k == k // 2 else frames).append(sample)
    return TrainData(cameras, viewmats, Ks, width, height, views, frames, heldout, n_video)


def build_model(scene: ScenePaths, cfg: TrainConfig, data: TrainData, device: torch.device) -> TrainableGaussians:
    cloud = read_points(scene.motion.points)
    motion = read_npy(scene.motion.motion3d, (len(cloud), 3), made_by="train_motion.py")
    return init_gaussians(
        cloud,
        motion,
        data.n_video_frames,
        data.cameras[0].w2c,
        max_points=cfg.max_points,
        sh_degree=cfg.sh_degree,
        init_opacity=cfg.init_opacity,
        deformation=deformation_config(cfg),
        flow_scale=cfg.flow_scale,
        seed=cfg.seed,
        device=device,
    )


def deformation_config(cfg: TrainConfig) -> DeformationConfig:
    return DeformationConfig(
        cfg.grid_resolution, tuple(cfg.grid_multires), cfg.time_resolution, cfg.grid_features, cfg.mlp_width
    )


# ----------------------------------------------------------------------------- optimisation


def make_optimizer(model: TrainableGaussians, cfg: TrainConfig) -> torch.optim.Adam:
    groups = [
        {"name": "means_n", "params": [model.means_n], "lr": cfg.lr_means},
        {"name": "quats", "params": [model.quats], "lr": cfg.lr_quats},
        {"name": "log_scales", "params": [model.log_scales], "lr": cfg.lr_scales},
        {"name": "opacity_logits", "params": [model.opacity_logits], "lr": cfg.lr_opacity},
        {"name": "sh_dc", "params": [model.sh_dc], "lr": cfg.lr_sh},
        {"name": "sh_rest", "params": [model.sh_rest], "lr": cfg.lr_sh / 20},
        {"name": "grid", "params": model.field.grid_parameters(), "lr": cfg.lr_grid},
        {"name": "mlp", "params": model.field.mlp_parameters(), "lr": cfg.lr_mlp},
    ]
    return torch.optim.Adam(groups, lr=0.0, eps=1e-15)


def _exp_decay(lr: float, final_ratio: float, progress_: float) -> float:
    return lr * final_ratio ** min(max(progress_, 0.0), 1.0)


def set_learning_rates(optimizer: torch.optim.Optimizer, cfg: TrainConfig, iteration: int) -> None:
    """Means decay x0.01 over the run; the deformation x0.1 over the fine stage; it is frozen in the coarse stage."""
    fine = iteration > cfg.coarse_iterations
    fine_progress = (iteration - cfg.coarse_iterations) / max(cfg.fine_iterations, 1)
    for group in optimizer.param_groups:
        if group["name"] == "means_n":
            group["lr"] = _exp_decay(cfg.lr_means, 0.01, iteration / cfg.total_iterations)
        elif group["name"] == "grid":
            group["lr"] = _exp_decay(cfg.lr_grid, 0.1, fine_progress) if fine else 0.0
        elif group["name"] == "mlp":
            group["lr"] = _exp_decay(cfg.lr_mlp, 0.1, fine_progress) if fine else 0.0


def densify_config(cfg: TrainConfig) -> densify.DensifyConfig:
    return densify.DensifyConfig(
        start=cfg.densify_from,
        stop=int(cfg.densify_until_fraction * cfg.total_iterations) if cfg.densify else 0,
        every=cfg.densify_every,
        grow_grad2d=cfg.grow_grad2d,
        grow_scale=cfg.grow_scale,
        prune_opacity=cfg.prune_opacity,
        prune_scale=cfg.prune_scale,
        reset_every=cfg.reset_opacity_every,
        max_gaussians=cfg.max_gaussians,
    )


def render_at(
    model: TrainableGaussians | FourDGaussians,
    data: TrainData,
    cams: list[int],
    t: float,
    sh_degree: int,
    *,
    fine: bool,
    backend: str,
):
    """Render ``model`` at loop time ``t`` into the cameras ``cams`` (differentiable for a trainable model)."""
    from gaussian_renderer import render

    params = model.at(t, use_field=fine) if isinstance(model, TrainableGaussians) else model.at_time(t)
    idx = torch.tensor(cams, device=data.viewmats.device)
    return render(
        params.means,
        params.quats,
        params.scales,
        params.opacities,
        params.sh,
        data.viewmats[idx],
        data.Ks[idx],
        data.width,
        data.height,
        sh_degree=sh_degree,
        backend=backend,
    )


def draw_sample(data: TrainData, cfg: TrainConfig, fine: bool, gen: torch.Generator) -> Sample:
    """A random view at t = 0, or (fine stage, with probability video_fraction) a random video frame."""
    u = float(torch.rand((), generator=gen))
    pool = data.frames if fine and data.frames and u < cfg.video_fraction else data.views
    return pool[int(torch.randint(len(pool), (), generator=gen))]


# ----------------------------------------------------------------------------- checkpoints


def _config_key(cfg: TrainConfig) -> dict:
    return {k: v for k, v in cfg.to_dict().items() if k not in RUN_ONLY_FIELDS}


def save_checkpoint(
    folder: Path, model: TrainableGaussians, optimizer, dstate: dict, gen: torch.Generator, meta: dict
) -> Path:
    """Write iter_NNNNNN.safetensors then its JSON (the commit marker); keep the last two; return the JSON path."""
    from safetensors.torch import save_file

    it = int(meta["iteration"])
    tensors = {f"model.{k}": v.detach() for k, v in model.per_gaussian().items()}
    tensors["model.moving"] = model.moving.to(torch.uint8)
    tensors.update({f"field.{k}": v.detach() for k, v in model.field.state_dict().items()})
    steps = {}
    for group in optimizer.param_groups:
        for j, p in enumerate(group["params"]):
            state = optimizer.state.get(p)
            if state:
                tensors[f"opt.{group['name']}.{j}.exp_avg"] = state["exp_avg"]
                tensors[f"opt.{group['name']}.{j}.exp_avg_sq"] = state["exp_avg_sq"]
                steps[f"{group['name']}.{j}"] = float(state["step"])
    tensors.update({f"densify.{k}": v for k, v in dstate.items()})
    tensors["rng"] = gen.get_state()
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    stem = folder / f"iter_{it:06d}"
    with atomic_path(stem.with_suffix(".safetensors")) as tmp:
        save_file(tensors, str(tmp))
    write_json(stem.with_suffix(".json"), {**meta, "adam_steps": steps})
    for old in sorted(folder.glob("iter_*.json"))[:-CHECKPOINTS_KEPT]:
        old.unlink(missing_ok=True)
        old.with_suffix(".safetensors").unlink(missing_ok=True)
    return stem.with_suffix(".json")


def latest_checkpoint(folder: Path) -> Path | None:
    for path in sorted(folder.glob("iter_*.json"), reverse=True):
        if path.with_suffix(".safetensors").is_file():
            return path
    return None


def load_checkpoint(
    path: Path, model: TrainableGaussians, cfg: TrainConfig, gen: torch.Generator, device: torch.device
):
    """Restore model, optimizer, densification state and generator; returns (optimizer, dstate, meta)."""
    from safetensors.torch import load_file

    meta = read_json(path, "checkpoint", GAUSSIANS_CMD)
    tensors = load_file(str(path.with_suffix(".safetensors")), device=str(device))
    per = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    per["moving"] = per["moving"].bool()
    model.set_per_gaussian(per)
    model.field.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("field.")})
    optimizer = make_optimizer(model, cfg)
    for group in optimizer.param_groups:
        for j, p in enumerate(group["params"]):
            key = f"opt.{group['name']}.{j}"
            if f"{key}.exp_avg" in tensors:
                step = torch.tensor(meta["adam_steps"][f"{group['name']}.{j}"])
                optimizer.state[p] = {
                    "step": step,
                    "exp_avg": tensors[f"{key}.exp_avg"],
                    "exp_avg_sq": tensors[f"{key}.exp_avg_sq"],
                }
    dstate = {k[8:]: v for k, v in tensors.items() if k.startswith("densify.")}
    gen.set_state(tensors["rng"].cpu())
    return optimizer, dstate, meta


# ----------------------------------------------------------------------------- evaluation and previews


def evaluate(
    model: FourDGaussians, data: TrainData, samples: list[Sample], backend: str, limit: int = 40
) -> float | None:
    """Mean PSNR (dB) over up to ``limit`` evenly spaced ``samples``; None when there are none."""
    if not samples:
        return None
    picks = [samples[i] for i in np.linspace(0, len(samples) - 1, min(limit, len(samples))).round().astype(int)]
    values = []
    with torch.no_grad():
        for s in picks:
            out = render_at(model, data, [s.cam], s.t, model.sh_degree, fine=True, backend=backend)
            values.append(psnr(out.rgb, s.image[None].float() / 255))
    return float(np.mean(values))


def _mean_psnr(parts: list[tuple[float | None, int]]) -> float | None:
    """Mean of per-set PSNRs weighted by their image counts (sets without images skipped)."""
    parts = [(p, n) for p, n in parts if p is not None and n > 0]
    return sum(p * n for p, n in parts) / sum(n for _, n in parts) if parts else None


def write_preview(path: Path, model: TrainableGaussians, data: TrainData, backend: str, fine: bool) -> None:
    """Ground truth over renders of the photo's view at t = 0 and t = 0.5."""
    with torch.no_grad():
        rows = []
        for t in (0.0, 0.5):
            out = render_at(model, data, [0], t, model.sh_degree, fine=fine, backend=backend)
            gt = next((s.image for s in data.frames + data.heldout if s.cam == 0 and abs(s.t - t) < 1e-9), None)
            gt = data.views[0].image if gt is None and t == 0 else gt
            gt_img = gt.float() / 255 if gt is not None else torch.zeros_like(out.rgb[0])
            rows.append(torch.cat([gt_img, out.rgb[0].clamp(0, 1)], dim=1))
    write_png(path, torch.cat(rows, dim=0).cpu().numpy())


# ----------------------------------------------------------------------------- the loop


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


@dataclass
class RunState:
    iteration: int
    losses: list[list[float]]  # [iteration, loss, psnr]
    last_checkpoint: Path | None


def _check_finite(value: float, it: int, run: RunState) -> None:
    if math.isfinite(value):
        return
    where = (
        f"the last good checkpoint is {run.last_checkpoint}" if run.last_checkpoint else "no checkpoint was written yet"
    )
    raise NonFiniteLoss(
        f"the loss became {value} at iteration {it}; {where}",
        "lower the learning rates (e.g. --lr_means, --lr_grid) and re-run: it resumes from that checkpoint",
    )


def train_step(
    model, optimizer, dstate, dcfg, data: TrainData, cfg: TrainConfig, gen, it: int, backend: str, run: RunState
):
    """One iteration: draw an image, render, loss, backward, densification statistics, Adam, refinement.

    Returns (loss value, render, target). The loss value is the one host sync of the step; it is checked
    for NaN/inf before any parameter changes.
    """
    fine = it > cfg.coarse_iterations and cfg.flow_scale > 0
    set_learning_rates(optimizer, cfg, it)
    sample = draw_sample(data, cfg, fine, gen)
    out = render_at(model, data, [sample.cam], sample.t, model.sh_degree, fine=fine, backend=backend)
    target = sample.image[None].float() / 255
    weight = sample.weight[None] if sample.weight is not None else None
    loss = photometric_loss(out.rgb, target, cfg.lambda_dssim, weight)
    if fine:
        loss = loss + model.field.regularization(cfg.plane_tv_weight, cfg.time_smoothness_weight)
    value = float(loss.detach())
    _check_finite(value, it, run)
    loss.backward()
    with torch.no_grad():
        if dcfg.start <= it < dcfg.stop:
            densify.update_state(dstate, out, model.rendered_rows(), data.width, data.height)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        densify.step(model, optimizer, dstate, dcfg, it, gen)
    return value, out, target


def train_loop(
    model,
    optimizer,
    dstate,
    data: TrainData,
    cfg: TrainConfig,
    gen,
    run: RunState,
    out_dir: Path,
    meta: dict,
    backend: str,
) -> bool:
    """Iterate from ``run.iteration`` to the end; returns False when stopped early by ``stop_after``."""
    dcfg = densify_config(cfg)
    bar = _Progress(cfg.total_iterations, run.iteration)
    started, ema = run.iteration, None
    try:
        for it in range(run.iteration + 1, cfg.total_iterations + 1):
            value, out, target = train_step(model, optimizer, dstate, dcfg, data, cfg, gen, it, backend, run)
            ema = value if ema is None else 0.9 * ema + 0.1 * value
            run.iteration = it
            fine = it > cfg.coarse_iterations and cfg.flow_scale > 0
            if it % cfg.log_every == 0 or it == cfg.total_iterations:
                p = psnr(out.rgb, target)
                run.losses.append([it, round(ema, 6), round(p, 3)])
                bar.update(it, f"{'fine' if fine else 'coarse'} loss {ema:.4f} PSNR {p:.2f} dB n={len(model)}")
            if cfg.preview_every and it % cfg.preview_every == 0:
                write_preview(out_dir / "previews" / f"iter_{it:06d}.png", model, data, backend, fine)
            stop = bool(cfg.stop_after) and it - started >= cfg.stop_after
            if it % cfg.checkpoint_every == 0 or it == cfg.coarse_iterations or stop:
                ckpt_meta = {**meta, "iteration": it, "losses": run.losses}
                run.last_checkpoint = save_checkpoint(out_dir / "checkpoints", model, optimizer, dstate, gen, ckpt_meta)
                hold("gaussians:checkpoint")
            if stop:
                return False
    finally:
        bar.close()
    return True


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked but CUDA is not available", "use --device cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _resume_or_init(
    scene: ScenePaths, cfg: TrainConfig, model: TrainableGaussians, device, gen, meta: dict, fresh: bool
):
    folder = scene.gaussians.checkpoints_dir
    ckpt = None if fresh else latest_checkpoint(folder)
    if ckpt is not None:
        saved = read_json(ckpt, "checkpoint", GAUSSIANS_CMD)
        if saved.get("config_key") == meta["config_key"] and saved.get("motion_manifest") == meta["motion_manifest"]:
            optimizer, dstate, saved = load_checkpoint(ckpt, model, cfg, gen, device)
            info(f"resuming from {ckpt} (iteration {saved['iteration']})")
            return model, optimizer, dstate, RunState(int(saved["iteration"]), saved.get("losses", []), ckpt)
        warn(f"ignoring {ckpt}: it was made with another config or other stage-1 outputs; starting afresh")
    for old in folder.glob("iter_*"):
        old.unlink()
    return model, make_optimizer(model, cfg), densify.initialize_state(len(model), device), RunState(0, [], None)


def train(scene: ScenePaths, cfg: TrainConfig, fresh: bool = False) -> dict | None:
    """Run the whole stage; returns the metrics, or None when stopped early (``stop_after``)."""
    device = resolve_device(cfg.device)
    backend = "gsplat" if device.type == "cuda" else "torch"
    torch.manual_seed(cfg.seed)
    data = load_data(scene, cfg, device)
    check_writable(scene.root)
    model = build_model(scene, cfg, data, device)  # reads the rest of stage 1: a bad file fails before any write
    paths = scene.gaussians
    run_info = StageRun(scene, "gaussians", cfg.to_dict(), inputs=[scene.motion.dir, scene.manifest("motion")])
    run_info.invalidate()
    remove_stale_temps(paths.dir)  # half-written checkpoints of a killed run
    meta = {"config_key": _config_key(cfg), "motion_manifest": file_hash(scene.manifest("motion"))}
    gen = torch.Generator().manual_seed(cfg.seed)
    paths.checkpoints_dir.mkdir(parents=True, exist_ok=True)
    write_json(paths.config, cfg.to_dict())
    model, optimizer, dstate, run = _resume_or_init(scene, cfg, model, device, gen, meta, fresh)
    with run_info.step("train"):
        finished = train_loop(model, optimizer, dstate, data, cfg, gen, run, paths.dir, meta, backend)
    if not finished:
        info(f"stopped after iteration {run.iteration} (--stop_after); re-run to resume from {run.last_checkpoint}")
        return None
    with run_info.step("save"):
        final = model.export()
        final.cameras = data.cameras
        save_trained(paths, run.iteration, final)
        for old in paths.point_cloud_dir.glob("iteration_*"):  # a model of an older run must not shadow this one
            if old.name != f"iteration_{run.iteration}":
                shutil.rmtree(old, ignore_errors=True)
    with run_info.step("evaluate"):
        k = cfg.eval_max_images
        views, frames = evaluate(final, data, data.views, backend, k), evaluate(final, data, data.frames, backend, k)
        metrics = {
            "psnr_train": _mean_psnr([(views, min(k, len(data.views))), (frames, min(k, len(data.frames)))]),
            "psnr_views": views,
            "psnr_video_train": frames,
            "psnr_heldout": evaluate(final, data, data.heldout, backend, k),
            "n_gaussians": len(final.canonical),
            "n_moving": int(final.moving_idx.numel()),
            "iterations": run.iteration,
            "resolution": [data.width, data.height],
            "n_video_frames": data.n_video_frames,
            "n_frames": final.n_frames,
            "loss_curve": run.losses,
        }
    write_json(paths.metrics, metrics)
    run_info.info.update({k: v for k, v in metrics.items() if k != "loss_curve"})
    run_info.finish(
        outputs=[paths.point_cloud_dir / f"iteration_{run.iteration}", paths.config, paths.metrics, paths.cameras]
    )
    return metrics


def config_of_scene(scene: ScenePaths) -> TrainConfig | None:
    """The resolved config saved by the last run (safe loader), or None."""
    path = scene.gaussians.config
    return config_from_dict(read_json(path, "training config", GAUSSIANS_CMD)) if path.is_file() else None
