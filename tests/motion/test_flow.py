"""motion/flow.py: hints lifted to 3D, dense Eulerian flow per view, previews."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from motion.flow import (
    dense_flow,
    draw_flow_arrows,
    flow_to_rgb,
    hint_weights,
    lift_hints,
    view_hints,
    warn_regions_without_hints,
)
from scene.cameras import Camera, CameraBatch, unproject
from scene.io import Hint

pytestmark = pytest.mark.usefixtures("one_thread")


def pinhole(width: int = 96, height: int = 64, focal: float = 80.0, w2c: np.ndarray | None = None) -> Camera:
    K = np.array([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1.0]])
    return Camera(K, np.eye(4) if w2c is None else w2c, width, height)


def turned(yaw_deg: float, shift: tuple[float, float, float] = (0.0, 0.0, 0.0), **kw) -> Camera:
    a = math.radians(yaw_deg)
    w2c = np.eye(4)
    w2c[:3, :3] = [[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]]
    w2c[:3, 3] = shift
    return pinhole(w2c=w2c, **kw)


def two_region_scene(h: int = 64, w: int = 96, depth: float = 10.0):
    regions = np.zeros((h, w), np.int32)
    regions[5:25, 10:90] = 1
    regions[35:60, 20:70] = 2
    return np.full((h, w), depth, np.float32), regions


def test_project_views_matches_naive_projection():
    cams = [pinhole(), turned(10, (0.2, -0.1, 0.3)), turned(-15, (0.0, 0.1, -0.2), focal=120.0)]
    xyz = torch.tensor([[0.3, -0.2, 5.0], [-1.0, 0.5, 8.0], [2.0, 1.0, 20.0]])
    uv, z = CameraBatch.of(cams).project(xyz)
    assert uv.shape == (3, 3, 2) and z.shape == (3, 3)
    for v, cam in enumerate(cams):
        for p, x in enumerate(xyz.numpy().astype(np.float64)):
            c = cam.w2c[:3, :3] @ x + cam.w2c[:3, 3]
            pix = cam.K @ (c / c[2])
            np.testing.assert_allclose(uv[v, p].numpy(), pix[:2], rtol=1e-5, atol=1e-3)
            assert z[v, p].item() == pytest.approx(c[2], rel=1e-5)


def test_unproject_inverts_projection():
    cam = turned(12, (0.1, 0.2, -0.3))
    uv = torch.tensor([[0.0, 0.0], [40.5, 20.25], [95.0, 63.0]])
    z = torch.tensor([2.0, 7.5, 30.0])
    back, zz = CameraBatch.of([cam]).project(unproject(uv, z, cam))
    torch.testing.assert_close(back[0], uv, atol=1e-3, rtol=0)
    torch.testing.assert_close(zz[0], z, atol=1e-4, rtol=1e-5)


def test_lift_hints_speed_and_view0_flow_equal_depth():
    depth, regions = two_region_scene()
    cam = pinhole()
    hint = Hint((30.0, 15.0), (55.0, 20.0), 1, "hint_0")
    lifted = lift_hints([hint], depth, regions, cam, speed=1 / 50)
    assert len(lifted) == 1 and lifted.region.tolist() == [1]
    # Same depth at both ends: the 3D motion is the pixel vector scaled by depth / focal, per frame.
    np.testing.assert_allclose(lifted.motion[0], [25 / 50 * 10 / 80, 5 / 50 * 10 / 80, 0.0], atol=1e-6)
    flow = dense_flow(lifted, cam, torch.as_tensor(depth), torch.as_tensor(regions))
    # One hint drives its region with one 3D motion: at equal depth that is (end - start) / 50 everywhere.
    inside = flow[torch.as_tensor(regions) == 1]
    torch.testing.assert_close(inside, torch.tensor([[0.5, 0.1]]).expand_as(inside), atol=1e-4, rtol=0)


def test_flow_zero_outside_regions_and_regions_use_only_their_hints(capsys):
    depth, regions = two_region_scene()
    cam = pinhole()
    hints = [Hint((30.0, 15.0), (55.0, 15.0), 1, "right"), Hint((40.0, 45.0), (40.0, 25.0), 2, "up")]
    lifted = lift_hints(hints, depth, regions, cam)
    flow = dense_flow(lifted, cam, torch.as_tensor(depth), torch.as_tensor(regions)).numpy()
    assert np.all(flow[regions == 0] == 0)
    r1, r2 = flow[regions == 1], flow[regions == 2]
    assert np.all(r1[:, 0] > 0) and np.allclose(r1[:, 1], 0, atol=1e-5)
    assert np.all(r2[:, 1] < 0) and np.allclose(r2[:, 0], 0, atol=1e-5)


def test_interpolation_follows_nearest_hint_and_is_smooth():
    depth, regions = two_region_scene()
    cam = pinhole()
    hints = [Hint((15.0, 15.0), (25.0, 15.0), 1, "a"), Hint((85.0, 15.0), (85.0, 5.0), 1, "b")]
    flow = dense_flow(lift_hints(hints, depth, regions, cam), cam, torch.as_tensor(depth), torch.as_tensor(regions))
    left, right = flow[15, 15].numpy(), flow[15, 85].numpy()
    assert left[0] > 0.15 and abs(left[1]) < 0.05  # near hint "a": rightwards
    assert right[1] < -0.15 and abs(right[0]) < 0.05  # near hint "b": upwards
    row = flow[15, 10:90].numpy()
    assert np.abs(np.diff(row, axis=0)).max() < 0.02  # smooth: no jump between neighbouring pixels


def test_hint_weights_are_normalised_and_never_nan():
    pixels = torch.tensor([[0.0, 0.0], [1e4, 1e4]])
    hints = torch.tensor([[1.0, 0.0], [50.0, 0.0]])
    w = hint_weights(pixels, hints, sigma=2.0)
    torch.testing.assert_close(w.sum(1), torch.ones(2))
    assert torch.isfinite(w).all() and w[0, 0] > 0.99


def test_flows_of_two_views_agree_with_one_3d_motion():
    """With one hint the field is one 3D motion: each view's flow is its projection (mutually consistent)."""
    depth, regions = two_region_scene()
    cam0, cam1 = pinhole(), turned(8, (0.3, 0.0, 0.1))
    lifted = lift_hints([Hint((30.0, 15.0), (50.0, 10.0), 1, "h")], depth, regions, cam0)
    world = unproject(torch.tensor([[40.0, 12.0]]), torch.tensor([10.0]), cam0)
    uv1, z1 = CameraBatch.of([cam1]).project(world)
    px = uv1[0, 0].round().long()
    depth1 = np.full_like(depth, float(z1[0, 0]))
    regions1 = np.zeros_like(regions)
    regions1[px[1] - 3 : px[1] + 4, px[0] - 3 : px[0] + 4] = 1
    flow1 = dense_flow(lifted, cam1, torch.as_tensor(depth1), torch.as_tensor(regions1))
    at = unproject(px[None].float(), z1[0], cam1)
    expected = CameraBatch.of([cam1]).project(at + torch.as_tensor(lifted.motion[0], dtype=torch.float32))[0]
    torch.testing.assert_close(flow1[px[1], px[0]], expected[0, 0] - px.float(), atol=1e-3, rtol=0)


def test_bad_hints_warn_and_have_defined_behaviour(capsys):
    depth, regions = two_region_scene()
    cam = pinhole()
    hints = [
        Hint((30.0, 15.0), (30.2, 15.1), 1, "tiny"),  # zero length: dropped
        Hint((80.0, 15.0), (140.0, 15.0), 1, "outward"),  # leaves the image: kept, depth clipped
        Hint((5.0, 2.0), (9.0, 2.0), 0, "stray"),  # in no region: joins the nearest one (1)
    ]
    lifted = lift_hints(hints, depth, regions, cam)
    err = capsys.readouterr().err
    assert "'tiny' is shorter" in err and "'outward' points out of the image" in err and "'stray'" in err
    assert lifted.labels == ["outward", "stray"] and lifted.region.tolist() == [1, 1]
    np.testing.assert_allclose(lifted.motion[0], [60 / 50 * 10 / 80, 0, 0], atol=1e-6)  # direction kept
    moving = warn_regions_without_hints(regions, lifted)
    assert moving == [1] and "motion region 2 has no hint; it stays static" in capsys.readouterr().err


def test_hint_end_outside_its_region_uses_start_depth():
    depth, regions = two_region_scene()
    depth[regions == 0] = 2.0  # a near object right next to the region
    cam = pinhole()
    lifted = lift_hints([Hint((80.0, 15.0), (95.0, 15.0), 1, "overshoot")], depth, regions, cam)
    assert lifted.motion[0, 2] == pytest.approx(0.0, abs=1e-6)  # no jump in depth onto the near object


def test_bad_arguments_raise():
    depth, regions = two_region_scene()
    with pytest.raises(ValueError, match="same"):
        lift_hints([], depth, regions[:10], pinhole())
    with pytest.raises(ValueError, match="speed"):
        lift_hints([], depth, regions, pinhole(), speed=0.0)
    lifted = lift_hints([Hint((30.0, 15.0), (55.0, 20.0), 1)], depth, regions, pinhole())
    with pytest.raises(ValueError, match="sigma_frac"):
        dense_flow(lifted, pinhole(), torch.as_tensor(depth), torch.as_tensor(regions), sigma_frac=0.0)
    with pytest.raises(ValueError, match="depth and regions"):
        dense_flow(lifted, pinhole(), torch.as_tensor(depth[:5]), torch.as_tensor(regions))
    with pytest.raises(ValueError, match="non-empty"):
        CameraBatch.of([])


def test_no_hints_gives_zero_flow():
    depth, regions = two_region_scene()
    lifted = lift_hints([], depth, regions, pinhole())
    flow = dense_flow(lifted, pinhole(), torch.as_tensor(depth), torch.as_tensor(regions))
    assert flow.shape == (64, 96, 2) and not flow.any()


def test_previews():
    flow = np.zeros((32, 48, 2), np.float32)
    flow[8:24, 8:40] = [1.0, 0.0]
    rgb = flow_to_rgb(flow)
    assert rgb.shape == (32, 48, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 0] == 255).all()  # still = white
    assert rgb[16, 16, 0] == 255 and rgb[16, 16, 1] < 50  # rightwards = red, saturated
    image = np.zeros((32, 48, 3), np.uint8)
    arrows = draw_flow_arrows(image, flow, [Hint((10.0, 10.0), (20.0, 10.0), 1)], step=8)
    assert arrows.shape == image.shape and arrows.any() and not image.any()
    with pytest.raises(ValueError, match="flow must be"):
        flow_to_rgb(flow[..., 0])


def test_photo_weights_make_views_consistent_with_several_hints():
    """Weights measured in the photo: every view's flow is the projection of one 3D motion field."""
    depth, regions = two_region_scene()
    cam0, cam1 = pinhole(), turned(8, (0.3, 0.0, 0.1))
    hints = [Hint((15.0, 15.0), (25.0, 15.0), 1, "a"), Hint((85.0, 15.0), (85.0, 5.0), 1, "b")]
    lifted = lift_hints(hints, depth, regions, cam0)
    # A view-1 pixel on region 1's plane; its 3D point seen from the photo.
    px = torch.tensor([[50.0, 20.0]])
    plane_z = 10.0
    world = unproject(px, torch.tensor([plane_z]), cam1)  # any depth works: we only need a 3D point
    depth1 = np.full_like(depth, plane_z)
    regions1 = np.ones_like(regions)
    flow1 = dense_flow(lifted, cam1, torch.as_tensor(depth1), torch.as_tensor(regions1), weights_camera=cam0)
    # The 3D field: weights from the point's photo pixel, as view 0 computes them.
    at0 = CameraBatch.of([cam0]).project(world)[0][0]
    hint0 = CameraBatch.of([cam0]).project(torch.as_tensor(lifted.start, dtype=torch.float32))[0][0]
    motion = hint_weights(at0, hint0, 0.15 * math.hypot(64, 96)).double() @ torch.as_tensor(lifted.motion)
    motion = motion.float()
    expected = CameraBatch.of([cam1]).project(world + motion)[0][0] - px
    torch.testing.assert_close(flow1[20, 50], expected[0], atol=1e-3, rtol=0)
    own = dense_flow(lifted, cam1, torch.as_tensor(depth1), torch.as_tensor(regions1))
    assert float((own[20, 50] - flow1[20, 50]).norm()) > 1e-3  # view weights differ: not one 3D field


# ----------------------------------------------------------------------------- the learned flow (--flow model)

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "sceneflow" / "random_netG_fp16.safetensors"


def test_view_hints_project_the_lifted_arrows():
    cam = pinhole()
    depth = np.full((64, 96), 10.0, np.float32)
    regions = np.ones((64, 96), np.int32)
    lifted = lift_hints([Hint((20.0, 30.0), (40.0, 30.0), 1, "hint_0")], depth, regions, cam, speed=0.1)
    ((start, end),) = view_hints(lifted, cam, 0.1)
    np.testing.assert_allclose(start, (20.0, 30.0), atol=1e-3)
    np.testing.assert_allclose(end, (40.0, 30.0), atol=1e-3)  # end = start + motion / speed
    assert view_hints(lift_hints([], depth, regions, cam), cam, 0.1) == []


@pytest.mark.skipif(not FIXTURE.is_file(), reason=f"{FIXTURE} not found")
def test_train_motion_with_the_flow_model_runs_and_differs_from_the_hints(tmp_path, toy):
    """The fixture's random weights through train_motion.py --flow_model: one view, end to end; its flows are
    the network's (not the hint interpolation's), zero outside the moving regions; the manifest says so."""
    import json

    from annotation.procedural import save_scene
    from scene.io import read_labels, read_npy
    from tests.pipeline_fixtures import run_stage

    base = save_scene(toy, tmp_path / "scene")
    run_stage("mask", base)
    flows = {}
    for name, extra in (("hints", ()), ("model", ("--flow_model", str(FIXTURE)))):
        scene = tmp_path / name
        shutil.copytree(base, scene)
        run_stage("motion", scene, "--n_views", "1", "--n_frames", "4", "--train_iteration", "2", *extra)
        flows[name] = read_npy(scene / "motion" / "flows" / "00.npy")
        manifest = json.loads((scene / "manifests" / "motion.json").read_text())
        assert manifest["info"]["backends"]["flow"] == ("hints" if name == "hints" else f"model:{FIXTURE}")
    moving = read_labels(tmp_path / "model" / "motion" / "views" / "00_regions.png") > 0
    assert not flows["model"][~moving].any()
    assert float(np.abs(flows["model"] - flows["hints"])[moving].mean()) > 0.1
