"""scene/quality.py: texture retention, seam and measured motion on images with known answers."""

from __future__ import annotations

import cv2
import numpy as np

from scene.quality import LoopMeter, measured_motion, seam_ratio, summary, texture_retention


def _noise(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((h, w, 3)) * 255).astype(np.uint8)


def test_retention_is_one_for_the_photo_and_falls_with_blur():
    photo = _noise()
    mask = np.ones(photo.shape[:2], bool)
    blurred = cv2.GaussianBlur(photo, (0, 0), 2.0)
    r = texture_retention([photo, blurred, np.full_like(photo, 128)], photo, mask)
    assert abs(r[0] - 1.0) < 1e-6 and r[1] < 0.15 and r[2] < 1e-9
    half = ((photo.astype(np.float32) + _noise(seed=1)) / 2).astype(np.uint8)  # a 50/50 cross-fade of textures
    assert 0.4 < texture_retention([half], photo, mask)[0] < 0.6


def test_retention_counts_only_the_eroded_mask_and_resizes_the_photo():
    photo = _noise()
    mask = np.zeros(photo.shape[:2], bool)
    mask[20:70, 30:100] = True
    frame = photo.copy()
    frame[~mask] = 0  # outside the region: ignored
    assert abs(texture_retention([frame], photo, mask)[0] - 1.0) < 1e-3  # the blur reaches 2 px past the erosion
    small = cv2.resize(photo, (64, 48), interpolation=cv2.INTER_AREA)
    assert abs(texture_retention([small], photo, np.ones(photo.shape[:2], bool))[0] - 1.0) < 1e-6


def test_seam_of_a_periodic_sequence_is_an_ordinary_step():
    frames = [np.full((8, 8, 3), 10 * (i % 5), np.uint8) for i in range(5)]  # 0, 10, .., 40 then back to 0
    assert abs(seam_ratio(frames) - 4.0) < 1e-6  # the wrap 40 -> 0 is four steps of 10
    ramp = [np.full((8, 8, 3), v, np.uint8) for v in (0, 10, 20, 10)]
    assert abs(seam_ratio(ramp) - 1.0) < 1e-6


def test_measured_motion_of_a_translating_texture():
    base = cv2.GaussianBlur(_noise(120, 160), (0, 0), 1.5)
    frames = [np.roll(base, 2 * i, axis=1) for i in range(6)]  # 2 px per frame to the right
    mask = np.zeros((120, 160), bool)
    mask[20:100, 30:130] = True
    target = np.zeros((120, 160, 2), np.float32)
    target[..., 0] = 2.0
    m = measured_motion(frames, target, mask)
    assert abs(m["speed_ratio"] - 1.0) < 0.1 and m["direction_cosine"] > 0.95
    assert abs(measured_motion(frames, target / 2, mask, scale=2.0)["speed_ratio"] - 1.0) < 0.1
    backwards = measured_motion(frames[::-1], target, mask)
    assert backwards["direction_cosine"] < -0.9


def test_summary_and_meter_result():
    s = summary(np.array([0.5, 0.8, 1.0, np.nan]))
    assert s == {"min": 0.5, "median": 0.8, "max": 1.0, "pulse": 2.0}
    meter = LoopMeter(_noise(), np.ones((96, 128), bool))
    for seed in range(3):
        meter.add(_noise(seed=seed))
    result = meter.result()
    assert len(result["texture_retention"]) == 3 and "motion" not in result and result["seam_ratio"] is not None


def test_meter_figures_do_not_depend_on_its_dis_threads():
    """The DIS flows run on worker threads; their figures come back in frame order whatever the count."""
    base = cv2.GaussianBlur(_noise(120, 160), (0, 0), 1.5)
    steps = [1, 3, 2, 4, 1, 2, 3, 1]  # uneven shifts: pairs out of order would change the medians' inputs
    frames = [np.roll(base, int(sum(steps[:i])), axis=1) for i in range(len(steps) + 1)]
    mask = np.ones((120, 160), bool)
    target = np.zeros((120, 160, 2), np.float32)
    target[..., 0] = 2.0
    meters = [LoopMeter(base, mask, target, 1.0, 1, workers=n) for n in (1, 3)]
    for meter in meters:
        for frame in frames:
            meter.add(frame)
    one, three = (m.result() for m in meters)
    assert one == three and one["motion"]["direction_cosine"] > 0.9
    assert np.allclose(meters[1].speeds, steps, atol=0.3)  # frame order kept
