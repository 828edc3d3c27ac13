"""Stage 2 (train_4DGS.py): stage 1's point cloud, views, 3D motion and looping video -> 4D Gaussians that loop.

:func:`run` reads all of stage 1 before writing anything, trains (gaussians4d/trainer.py; a re-run
resumes from the last checkpoint), saves the model (``gaussians/point_cloud/iteration_N/``), evaluates
it and writes ``manifests/gaussians.json`` last. Formats: docs/scene_format.md.
"""

from __future__ import annotations

import shutil
import time

import torch

from gaussians4d.config import TrainConfig, preset
from gaussians4d.data import TrainData, load_data
from gaussians4d.model import TrainableGaussians, init_gaussians, save_trained
from gaussians4d.trainer import Trainer
from scene.io import read_npy, read_points, remove_stale_temps, write_json, write_png
from scene.lock import scene_lock
from scene.manifest import StageRun, check_writable, file_hash
from scene.paths import ScenePaths
from utils.config import command_line, to_dict
from utils.console import info
from utils.device import resolve_device
from utils.errors import UserError


def build_model(scene: ScenePaths, cfg: TrainConfig, data: TrainData, device: torch.device) -> TrainableGaussians:
    """Initial Gaussians from stage 1's point cloud and 3D motion."""
    cloud = read_points(scene.motion.points)
    motion = read_npy(scene.motion.motion3d, (len(cloud), 3), made_by="train_motion.py")
    return init_gaussians(
        cloud,
        motion,
        data.schedule,
        data.cameras[0],
        max_points=cfg.data.max_points,
        sh_degree=cfg.model.sh_degree,
        init_opacity=cfg.model.init_opacity,
        deformation=cfg.model.deformation,
        flow_scale=cfg.model.flow_scale,
        seed=cfg.seed,
        device=device,
    )


def run(config: TrainConfig) -> dict | None:
    """Train, save and evaluate; returns the metrics, or None when stopped early (``--stop_after``)."""
    scene = ScenePaths(config.input_dir)
    if not scene.root.is_dir():
        raise UserError(f"{scene.root} is not a folder", "give the scene folder with --input_dir")
    with scene_lock(scene.root, f"train_4DGS.py --input_dir {scene.root}"):
        return _run(scene, config)


def _run(scene: ScenePaths, config: TrainConfig) -> dict | None:
    started = time.perf_counter()
    device = resolve_device(config.run.device)
    torch.manual_seed(config.seed)
    data = load_data(scene, config, device)
    check_writable(scene.root)
    from utils.space import gaussians_bytes, require_space

    require_space(scene.root, gaussians_bytes(config.densify.max_gaussians), "train_4DGS.py")
    model = build_model(scene, config, data, device)  # reads the rest of stage 1: a bad file fails before any write
    paths = scene.gaussians
    rerun = command_line("train_4DGS.py", config, preset(config.preset), always=("preset",))
    loaded = time.perf_counter()
    manifest = StageRun(scene, "gaussians", config, [scene.motion.dir, scene.manifest("motion")], rerun, started)
    manifest.timings["load"] = loaded - started  # stage 1's images and point cloud, the initial Gaussians
    manifest.invalidate()
    remove_stale_temps(paths.dir)  # half-written checkpoints of a killed run
    meta = {"config_key": config.resume_key(), "motion_manifest": file_hash(scene.manifest("motion"))}
    paths.checkpoints_dir.mkdir(parents=True, exist_ok=True)
    write_json(paths.config, {k: v for k, v in to_dict(config).items() if k not in ("input_dir", "fresh")})
    trainer = Trainer(config, data, model, paths.dir, meta)
    trainer.resume(config.fresh)
    with manifest.step("train"):
        finished = trainer.train()
    if not finished:
        state = trainer.state
        info(f"stopped after iteration {state.iteration} (--stop_after); re-run to resume from {state.last_checkpoint}")
        return None
    iteration = trainer.state.iteration
    with manifest.step("save"):
        final = model.export()
        final.cameras = data.cameras
        save_trained(paths, iteration, final)
        for old in paths.point_cloud_dir.glob("iteration_*"):  # a model of an older run must not shadow this one
            if old.name != f"iteration_{iteration}":
                shutil.rmtree(old, ignore_errors=True)
    with manifest.step("evaluate"):
        metrics = evaluate(trainer, final)
    write_json(paths.metrics, metrics)
    write_png(paths.training_plot, training_plot(metrics, config.optim.coarse_iterations))
    manifest.info.update({k: v for k, v in metrics.items() if k != "loss_curve"})
    manifest.finish(
        outputs=[paths.iteration_dir(iteration), paths.config, paths.metrics, paths.cameras, paths.training_plot]
    )
    return metrics


def evaluate(trainer: Trainer, final) -> dict:
    """metrics.json: PSNRs of the views, the training and the held-out video frames, counts, the loss curve."""
    data, k = trainer.data, trainer.cfg.data.eval_max_images
    views, frames = trainer.evaluate(final, data.views), trainer.evaluate(final, data.frames)
    return {
        "psnr_train": _mean_psnr([(views, min(k, len(data.views))), (frames, min(k, len(data.frames)))]),
        "psnr_views": views,
        "psnr_video_train": frames,
        "psnr_heldout": trainer.evaluate(final, data.heldout),
        "n_gaussians": len(final.canonical),
        "n_moving": int(final.moving_idx.numel()),
        "iterations": trainer.state.iteration,
        "resolution": [data.width, data.height],
        "n_video_frames": data.n_video_frames,
        "n_frames": final.n_frames,
        "loss_curve": trainer.state.losses,
    }


def training_plot(metrics: dict, coarse_iterations: int):
    """Loss (log scale) and PSNR over the iterations, the coarse/fine boundary and the held-out PSNR marked."""
    import numpy as np

    from utils.plots import BLUE, GREEN, GREY, RED, Curve, line_plot

    curve = metrics["loss_curve"] or [[0, float("nan"), float("nan")]]
    it, loss, psnr_ = ([row[k] for row in curve] for k in range(3))
    boundary = [(coarse_iterations, GREY, "fine stage ->")] if 0 < coarse_iterations < it[-1] else []
    held = metrics.get("psnr_heldout")
    marks = [(held, GREEN, f"held-out {held:.2f} dB")] if held is not None else []
    left = line_plot([Curve(it, loss, RED, "loss (smoothed)")], "train_4DGS loss", log_y=True, vlines=boundary)
    right = line_plot([Curve(it, psnr_, BLUE, "PSNR of the drawn image, dB")], "PSNR", hlines=marks, vlines=boundary)
    return np.concatenate([left, right], axis=1)


def _mean_psnr(parts: list[tuple[float | None, int]]) -> float | None:
    """Mean of per-set PSNRs weighted by their image counts (sets without images skipped)."""
    parts = [(p, n) for p, n in parts if p is not None and n > 0]
    return sum(p * n for p, n in parts) / sum(n for _, n in parts) if parts else None
