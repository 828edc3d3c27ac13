"""Hole fills: the fill-quality measures (scene/quality.py) and the textured fill (motion/fill.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from motion.fill import TextureInpainter, _blur, texture_fill
from motion.multiview import FillGuide, build_views, fill_guide
from scene.quality import _grey as grey
from scene.quality import eroded, fill_anisotropy, fill_texture_ratio, texture_energy

# ----------------------------------------------------------------------------- the measures


def noise_image(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 1), dtype=np.uint8).repeat(3, 2)


def test_texture_ratio_white_noise_and_its_blur():
    noise = noise_image()
    left = np.zeros(noise.shape[:2], bool)
    left[:, :64] = True
    assert fill_texture_ratio(noise, left, ~left) == pytest.approx(1.0, abs=0.15)  # same statistics
    blurred = noise.copy()
    blurred[:, :64] = cv2.GaussianBlur(noise, (0, 0), 3.0)[:, :64]
    assert fill_texture_ratio(blurred, left, ~left) < 0.05  # the high band is gone
    flat = noise.copy()
    flat[:, :64] = 128
    assert fill_texture_ratio(flat, left, ~left) < 1e-4


def test_texture_energy_of_noise_known_value():
    # Grey white noise of variance s^2 minus its sigma-2 Gaussian blur keeps a known share of the power.
    g = grey(noise_image(256, 256))
    expected = float(np.var(g)) * (1 - 1 / (4 * np.pi * 4))  # 1 - 1/(4 pi sigma^2) of the power of white noise
    energy = texture_energy(noise_image(256, 256), np.ones((256, 256), bool))
    assert energy == pytest.approx(expected, rel=0.05)


def test_anisotropy_stripes_and_noise():
    ys = np.arange(64)[:, None].repeat(80, 1)
    stripes = (127 + 100 * np.sin(ys * 0.8)).astype(np.uint8)[..., None].repeat(3, 2)  # horizontal stripes
    everything = np.ones((64, 80), bool)
    assert fill_anisotropy(stripes, everything) > 100
    assert fill_anisotropy(stripes.transpose(1, 0, 2).copy(), np.ones((80, 64), bool)) > 100
    assert fill_anisotropy(noise_image(), np.ones((96, 128), bool)) < 1.2
    assert fill_anisotropy(np.full((20, 20, 3), 7, np.uint8), np.ones((20, 20), bool)) == 1.0  # flat


def test_measures_erode_and_check_inputs():
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    inner = eroded(mask, 7)
    assert inner.sum() == 16 and inner[8:12, 8:12].all()
    assert not eroded(np.ones((5, 5), bool), 7).any()  # the frame edge is outside the mask
    image = noise_image(20, 20)
    assert np.isnan(fill_anisotropy(image, np.zeros((20, 20), bool)))
    with pytest.raises(ValueError, match="uint8"):
        fill_anisotropy(image.astype(np.float32), mask)
    with pytest.raises(ValueError, match="masks"):
        fill_texture_ratio(image, mask[:10], mask)


# ----------------------------------------------------------------------------- the textured fill


def textured_scene(h: int = 96, w: int = 160, seed: int = 1) -> np.ndarray:
    """A stochastic texture (blurred noise over a vertical colour ramp): what a fill should continue."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.2)
    noise = noise / noise.std() * 25
    ramp = np.linspace(0, 1, h, dtype=np.float32)[:, None, None] * np.array([60, 20, -40], np.float32)
    base = np.array([100, 140, 120], np.float32)
    return np.clip(base + ramp + noise[..., None], 0, 255).astype(np.uint8)


def right_hole(h: int = 96, w: int = 160, width: int = 48) -> np.ndarray:
    hole = np.zeros((h, w), bool)
    hole[:, w - width :] = True  # the new frame edge of a view turned right
    hole[30:44, 20:50] = True  # and a small disocclusion
    return hole


def test_texture_fill_keeps_known_pixels_fills_every_hole_and_is_deterministic(one_thread):
    image, hole = textured_scene(), right_hole()
    holed = np.where(hole[..., None], 0, image).astype(np.uint8)
    out = texture_fill(holed, hole, seed=3)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert np.array_equal(out[~hole], holed[~hole])
    assert (out[hole] != 0).any(1).mean() > 0.99  # every hole pixel painted (no black left)
    assert np.array_equal(out, texture_fill(holed, hole, seed=3))
    assert not np.array_equal(out, texture_fill(holed, hole, seed=4))  # the seed is used
    torch.set_num_threads(2)
    assert np.array_equal(out, texture_fill(holed, hole, seed=3))  # and the thread count is not


def test_texture_fill_carries_texture_without_streaks(one_thread):
    image, hole = textured_scene(), right_hole()
    holed = np.where(hole[..., None], 0, image).astype(np.uint8)
    out = texture_fill(holed, hole)
    ratio, aniso = fill_texture_ratio(out, hole, ~hole), fill_anisotropy(out, hole)
    assert ratio >= 0.5 and aniso <= 2.5, (ratio, aniso)
    # Colours continue: the fill's mean colour per band of 8 rows follows the ramp of the known part.
    bands_fill = out[:, -40:].astype(float).reshape(12, -1, 3).mean(1)
    bands_known = image[:, 60:100].astype(float).reshape(12, -1, 3).mean(1)
    assert np.abs(bands_fill - bands_known)[1:-1].mean() < 15  # the texture itself has sigma 25
    # Today's fill, for comparison, is flat and streaky.
    from motion.multiview import inpaint_opencv

    before = inpaint_opencv(holed, hole, coarse_above=500)
    assert fill_texture_ratio(before, hole, ~hole) < 0.2


def test_texture_fill_takes_the_background_side_behind_a_depth_edge(one_thread):
    # A near red object (depth 2) on the left of a disocclusion, a far textured green wall (depth 10)
    # on its right: the hole must be painted from the wall, never with the object's red.
    h, w = 80, 120
    rng = np.random.default_rng(0)
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 1] = np.clip(120 + rng.normal(0, 20, (h, w)), 0, 255)
    image[..., 2] = 60
    depth = np.full((h, w), 10.0, np.float32)
    image[:, :40] = (230, 30, 30)
    depth[:, :40] = 2.0
    hole = np.zeros((h, w), bool)
    hole[:, 40:64] = True
    depth_filled = np.where(hole, 10.0, depth).astype(np.float32)
    covered = ~hole
    mask = hole.copy()
    mask[:, 36:40] = True  # the guard hides the object's edge, as guarded_hole does
    guide = fill_guide(depth_filled, np.zeros((h, w), np.int32), covered, hole, mask)
    out = texture_fill(np.where(hole[..., None], 0, image).astype(np.uint8), mask, guide)
    red = out[hole][:, 0].astype(int)
    assert red.max() < 120, red.max()  # no red copied or smeared into the disocclusion
    assert out[hole][:, 1].mean() > 90  # it is the wall's green


def test_texture_fill_guide_checks_and_no_hole():
    image = textured_scene(32, 40)
    nothing = np.zeros((32, 40), bool)
    assert np.array_equal(texture_fill(image, nothing), image)
    with pytest.raises(ValueError, match="mask"):
        texture_fill(image, nothing.astype(np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        texture_fill(image.astype(np.float32), nothing)
    bad = FillGuide(np.ones((4, 4), np.float32), np.zeros((32, 40), np.int32), ~nothing, ~nothing)
    with pytest.raises(ValueError, match=r"guide\.depth"):
        texture_fill(image, nothing | True, bad)


def test_normalised_blur_never_leaks_unweighted_pixels():
    colour = torch.zeros(3, 16, 32)
    colour[:, :, :12] = 0.8
    weight = torch.zeros(1, 16, 32)
    weight[0, :, :12] = 1.0  # the zeros on the right have no weight: they must not darken anything
    for dim in (None, 1, 2):
        out = _blur(colour, weight, 3, dim)
        assert torch.allclose(out, torch.full_like(out, 0.8)), dim
    ramp = torch.linspace(0, 1, 32).expand(1, 16, 32).contiguous()
    out = _blur(ramp, torch.ones(1, 16, 32), 2, 1)  # blurred along columns only: rows stay as they were
    assert torch.allclose(out, ramp, atol=1e-6)


def test_texture_inpainter_in_build_views(toy, one_thread):
    """The guided inpainter through the whole view loop: holes filled, known pixels kept, one-pass deterministic."""
    from motion.depth import prior_depth
    from motion.views import view_cameras
    from scene.cameras import source_camera

    h, w = toy.image.shape[:2]
    cam0 = source_camera(w, h)
    depth = prior_depth(toy.image, cam0.K[1, 1]).depth
    cams = view_cameras(cam0, n_views=6)
    runs = [build_views(toy.image, depth, toy.regions, cams, TextureInpainter(seed=0))[0] for _ in range(2)]
    for a, b in zip(*runs):
        assert np.array_equal(a.image, b.image)
    assert runs[0][0].hole is None
    assert any(v.hole.any() for v in runs[0][1:])
    for v in runs[0][1:]:
        assert v.hole.shape == v.valid.shape and not (v.hole & v.valid).any()
