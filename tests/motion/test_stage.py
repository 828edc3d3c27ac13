"""motion/stage.py and motion/outputs.py through train_motion.py, end to end on tiny scenes: views, flows, 3D
motion, videos, the manifest, the split between make_views and make_motion, bad input, real scenes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import motion.stage
import train_motion
from annotation.procedural import save_scene
from motion.config import FitConfig, MotionConfig, VideoConfig, video_view_indices
from motion.outputs import read_views
from scene.cameras import image_size
from scene.io import read_cameras, read_labels, read_mask, read_npy, read_points, read_rgb, to_uint8
from scene.manifest import read_manifest, require_stage
from scene.paths import ScenePaths
from utils.cli import run_main
from utils.config import validate, with_overrides
from utils.errors import UserError


def prepare(folder: Path, toy) -> Path:
    """A scene folder with the toy photo + annotation, through generate_mask."""
    from scripts.generate_mask import main as generate_mask

    save_scene(toy, folder)
    assert generate_mask(["--input_dir", str(folder)]) == 0
    return folder


def run(*args: str) -> int:
    return run_main(train_motion.main, [*args, "--device", "cpu"])


@pytest.fixture
def scene_dir(tmp_path, toy) -> Path:
    return prepare(tmp_path / "scene", toy)


def test_end_to_end_outputs(scene_dir, toy):
    assert run("--input_dir", str(scene_dir), "--n_views", "5") == 0
    scene = ScenePaths(scene_dir)
    out = scene.motion
    h, w = toy.image.shape[:2]
    photo = to_uint8(read_rgb(scene.photo))
    depth = read_npy(out.depth, (h, w))
    assert depth.min() > 0 and read_rgb(out.depth_preview).shape == (h, w, 3)
    cams = read_cameras(out.cameras)
    assert len(cams) == 5 and np.array_equal(cams[0].w2c, np.eye(4)) and (cams[0].width, cams[0].height) == (w, h)
    for i in range(5):
        image = to_uint8(read_rgb(out.view_image(i)))
        valid = read_mask(out.view_valid(i))
        assert image.shape == (h, w, 3) and read_npy(out.view_depth(i), (h, w)).min() > 0
        assert read_labels(out.view_regions(i)).shape == (h, w) and valid.shape == (h, w)
    assert np.array_equal(to_uint8(read_rgb(out.view_image(0))), photo)
    assert read_mask(out.view_valid(0)).all() and np.array_equal(read_labels(out.view_regions(0)), toy.regions)
    cloud = read_points(out.points)
    manifest = require_stage(scene, "motion")
    holes = manifest["info"]["views"]["holes"]
    assert len(cloud) == h * w + sum(holes) > h * w  # the photo's points, then the inpainted ones
    assert [int((cloud.view == i).sum()) for i in range(1, 5)] == holes[1:]
    assert np.array_equal(cloud.view[: h * w], np.zeros(h * w)) and set(np.unique(cloud.view[h * w :])) <= {1, 2, 3, 4}
    assert np.array_equal(cloud.rgb[: h * w], photo.reshape(-1, 3))
    assert np.array_equal(cloud.region[: h * w], toy.regions.reshape(-1))
    np.testing.assert_allclose(cloud.xyz[: h * w, 2], depth.reshape(-1), rtol=1e-6)
    assert read_rgb(out.views_sheet).shape[2] == 3
    assert manifest["info"]["views"]["points"] == len(cloud) and manifest["info"]["depth"]["method"] == "prior"
    assert {"depth", "views", "write views", "total"} <= set(manifest["timings_s"])
    assert not (scene_dir / ".motion.partial").exists()


def test_make_motion_runs_inside_the_staged_folder(scene_dir, monkeypatch):
    calls = []

    def make_motion(out, views, config, device, run_, flow_net=None):
        calls.append(out.dir)
        assert out.dir.name == ".motion.partial" and out.view_image(1).is_file() and out.points.is_file()
        photo = views.photo
        assert len(views.views) == len(views.cameras) == 2 and photo.image.shape == (*photo.depth.shape, 3)
        assert len(views.cloud) == int(np.prod(photo.depth.shape)) + views.views[1].info["holes"]
        assert read_manifest(ScenePaths(scene_dir), "motion") is None  # written only after the swap

    monkeypatch.setattr(motion.stage, "make_motion", make_motion)
    assert run("--input_dir", str(scene_dir), "--n_views", "2") == 0
    assert len(calls) == 1 and (scene_dir / "motion" / "views" / "01.png").is_file()


def test_rerun_replaces_outputs(scene_dir):
    assert run("--input_dir", str(scene_dir), "--n_views", "3") == 0
    assert run("--input_dir", str(scene_dir), "--n_views", "2") == 0
    assert not (scene_dir / "motion" / "views" / "02.png").exists()
    assert len(read_cameras(scene_dir / "motion" / "cameras.json")) == 2


def test_resolution_option(scene_dir):
    assert run("--input_dir", str(scene_dir), "--n_views", "2", "--resolution", "48") == 0
    assert read_npy(scene_dir / "motion" / "depth.npy").shape == (32, 48)
    assert run("--input_dir", str(scene_dir), "--n_views", "2", "--resolution", "40x30") == 0
    assert read_labels(scene_dir / "motion" / "views" / "01_regions.png").shape == (30, 40)
    assert image_size("4000", 96, 64) == (96, 64)  # never upscaled


def one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    return err


def test_missing_mask_stage_names_the_command(tmp_path, toy, capsys):
    folder = save_scene(toy, tmp_path / "raw")
    err = one_line_error(capsys, run("--input_dir", str(folder)))
    assert "generate_mask.py" in err and str(folder) in err


def test_bad_options_are_one_line(scene_dir, capsys, tmp_path):
    missing = tmp_path / "ckpts" / "no-depth-model"
    err = one_line_error(capsys, run("--input_dir", str(scene_dir), "--depth_model", str(missing)))
    assert "no-depth-model does not exist" in err
    err = one_line_error(capsys, run("--input_dir", str(scene_dir), "--inpaint", "model"))
    assert "--inpaint_model" in err
    err = one_line_error(capsys, run("--input_dir", str(scene_dir), "--resolution", "big"))
    assert "--resolution" in err
    err = one_line_error(capsys, run("--input_dir", str(scene_dir), "--n_views", "40"))
    assert "--n_views" in err
    if not torch.cuda.is_available():
        err = one_line_error(capsys, run_main(train_motion.main, ["--input_dir", str(scene_dir), "--device", "cuda"]))
        assert "CUDA" in err


def test_gpu_out_of_memory_suggests_resolution(scene_dir, capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(motion.stage, "make_views", boom)
    err = one_line_error(capsys, run("--input_dir", str(scene_dir)))
    assert "--resolution" in err and "GPU memory" in err


@pytest.mark.parametrize("mode", ["RGBA", "I;16"])
def test_unusual_photo_modes_are_converted(tmp_path, toy, mode):
    folder = save_scene(toy, tmp_path / "scene")
    if mode == "RGBA":
        rgba = np.concatenate([toy.image, np.full((*toy.image.shape[:2], 1), 200, np.uint8)], 2)
        Image.fromarray(rgba, "RGBA").save(folder / "image.png")
    else:
        grey = (toy.image.mean(2) * 257).astype(np.uint16)
        Image.fromarray(grey).save(folder / "image.png")
    from scripts.generate_mask import main as generate_mask

    assert generate_mask(["--input_dir", str(folder)]) == 0
    assert run("--input_dir", str(folder), "--n_views", "2") == 0
    assert to_uint8(read_rgb(folder / "motion" / "views" / "00.png")).shape == toy.image.shape


def test_learned_backends_through_the_cli(scene_dir, tmp_path, monkeypatch):
    from tests.thirdparty.test_learned_backends import make_tiny_depth_model, make_tiny_inpaint_pipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    depth_model = make_tiny_depth_model(tmp_path / "ckpts" / "tiny-dpt")
    inpaint_model = make_tiny_inpaint_pipeline(tmp_path / "ckpts" / "tiny-sd")
    args = ["--input_dir", str(scene_dir), "--n_views", "2", "--depth_model", str(depth_model)]
    args += ["--inpaint_model", str(inpaint_model), "--inpaint_steps", "1", "--inpaint_size", "32"]
    assert run(*args) == 0
    info = read_manifest(ScenePaths(scene_dir), "motion")["info"]
    assert info["depth"]["method"] == f"model:{depth_model}" and info["views"]["inpaint"] == f"model:{inpaint_model}"


@pytest.mark.real
@pytest.mark.parametrize("name", ["mom_scene_0", "cine_0"])
def test_real_scenes_at_reduced_resolution(tmp_path, name):
    from scripts.generate_mask import main as generate_mask
    from tests.conftest import real_scene

    source = real_scene(name)
    folder = tmp_path / name
    folder.mkdir()
    for item in ("image.png", "image.json"):
        shutil.copy(source / item, folder / item)
    assert generate_mask(["--input_dir", str(folder)]) == 0
    assert run("--input_dir", str(folder), "--resolution", "192") == 0
    manifest = require_stage(ScenePaths(folder), "motion")
    views = manifest["info"]["views"]
    assert views["size"] == [192, 108] and len(views["hole_fraction"]) == 25
    assert max(views["hole_fraction"]) < 0.5  # the view set stays near the photo
    cloud = read_points(folder / "motion" / "points.ply")
    assert len(cloud) == views["points"] and np.isfinite(cloud.xyz).all()
    assert (cloud.region[: 192 * 108] > 0).any()  # the motion regions reach the point cloud


@pytest.mark.gpu
def test_cuda_matches_cpu(tmp_path, toy):
    clouds = {}
    for device in ("cpu", "cuda"):
        folder = prepare(tmp_path / device, toy)
        assert run_main(train_motion.main, ["--input_dir", str(folder), "--n_views", "5", "--device", device]) == 0
        clouds[device] = read_points(folder / "motion" / "points.ply")
    cpu, gpu = clouds["cpu"], clouds["cuda"]
    h, w = toy.image.shape[:2]
    np.testing.assert_allclose(gpu.xyz[: h * w], cpu.xyz[: h * w], rtol=1e-5, atol=1e-5)
    assert abs(len(gpu) - len(cpu)) <= 0.01 * len(cpu)  # float rounding may flip a few z-buffer ties


# ----------------------------------------------------------------------------- flows, 3D motion, video


@pytest.fixture(scope="module")
def finished(tmp_path_factory, toy):
    """generate_mask + train_motion (3 views, 6 frames, 10 steps, videos of views 0 and 2)."""
    import train_motion
    from annotation.procedural import save_scene
    from scripts.generate_mask import main as generate_mask

    previous = torch.get_num_threads()
    folder = save_scene(toy, tmp_path_factory.mktemp("part2") / "scene")
    assert generate_mask(["--input_dir", str(folder)]) == 0
    argv = ["--input_dir", str(folder), "--n_views", "3", "--n_frames", "6", "--train_iteration", "10"]
    assert train_motion.main([*argv, "--video_views", "0,2", "--threads", "1"]) == 0
    torch.set_num_threads(previous)
    return ScenePaths(folder)


def test_outputs_and_shapes(finished):
    m = finished.motion
    h, w = read_npy(m.depth).shape
    cloud = read_points(m.points)
    for v in range(3):
        flow = read_npy(m.flow(v), (h, w, 2))
        regions = read_labels(m.view_regions(v))
        assert not flow[regions == 0].any()  # zero outside the moving regions
        assert m.flow_preview(v).is_file()
    motion = read_npy(m.motion3d, (len(cloud), 3))
    assert not motion[cloud.region == 0].any()  # static points stay fixed
    assert (np.abs(motion[cloud.region > 0]).sum(1) > 0).mean() > 0.9  # the regions with hints move
    for v in (0, 2):
        assert sorted(p.name for p in (m.video_dir / f"{v:02d}").iterdir()) == [f"{i:04d}.png" for i in range(6)]
        assert m.video_mp4(v).stat().st_size > 0
    assert not (m.video_dir / "01").exists()
    # Frame 0 is the view itself, bit for bit.
    np.testing.assert_array_equal(read_rgb(m.video_frame(0, 0)), read_rgb(m.view_image(0)))
    np.testing.assert_array_equal(read_rgb(m.video_frame(2, 0)), read_rgb(m.view_image(2)))
    report = json.loads(m.motion_loss.read_text())
    assert report["steps"][-1] == 10 and len(report["loss"]) == len(report["steps"])
    assert report["epe_px_per_frame"] < report["epe_zero_motion_px_per_frame"]
    assert set(report["epe_per_region"]) == {"1", "2"} and len(report["epe_per_view"]) == 3
    manifest = json.loads(finished.manifest("motion").read_text())
    assert {"flows", "motion3d", "video"} <= set(manifest["timings_s"])
    assert manifest["config"]["video"]["n_frames"] == 6 and manifest["info"]["motion"]["moving_regions"] == [1, 2]


def test_views_read_back_match_the_files(finished):
    views = read_views(finished, finished.motion)
    assert len(views.cameras) == 3 and len(views.views) == 3
    assert views.cloud.xyz.shape == (len(views.cloud.region), 3)
    assert views.photo.image.shape == (*views.photo.depth.shape, 3) and views.photo.valid.all()


def test_missing_part1_outputs_name_the_command(tmp_path):
    scene = ScenePaths(tmp_path)
    with pytest.raises(UserError, match=r"cameras.json is missing.*train_motion.py --input_dir"):
        read_views(scene, scene.motion)


def test_bad_options():
    for bad, name in (
        ({"speed": 0.0}, "--speed"),
        ({"n_frames": 1}, "--n_frames"),
        ({"video_views": "0,30"}, "--video_views"),
    ):
        with pytest.raises(UserError, match=name):
            validate(with_overrides(MotionConfig(), bad))
    with pytest.raises(UserError, match="--video_views"):
        video_view_indices("front", 25)
    assert video_view_indices("all", 3) == [0, 1, 2] and video_view_indices(" 2, 0 ,2", 3) == [0, 2]


def test_no_usable_hint_gives_a_still_video(finished, tmp_path, capsys):
    from dataclasses import replace

    from motion.stage import make_motion
    from scene.paths import MotionPaths

    views = read_views(finished, finished.motion)
    views.hints = [replace(h, end=h.start) for h in views.hints]  # every hint zero-length
    out = MotionPaths(tmp_path / "motion")
    config = MotionConfig(fit=FitConfig(train_iteration=2), video=VideoConfig(n_frames=3))
    result = make_motion(out, views, config, "cpu")
    assert result["moving_regions"] == [] and "no usable motion hint" in capsys.readouterr().err
    assert not read_npy(out.motion3d).any()
    for i in range(3):
        np.testing.assert_array_equal(read_rgb(out.video_frame(0, i)), read_rgb(finished.motion.view_image(0)))


def test_flow_weights_option():
    assert MotionConfig().flow.flow_weights == "photo"
    with pytest.raises(UserError, match="--flow_weights"):
        with_overrides(MotionConfig(), {"flow_weights": "both"})


def test_depth_auto_finds_the_default_model_in_ckpts(scene_dir, tmp_path, monkeypatch, capsys):
    """--depth auto with no --depth_model: a copy of the default model in ckpts/ is used, and the manifest says so."""
    from tests.thirdparty.test_learned_backends import make_tiny_depth_model
    from thirdparty.depth_transformers import DEFAULT_DEPTH_FOLDER

    monkeypatch.setenv("MOM_CKPTS", str(tmp_path / "ckpts"))
    model = make_tiny_depth_model(tmp_path / "ckpts" / DEFAULT_DEPTH_FOLDER)  # stands in for the real weights
    assert run("--input_dir", str(scene_dir), "--n_views", "2") == 0
    info = read_manifest(ScenePaths(scene_dir), "motion")["info"]
    assert info["depth"]["method"] == f"model:{model}" and info["depth"]["found"] == "ckpts"
    assert not any("prior" in w for w in info.get("warnings", []))
    assert "depth: model:" in capsys.readouterr().err


def test_depth_auto_offline_without_a_model_takes_the_prior_and_says_why(scene_dir, capsys):
    assert run("--input_dir", str(scene_dir), "--n_views", "2") == 0  # the test session is offline, ckpts empty
    info = read_manifest(ScenePaths(scene_dir), "motion")["info"]
    assert info["depth"]["method"] == "prior" and "HF_HUB_OFFLINE is set" in info["depth"]["no_model"]
    assert any("HF_HUB_OFFLINE" in w for w in info["warnings"])
    err = capsys.readouterr().err
    assert err.count("Depth-Anything-V2-Small-hf is neither in") == 1 and "ckpts/depth-anything-v2-small" in err
