"""train_motion.py part 2 end to end on a tiny procedural scene: files, shapes, defined behaviour, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from motion.stage import Part2Inputs, parse_video_views, part2_config
from scene.io import read_labels, read_npy, read_points, read_rgb
from scene.paths import ScenePaths
from utils.errors import UserError


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
    assert manifest["config"]["part2"]["n_frames"] == 6 and manifest["info"]["part2"]["moving_regions"] == [1, 2]


def test_inputs_from_files_match_the_cloud(finished):
    inputs = Part2Inputs.from_files(finished, finished.motion)
    assert len(inputs.cameras) == 3 and len(inputs.images) == 3
    assert inputs.xyz.shape == (len(inputs.point_region), 3)
    assert inputs.images[0].shape == (*inputs.depths[0].shape, 3)


def test_missing_part1_outputs_name_the_command(tmp_path):
    scene = ScenePaths(tmp_path)
    with pytest.raises(UserError, match=r"cameras.json is missing.*train_motion.py --input_dir"):
        Part2Inputs.from_files(scene, scene.motion)


def test_bad_options():
    with pytest.raises(UserError, match="--speed"):
        part2_config({"speed": 0.0})
    with pytest.raises(UserError, match="--n_frames"):
        part2_config({"n_frames": 1})
    with pytest.raises(UserError, match="--video_views"):
        parse_video_views("0,30", 25)
    with pytest.raises(UserError, match="--video_views"):
        parse_video_views("front", 25)
    assert parse_video_views("all", 3) == [0, 1, 2] and parse_video_views(" 2, 0 ,2", 3) == [0, 2]


def test_no_usable_hint_gives_a_still_video(finished, tmp_path, capsys):
    from dataclasses import replace

    from motion.stage import Part2Config, run_part2
    from scene.paths import MotionPaths

    inputs = Part2Inputs.from_files(finished, finished.motion)
    inputs.hints = [replace(h, end=h.start) for h in inputs.hints]  # every hint zero-length
    out = MotionPaths(tmp_path / "motion")
    result = run_part2(out, inputs, Part2Config(n_frames=3, train_iteration=2), "cpu")
    assert result["moving_regions"] == [] and "no usable motion hint" in capsys.readouterr().err
    assert not read_npy(out.motion3d).any()
    for i in range(3):
        np.testing.assert_array_equal(read_rgb(out.video_frame(0, i)), read_rgb(finished.motion.view_image(0)))


def test_flow_weights_option():
    assert part2_config({}).flow_weights == "photo"
    with pytest.raises(UserError, match="--flow_weights"):
        part2_config({"flow_weights": "both"})
