"""train_4DGS end to end on a tiny consistent stage-1 scene (tests/gaussians4d/fixture.py), on the CPU."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace

import numpy as np
import pytest
import torch

from gaussians4d.checkpoints import latest_checkpoint, load_checkpoint
from gaussians4d.config import load_config, preset
from gaussians4d.data import load_data
from gaussians4d.losses import psnr
from gaussians4d.model import load_trained
from gaussians4d.stage import build_model, run
from gaussians4d.trainer import Trainer, make_optimizer, render_at
from scene.manifest import read_manifest
from scene.paths import ScenePaths
from tests.conftest import PYTHON, ROOT
from tests.gaussians4d.fixture import make_stage1_scene
from utils.errors import UserError

W, H, N_FRAMES = 48, 32, 8
# Small enough to train in about half a minute on a shared 2-core CPU.
TINY = {
    "resolution": None,
    "max_points": 500,
    "coarse_iterations": 20,
    "fine_iterations": 20,
    "densify_from": 15,
    "densify_every": 10,
    "checkpoint_every": 10,
    "preview_every": 40,
    "log_every": 10,
    "grid_resolution": 6,
    "time_resolution": 6,
    "grid_features": 4,
    "mlp_width": 8,
    "max_gaussians": 1500,
    "lr_sh": 1e-2,
}


def tiny_config(**overrides):
    return preset("cpu", **{**TINY, **overrides})


def train(scene: ScenePaths, cfg, fresh: bool = False):
    """The whole stage on ``scene`` with ``cfg`` (gaussians4d.stage.run)."""
    return run(replace(cfg, input_dir=str(scene.root), fresh=fresh))


@pytest.fixture(scope="module")
def stage1(tmp_path_factory) -> ScenePaths:
    return make_stage1_scene(tmp_path_factory.mktemp("fourdgs") / "scene", W, H, N_FRAMES)


def _copy(scene: ScenePaths, dest) -> ScenePaths:
    shutil.copytree(scene.root, dest)
    return ScenePaths(dest)


@pytest.fixture(scope="module")
def trained(stage1, tmp_path_factory):
    scene = _copy(stage1, tmp_path_factory.mktemp("trained") / "scene")
    metrics = train(scene, tiny_config())
    return scene, metrics


def _untrained_psnr(scene: ScenePaths) -> float:
    """Mean PSNR of the initial Gaussians (before any step) over the training images."""
    cfg = tiny_config(eval_max_images=40)
    data = load_data(scene, cfg, torch.device("cpu"))
    model = build_model(scene, cfg, data, torch.device("cpu"))
    trainer = Trainer(cfg, data, model, scene.gaussians.dir, meta={})
    return trainer.evaluate(model.export(), data.views + data.frames)


def test_training_decreases_loss_and_reaches_psnr(trained):
    scene, metrics = trained
    curve = np.array(metrics["loss_curve"])  # [iteration, smoothed loss, smoothed PSNR] every 10 iterations
    assert curve[1, 1] < curve[0, 1] and curve[3, 1] < curve[2, 1], curve  # within the coarse and the fine stage
    # The targets are renders of Gaussians on EVERY pixel; the model starts from a random third of the
    # 1536 points (about 22 dB: gaps and wrong sizes) and has 40 steps to fill the gaps. 25 dB and a
    # 3 dB gain need a working optimizer, densification and motion; this setup reaches about 27.5 dB.
    start = _untrained_psnr(scene)
    assert metrics["psnr_train"] >= 25.0 and metrics["psnr_train"] > start + 3, (start, metrics["psnr_train"])
    assert metrics["psnr_heldout"] >= 25.0  # video frames never trained on, at their own loop times
    assert metrics["n_frames"] == N_FRAMES and metrics["iterations"] == 40


def test_outputs_layout_and_manifest(trained):
    scene, metrics = trained
    g = scene.gaussians
    assert g.ply(40).is_file() and g.deformation(40).is_file() and g.deformation_json(40).is_file()
    assert load_config(json.loads(g.config.read_text())) == tiny_config()  # the scene's path is not in it
    assert json.loads(g.metrics.read_text())["psnr_train"] == pytest.approx(metrics["psnr_train"])
    assert any(g.previews_dir.glob("*.png"))
    manifest = read_manifest(scene, "gaussians")
    assert manifest is not None and "point_cloud/iteration_40/point_cloud.ply" in "".join(manifest["outputs"])


def test_ply_round_trips_through_plyfile_with_standard_names(trained):
    from plyfile import PlyData

    scene, metrics = trained
    v = PlyData.read(str(scene.gaussians.ply(40)))["vertex"]
    names = [p.name for p in v.properties]
    expected = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    expected += [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
    assert names == expected  # SH degree 0: no f_rest
    assert len(v.data) == metrics["n_gaussians"]
    model = load_trained(scene)
    assert np.allclose(np.stack([v["x"], v["y"], v["z"]], 1), model.canonical.means.numpy())
    assert np.allclose(1 / (1 + np.exp(-v["opacity"])), model.canonical.opacities.numpy(), atol=1e-6)


def test_trained_model_loops_exactly_and_static_points_stay(trained):
    scene, _ = trained
    model = load_trained(scene)
    a, b = model.at_time(0.0), model.at_time(1.0)
    assert all(torch.equal(u, v) for u, v in zip(a.tensors(), b.tensors()))
    static = torch.ones(len(model.canonical), dtype=torch.bool)
    static[model.moving_idx] = False
    assert static.any() and (~static).any()
    for t in np.linspace(0, 1, 7):
        p = model.at_time(float(t))
        for u, v in zip(p.tensors(), model.canonical.tensors()):
            assert torch.equal(u[: len(static)][static], v[static])
    assert model.n_frames == N_FRAMES and model.cameras and model.cameras[0].width == W


def test_rendered_loop_has_no_seam(trained):
    """Just before t = 1 the render is (almost) the render at t = 0; a quarter cycle on (both copies displaced,
    scene/loop.py) it differs."""
    scene, _ = trained
    data = load_data(scene, tiny_config(), torch.device("cpu"))
    model = load_trained(scene)
    with torch.no_grad():
        start, end, mid = (
            render_at(model, data, [0], t, fine=True, backend="torch").rgb for t in (0.0, 1 - 1e-5, 0.25)
        )
    assert psnr(end, start) > 50.0
    assert psnr(mid, start) < psnr(end, start) - 10


def test_save_then_load_renders_identically(trained, stage1):
    scene, _ = trained
    data = load_data(scene, tiny_config(), torch.device("cpu"))
    loaded = load_trained(scene)
    # Rebuild "the model in memory" from the checkpoint of the last iteration and export it.
    cfg = tiny_config()
    model = build_model(scene, cfg, data, torch.device("cpu"))
    ckpt = latest_checkpoint(scene.gaussians.checkpoints_dir)
    load_checkpoint(ckpt, model, lambda m: make_optimizer(m, cfg.optim), torch.Generator(), torch.device("cpu"))
    memory = model.export()
    for t in (0.0, 0.4):
        with torch.no_grad():
            a = render_at(memory, data, [0, 1], t, fine=True, backend="torch").rgb
            b = render_at(loaded, data, [0, 1], t, fine=True, backend="torch").rgb
        assert torch.allclose(a, b, atol=1e-5), float((a - b).abs().max())


def test_resume_after_interruption(stage1, tmp_path):
    scene = _copy(stage1, tmp_path / "scene")
    short = {
        "coarse_iterations": 10,
        "fine_iterations": 10,
        "checkpoint_every": 100,
        "preview_every": 0,
        "densify_from": 5,
        "densify_every": 5,
        "grow_grad2d": 1e-5,
    }
    cfg = tiny_config(**short)
    assert train(scene, tiny_config(**short, stop_after=7)) is None
    ckpt = latest_checkpoint(scene.gaussians.checkpoints_dir)
    assert ckpt is not None and json.loads(ckpt.read_text())["iteration"] == 7
    assert read_manifest(scene, "gaussians") is None  # not complete
    metrics = train(scene, cfg)
    assert metrics is not None and metrics["iterations"] == 20
    assert metrics["loss_curve"][0][0] == 10  # the curve of the first run was carried over
    assert metrics["n_gaussians"] > 500  # grown at iterations 5 (before the stop) and 10 (after)
    assert read_manifest(scene, "gaussians") is not None
    # The checkpoint holds the whole state (Adam moments, densification statistics, random generator):
    # the resumed run ends exactly where an uninterrupted one does.
    straight = _copy(stage1, tmp_path / "straight")
    train(straight, cfg)
    resumed, uninterrupted = load_trained(scene), load_trained(straight)
    for a, b in zip(resumed.canonical.tensors(), uninterrupted.canonical.tensors()):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_batch_of_several_loop_times_is_one_batched_render(stage1):
    """A fine-stage batch mixing t = 0 views and video frames renders the scene at each time, in one call."""
    cfg = tiny_config(batch_size=3)
    data = load_data(stage1, cfg, torch.device("cpu"))
    model = build_model(stage1, cfg, data, torch.device("cpu"))
    trainer = Trainer(cfg, data, model, stage1.gaussians.dir, meta={})
    picks = iter([data.views[1], data.frames[2], data.frames[5]])
    data.draw = lambda *args: next(picks)  # type: ignore[method-assign]
    seen = []
    at = model.at
    model.at = lambda t, use_field=True: seen.append(t) or at(t, use_field)  # type: ignore[method-assign]
    it = cfg.optim.coarse_iterations + 1  # fine, and inside the densification window
    loss, rgb, target = trainer.step(it)
    assert seen == [[0.0, data.frames[2].t, data.frames[5].t]]
    assert rgb.shape == target.shape == (3, data.height, data.width, 3) and torch.isfinite(loss)
    torch.testing.assert_close(target[1], data.frames[2].image.float() / 255)
    count = trainer.dstate["count"]  # one update: 1 where any of the batch's images saw the Gaussian
    assert float(count[~model.moving].max()) == 1.0 and float(count.max()) <= 2.0  # a moving one has two copies


def test_batched_training_reaches_psnr(stage1, tmp_path):
    """Half the iterations at 4 images each: the batch's square-root learning-rate rule keeps the quality."""
    scene = _copy(stage1, tmp_path / "scene")
    batched = {"coarse_iterations": 10, "fine_iterations": 10, "densify_from": 8, "densify_every": 5}
    metrics = train(scene, tiny_config(batch_size=4, **batched))
    assert metrics["iterations"] == 20
    assert metrics["psnr_train"] >= 25.0 and metrics["psnr_heldout"] >= 25.0, metrics


def _poison_loss(monkeypatch, bad) -> None:
    """The training loss becomes NaN on the calls (1-based) for which ``bad(call)`` holds."""
    import gaussians4d.trainer as trainer

    real, calls = trainer.photometric_loss, {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if bad(calls["n"]) else loss

    monkeypatch.setattr(trainer, "photometric_loss", poisoned)


def test_nan_loss_names_the_last_checkpoint(stage1, tmp_path, monkeypatch):
    scene = _copy(stage1, tmp_path / "scene")
    _poison_loss(monkeypatch, lambda call: call > 6)
    with pytest.raises(UserError, match=r"iteration 7.*iter_000005\.json") as err:
        train(scene, tiny_config(coarse_iterations=10, fine_iterations=0, checkpoint_every=5, preview_every=0))
    assert "lower the learning rates" in str(err.value)
    # The loss is read one iteration late, but the checkpoint it names holds only finite parameters.
    from safetensors.torch import load_file

    saved = load_file(str(scene.gaussians.checkpoints_dir / "iter_000005.safetensors"))
    assert all(torch.isfinite(v).all() for v in saved.values() if v.is_floating_point())


def test_nan_loss_at_a_checkpoint_iteration_writes_no_checkpoint(stage1, tmp_path, monkeypatch):
    scene = _copy(stage1, tmp_path / "scene")
    _poison_loss(monkeypatch, lambda call: call == 5)
    with pytest.raises(UserError, match=r"iteration 5; no checkpoint was written yet"):
        train(scene, tiny_config(coarse_iterations=10, fine_iterations=0, checkpoint_every=5, preview_every=0))
    assert not list(scene.gaussians.checkpoints_dir.glob("iter_*"))


def test_load_trained_without_training_says_what_to_run(stage1):
    with pytest.raises(UserError, match=r"run python train_4DGS\.py --input_dir"):
        load_trained(stage1)


def _cli(*args):
    return subprocess.run(
        [PYTHON, str(ROOT / "train_4DGS.py"), *args], capture_output=True, text=True, cwd=ROOT, timeout=600
    )


def test_cli_refuses_bad_options_and_missing_stage(tmp_path, stage1):
    helped = _cli("--help")
    assert helped.returncode == 0 and "--flow_scale" in helped.stdout and "--max_gaussians" in helped.stdout
    bad = _cli("--input_dir", str(stage1.root), "--flow_scale", "-1", "--device", "cpu")
    assert bad.returncode == 2 and "flow_scale must be >= 0" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    nan = _cli("--input_dir", str(stage1.root), "--flow_scale", "nan", "--device", "cpu")
    assert nan.returncode == 2 and "finite" in nan.stderr
    (tmp_path / "empty").mkdir()
    missing = _cli("--input_dir", str(tmp_path / "empty"), "--device", "cpu")
    assert missing.returncode == 2 and "generate_mask.py" in missing.stderr and "later stages" in missing.stderr


@pytest.mark.gpu
@pytest.mark.parametrize("batch_size", [1, 4])
def test_gpu_training_matches_quality(stage1, tmp_path, batch_size):
    scene = _copy(stage1, tmp_path / "scene")
    metrics = train(scene, tiny_config(device="cuda", batch_size=batch_size))
    assert metrics["psnr_train"] >= 26.0
    model = load_trained(scene, device="cuda")
    assert model.at_time(0.5).means.is_cuda


@pytest.mark.gpu
def test_gpu_resume_with_fused_adam(stage1, tmp_path):
    """On CUDA Adam is fused (its step counts live on the GPU): a resumed run loads them and trains on."""
    scene = _copy(stage1, tmp_path / "scene")
    short = {"coarse_iterations": 10, "fine_iterations": 10, "checkpoint_every": 100, "preview_every": 0}
    assert train(scene, tiny_config(**short, device="cuda", stop_after=7)) is None
    metrics = train(scene, tiny_config(**short, device="cuda"))
    assert metrics is not None and metrics["iterations"] == 20 and metrics["psnr_train"] > 20
