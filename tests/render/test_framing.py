"""render/framing.py: filled content in the frame, and the zoom / smaller motion that keeps it out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from render.camera_paths import PRESETS
from render.framing import (
    Coverage,
    FramedPath,
    after_zoom,
    edge_filled,
    filled_fractions,
    filled_maps,
    frame_path,
    paths_maps,
)
from scene.cameras import source_camera
from scene.gaussians import GaussianParams, rgb_to_sh_dc

pytestmark = pytest.mark.usefixtures("one_thread")


def _wall(width: int = 48, height: int = 32, depth: float = 4.0, margin: float = 0.6, island: int = 0):
    """A wall of small Gaussians facing the photo's camera: those inside its view are born from the photo,
    a band around it (what a moved camera sees beyond the photo's edge) from filled holes."""
    cam = source_camera(width, height)
    f = float(cam.K[1, 1])
    xs = np.linspace(-(0.5 + margin) * width, (0.5 + margin) * width, int(width * (1 + 2 * margin)))
    ys = np.linspace(-(0.5 + margin) * height, (0.5 + margin) * height, int(height * (1 + 2 * margin)))
    u, v = np.meshgrid(xs, ys)
    inside = (np.abs(u) <= width / 2 + 2) & (np.abs(v) <= height / 2 + 2)  # the photo and its edge pixels
    inside &= ~((np.abs(u) < island / 2) & (np.abs(v) < island / 2))  # a filled hole in the middle (disocclusion)
    means = torch.tensor(
        np.stack([u * depth / f, v * depth / f, np.full_like(u, depth)], -1).reshape(-1, 3), dtype=torch.float32
    )
    n = len(means)
    sh = rgb_to_sh_dc(torch.full((n, 3), 0.5))[:, None]
    params = GaussianParams(
        means,
        torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        torch.full((n, 3), 1.2 * depth / f),
        torch.full((n,), 0.95),
        sh,
    )
    return cam, Coverage.of([params], torch.as_tensor(inside.reshape(-1)))


def test_the_photo_camera_sees_photo_content_only_and_a_moved_one_does_not():
    cam, coverage = _wall()
    assert filled_fractions(coverage, [cam], [0], "torch")[0] < 0.01
    side = PRESETS["side"]
    moved = side.camera(0.25, cam, 8.0)  # a large sideways step: the band beyond the photo comes in
    assert filled_fractions(coverage, [moved], [0], "torch")[0] > 0.1


def test_framing_zooms_until_the_filled_content_is_under_the_limit():
    cam, coverage = _wall()
    side = PRESETS["side"]
    framing = frame_path(side, coverage, cam, scale=5.0, n_video=16, limit=0.02, max_zoom=1.6, backend="torch")
    framed = framing.path
    assert framing.edge_max <= 0.02
    assert 1.0 < framed.zoom <= 1.6 and framed.amplitude == 1.0
    cams = [framed.camera(s, cam, 5.0) for s in np.linspace(0, 1, 16, endpoint=False)]
    assert filled_fractions(coverage, cams, [0] * 16, "torch").max() <= 0.02 + 1e-9
    assert frame_path(PRESETS["static"], coverage, cam, 2.0, 16, 0.02, 1.6, "torch").path == FramedPath(
        PRESETS["static"]
    )


def test_past_the_largest_zoom_the_motion_shrinks():
    cam, coverage = _wall()
    framing = frame_path(
        PRESETS["side"], coverage, cam, scale=8.0, n_video=16, limit=0.02, max_zoom=1.1, backend="torch"
    )
    framed = framing.path
    assert framed.zoom == 1.1 and 0.0 < framed.amplitude < 1.0 and framing.edge_max <= 0.02
    cams = [framed.camera(s, cam, 8.0) for s in np.linspace(0, 1, 16, endpoint=False)]
    assert filled_fractions(coverage, cams, [0] * 16, "torch").max() <= 0.02 + 1e-9


def test_a_framed_camera_is_the_path_with_a_longer_focal():
    cam = source_camera(48, 32)
    plain = PRESETS["up-down"].camera(0.3, cam, 1.0)
    zoomed = FramedPath(PRESETS["up-down"], zoom=1.25).camera(0.3, cam, 1.0)
    np.testing.assert_allclose(zoomed.K[[0, 1], [0, 1]], plain.K[[0, 1], [0, 1]] * 1.25)
    np.testing.assert_allclose(zoomed.K[:2, 2], plain.K[:2, 2])
    np.testing.assert_array_equal(zoomed.w2c, plain.w2c)
    half = FramedPath(PRESETS["up-down"], amplitude=0.5).camera(0.3, cam, 1.0)
    np.testing.assert_allclose(half.w2c, PRESETS["up-down"].camera(0.3, cam, 0.5).w2c)


def test_a_zoom_shows_the_centre_of_the_frame():
    """after_zoom's crops of one render agree with renders at the zoomed focal (what frame_path relies on)."""
    cam, coverage = _wall()
    moved = PRESETS["side"].camera(0.25, cam, 6.0)
    maps = filled_maps(coverage, [moved], [0], "torch")
    for zoom in (1.0, 1.2, 1.5):
        rendered = filled_fractions(coverage, [FramedPath(PRESETS["side"], zoom).camera(0.25, cam, 6.0)], [0], "torch")
        assert abs(after_zoom(maps, zoom)[0] - rendered[0]) < 0.02, zoom


def test_filled_content_enclosed_by_the_photo_is_not_framed_out():
    """A filled hole in the middle of the frame (a disocclusion) is what fills are for: it neither zooms nor
    slows a path; it is counted apart (any_max)."""
    cam, coverage = _wall(island=10)
    assert filled_fractions(coverage, [cam], [0], "torch", edge=False)[0] > 0.04  # 10x10 of 48x32 pixels
    assert filled_fractions(coverage, [cam], [0], "torch")[0] < 0.01  # none of it reaches the edge
    framing = frame_path(
        PRESETS["static"], coverage, cam, scale=5.0, n_video=4, limit=0.02, max_zoom=1.3, backend="torch"
    )
    assert framing.path.zoom == 1.0 and framing.path.amplitude == 1.0
    assert framing.edge_max < 0.01 and framing.any_max > 0.04


def test_edge_filled_keeps_what_touches_the_edge():
    maps = torch.zeros(1, 8, 10, dtype=torch.bool)
    maps[0, 0, 2:5] = True  # on the top edge
    maps[0, 1, 4:6] = True  # touching it diagonally: the same region
    maps[0, 4:6, 4:6] = True  # enclosed
    kept = edge_filled(maps)[0]
    assert kept.sum() == 5 and kept[1, 5] and not kept[4:6, 4:6].any()


def test_the_paths_maps_rendered_together_are_each_paths_own():
    cam, coverage = _wall()
    paths = [PRESETS[name] for name in ("side", "up-down", "circle")]
    together = paths_maps(paths, coverage, cam, 5.0, 8, "torch")
    for path, maps in zip(paths, together):
        alone = paths_maps([path], coverage, cam, 5.0, 8, "torch")[0]
        assert maps.shape == (8, cam.height, cam.width) and torch.equal(maps, alone)
        assert frame_path(path, coverage, cam, 5.0, 8, 0.02, 1.6, "torch", maps) == frame_path(
            path, coverage, cam, 5.0, 8, 0.02, 1.6, "torch"
        )
