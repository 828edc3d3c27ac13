"""Stage 1 views: z-buffer splatting, projection, the camera set, novel-view rendering and inpainting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scene.io import Camera
from scene.splat import zbuffer_splat
from scene.views import (
    default_focal,
    intrinsics,
    project_points,
    rotation,
    source_camera,
    unproject,
    unproject_depth,
    view_cameras,
    view_poses,
)

# ----------------------------------------------------------------------------- helpers (reused by the benchmark)


def naive_splat(uv, z, values, height, width, footprint=1.5, tol=0.01):
    """Per-pixel loop reference of zbuffer_splat's rule (slow; tiny inputs only)."""
    uv, z, values = uv.numpy(), z.numpy(), values.numpy()
    image = np.zeros((height, width, values.shape[1]), values.dtype)
    depth = np.full((height, width), np.inf)
    for y in range(height):
        for x in range(width):
            dx, dy = x - uv[:, 0], y - uv[:, 1]
            nearest = (np.round(uv[:, 0]) == x) & (np.round(uv[:, 1]) == y)
            cover = ((np.abs(dx) <= footprint / 2) & (np.abs(dy) <= footprint / 2)) | nearest
            cover &= z > 0
            if not cover.any():
                continue
            zmin = z[cover].min()
            front = cover & (z <= zmin * (1 + tol))
            d2 = np.where(front, dx**2 + dy**2, np.inf)
            best = np.flatnonzero(d2 <= d2.min())[-1]
            image[y, x], depth[y, x] = values[best], z[best]
    return image, depth


def random_points(n: int, height: int, width: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    uv = torch.rand(n, 2, generator=g) * torch.tensor([width + 2.0, height + 2.0]) - 1.0
    z = torch.rand(n, generator=g) * 5 + 0.5
    values = torch.rand(n, 3, generator=g)
    return uv, z, values


# ----------------------------------------------------------------------------- zbuffer_splat


def test_splat_matches_naive_reference():
    uv, z, values = random_points(300, 12, 17)
    image, depth, valid = zbuffer_splat(uv, z, values, 12, 17)
    ref_image, ref_depth = naive_splat(uv, z, values, 12, 17)
    assert image.shape == (12, 17, 3) and depth.shape == (12, 17) and valid.dtype == torch.bool
    np.testing.assert_allclose(image.numpy(), ref_image, atol=1e-6)
    np.testing.assert_allclose(depth.numpy(), ref_depth, atol=1e-6)
    assert torch.equal(valid, torch.isfinite(depth))


def test_splat_nearest_surface_wins():
    uv = torch.tensor([[3.0, 2.0], [3.0, 2.0], [3.2, 2.1]])
    z = torch.tensor([5.0, 1.0, 3.0])
    values = torch.tensor([[1.0], [2.0], [3.0]])
    image, depth, valid = zbuffer_splat(uv, z, values, 5, 6)
    assert image[2, 3, 0] == 2.0 and depth[2, 3] == 1.0
    assert valid.sum() == 1  # footprint 1.5 around integer centres covers one pixel


def test_splat_identity_reproduces_grid_and_drops_behind_and_outside():
    h, w = 9, 11
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    uv = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)
    values = torch.rand(h * w, 3)
    z = torch.ones(h * w)
    z[0] = -1.0  # behind the camera
    uv[1] = torch.tensor([100.0, 3.0])  # off-screen
    image, depth, valid = zbuffer_splat(uv, z, values, h, w)
    assert not valid[0, 0] and not valid[0, 1] and valid.sum() == h * w - 2
    assert torch.equal(image.reshape(-1, 3)[2:], values[2:])
    assert torch.isinf(depth[0, 0]) and torch.all(image[0, 0] == 0)


def test_splat_no_cracks_when_magnified():
    # A fronto-parallel plane seen 1.4x closer: the footprint (1.5) must cover every pixel in the middle.
    h, w = 40, 60
    cam = source_camera(w, h)
    xyz = unproject_depth(torch.full((h, w), 2.0), cam)
    w2c = np.eye(4)
    w2c[2, 3] = -2.0 + 2.0 / 1.4
    uv, z = project_points(xyz, Camera(cam.K, w2c, w, h))
    _, _, valid = zbuffer_splat(uv, z, torch.ones(h * w, 1), h, w)
    assert valid[4:-4, 4:-4].all()
    _, _, valid0 = zbuffer_splat(uv, z, torch.ones(h * w, 1), h, w, radius=0, footprint=0.0)
    assert not valid0[4:-4, 4:-4].all()  # without a footprint there are cracks


def test_splat_per_point_footprint_and_gradients():
    uv = torch.tensor([[5.0, 5.0]])
    values = torch.tensor([[0.5, 0.25]], requires_grad=True)
    image, _, valid = zbuffer_splat(uv, torch.ones(1), values, 11, 11, radius=2, footprint=torch.tensor([4.9]))
    assert valid.sum() == 25
    image.sum().backward()
    assert torch.allclose(values.grad, torch.full((1, 2), 25.0))


def test_splat_bad_input():
    uv, z, values = random_points(4, 5, 5)
    with pytest.raises(ValueError, match="uv"):
        zbuffer_splat(uv[:, :1], z, values, 5, 5)
    with pytest.raises(ValueError, match="z must"):
        zbuffer_splat(uv, z[:3], values, 5, 5)
    with pytest.raises(ValueError, match="values"):
        zbuffer_splat(uv, z, values[:2], 5, 5)
    with pytest.raises(ValueError, match="radius"):
        zbuffer_splat(uv, z, values, 5, 5, radius=-1)
    with pytest.raises(ValueError, match="footprint"):
        zbuffer_splat(uv, z, values, 5, 5, footprint=torch.ones(3))


@pytest.mark.gpu
def test_splat_cuda_matches_cpu():
    uv, z, values = random_points(5000, 48, 64)
    cpu = zbuffer_splat(uv, z, values, 48, 64)
    gpu = zbuffer_splat(uv.cuda(), z.cuda(), values.cuda(), 48, 64)
    for a, b in zip(cpu, gpu):
        assert torch.allclose(a, b.cpu())


# ----------------------------------------------------------------------------- cameras


def test_intrinsics_default_focal_and_fov():
    K = intrinsics(1280, 720)
    assert math.isclose(K[0, 0], 582.69 * 720 / 512) and K[0, 0] == K[1, 1] == default_focal(720)
    assert (K[0, 2], K[1, 2]) == (640.0, 360.0)
    K60 = intrinsics(100, 80, fov_y_deg=60.0)
    assert math.isclose(2 * math.degrees(math.atan(40 / K60[1, 1])), 60.0)
    with pytest.raises(ValueError, match="fov_y_deg"):
        intrinsics(100, 80, fov_y_deg=0.0)


def test_project_unproject_roundtrip():
    cam = Camera(intrinsics(64, 48), np.linalg.inv(view_poses(25)[7]["w2c"]), 64, 48)
    g = torch.Generator().manual_seed(1)
    uv = torch.rand(100, 2, generator=g, dtype=torch.float64) * 40
    z = torch.rand(100, generator=g, dtype=torch.float64) * 10 + 1
    uv2, z2 = project_points(unproject(uv, z, cam), cam)
    assert torch.allclose(uv, uv2) and torch.allclose(z, z2)
    with pytest.raises(ValueError, match="xyz"):
        project_points(torch.zeros(3, 2), cam)


def test_view_set_structure():
    poses = view_poses(25)
    assert len(poses) == 25 and np.allclose(poses[0]["w2c"], np.eye(4))
    yaws = {p["rotation_deg"][0] for p in poses}
    assert yaws == {0.0, 20.0, -20.0}
    # Rotation-only views keep the camera centre; orbit views move it and keep looking at the pivot.
    assert np.allclose(np.linalg.inv(poses[5]["w2c"])[:3, 3], 0)
    c2w = np.linalg.inv(poses[1]["w2c"])
    assert np.linalg.norm(c2w[:3, 3]) > 0.3
    pivot_cam = poses[1]["w2c"] @ np.array([0, 0, 4.3, 1.0])
    assert np.allclose(pivot_cam[:2], 0, atol=1e-9)
    # Positive yaw looks right (+x), positive pitch looks up (-y).
    assert rotation(20, 0)[0, 2] > 0 and rotation(0, 20)[1, 2] < 0
    cams = view_cameras(source_camera(64, 48), n_views=6, span=0.5)
    assert len(cams) == 6 and np.array_equal(cams[0].w2c, np.eye(4))
    with pytest.raises(ValueError, match="n_views"):
        view_poses(26)
