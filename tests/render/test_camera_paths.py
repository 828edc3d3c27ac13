"""Camera paths: the original's presets (looping), rotations, keyframed custom paths and their JSON file."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from render.camera_paths import (
    DEFAULT_PATHS,
    PRESETS,
    frame_phases,
    load_camera_path,
    look_at_rotation,
    matrix_to_quat,
    path_cameras,
    quat_to_matrix,
    reference_depth,
    resolve_presets,
    slerp,
)
from scene.cameras import source_camera
from utils.errors import UserError


@pytest.fixture
def base():
    return source_camera(96, 64)


def centre(camera) -> np.ndarray:
    return camera.c2w[:3, 3]


# ----------------------------------------------------------------------------- presets


@pytest.mark.parametrize("name", DEFAULT_PATHS)
def test_presets_loop(name, base):
    path = PRESETS[name]
    first, after_last = path.camera(0.0, base, 1.7), path.camera(1.0, base, 1.7)
    np.testing.assert_allclose(after_last.w2c, first.w2c, atol=1e-12)
    np.testing.assert_allclose(after_last.K, first.K, atol=1e-12)


@pytest.mark.parametrize("name", ["up-down", "side", "zoom-in", "dolly-zoom", "static"])
def test_presets_start_at_the_photo(name, base):
    camera = PRESETS[name].camera(0.0, base, 2.0)
    np.testing.assert_allclose(camera.w2c, base.w2c, atol=1e-12)
    np.testing.assert_allclose(camera.K, base.K, atol=1e-12)


@pytest.mark.parametrize(
    ("name", "axis", "amplitude", "s_peak"),
    [("up-down", 1, 0.08, 0.25), ("side", 0, 0.09, 0.25), ("zoom-in", 2, 0.24, 0.5)],
)
def test_preset_amplitudes_scale(name, axis, amplitude, s_peak, base):
    scale = 3.0
    s = np.linspace(0, 1, 401)
    centres = np.stack([centre(PRESETS[name].camera(float(v), base, scale)) for v in s])
    # The original's offsets are added to camera coordinates, so the camera centre moves by -t.
    assert np.abs(centres[:, axis]).max() == pytest.approx(amplitude * scale, rel=1e-9)
    peak = centre(PRESETS[name].camera(s_peak, base, scale))[axis]
    assert abs(peak) == pytest.approx(amplitude * scale, rel=1e-9)
    others = [a for a in range(3) if a != axis]
    assert np.abs(centres[:, others]).max() < 1e-12
    if name == "zoom-in":  # moves forward (+z), towards the scene
        assert peak > 0


def test_circle_matches_the_original(base):
    # The original: phase over np.arange(-2, 2, 4 / n); t = (cos(pi p) x, sin(pi p) y, cos(pi p / 2) z)
    # with (x, y, z) = (-0.04, -0.04, -0.09), added to camera coordinates.
    n = 90
    cams = path_cameras(PRESETS["circle"], base, n, scale=1.0)
    for i, phase in enumerate(np.arange(-2.0, 2.0, 4.0 / n)):
        t = np.array(
            [
                math.cos(phase * math.pi) * -0.04,
                math.sin(phase * math.pi) * -0.04,
                math.cos(phase * math.pi / 2) * -0.09,
            ]
        )
        np.testing.assert_allclose(cams[i].w2c[:3, 3], t, atol=1e-12)
        np.testing.assert_allclose(cams[i].w2c[:3, :3], np.eye(3), atol=1e-12)


def test_dolly_zoom_keeps_the_reference_depth_the_same_size(base):
    scale = 2.5
    point = np.array([0.3, -0.2, scale, 1.0])  # at the reference depth (1 in the original's units)
    sizes = []
    for s in np.linspace(0, 1, 9):
        cam = PRESETS["dolly-zoom"].camera(float(s), base, scale)
        x = cam.w2c @ point
        sizes.append(cam.K[0, 0] * x[0] / x[2])
    np.testing.assert_allclose(sizes, sizes[0], rtol=1e-9)
    mid = PRESETS["dolly-zoom"].camera(0.5, base, scale)
    assert centre(mid)[2] == pytest.approx(-0.24 * scale)  # backed away
    assert mid.K[0, 0] > base.K[0, 0]  # and zoomed in


def test_presets_keep_the_image_size_and_principal_point(base):
    for path in PRESETS.values():
        cam = path.camera(0.37, base, 1.0)
        assert (cam.width, cam.height) == (base.width, base.height)
        np.testing.assert_allclose(cam.K[:2, 2], base.K[:2, 2])


def test_zoom_in_once_reaches_the_end(base):
    cams = path_cameras(PRESETS["zoom-in-once"], base, 5, scale=1.0)
    assert centre(cams[0])[2] == pytest.approx(0.0)
    assert centre(cams[-1])[2] == pytest.approx(0.24)
    np.testing.assert_allclose(frame_phases(5, loops=False), [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(frame_phases(4, loops=True), [0, 0.25, 0.5, 0.75])


def test_resolve_presets():
    assert [p.name for p in resolve_presets(["side", "circle", "side"])] == ["side", "circle"]
    with pytest.raises(UserError, match=r"unknown camera path 'orbit'.*choose from"):
        resolve_presets(["orbit"])
    assert "zoom-in-once" not in DEFAULT_PATHS and "up-down" in DEFAULT_PATHS


def test_reference_depth(base):
    rng = np.random.default_rng(0)
    z = rng.uniform(2.0, 12.0, 5000)
    uv = rng.uniform([0, 0], [96, 64], (5000, 2))
    f = base.K[0, 0]
    pts = np.stack([(uv[:, 0] - 48) * z / f, (uv[:, 1] - 32) * z / f, z], 1)
    behind = np.array([[0.0, 0.0, -1.0]] * 500)  # behind the camera: ignored
    outside = np.array([[100.0, 0.0, 1.0]] * 500)  # outside the image: ignored
    got = reference_depth(np.concatenate([pts, behind, outside]), base)
    assert got == pytest.approx(np.percentile(z, 5.0))
    with pytest.raises(ValueError, match="means"):
        reference_depth(np.zeros((3, 2)), base)


# ----------------------------------------------------------------------------- rotations


def test_quaternion_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(50):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        R = quat_to_matrix(q)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        q2 = matrix_to_quat(R)
        np.testing.assert_allclose(q2, q if q[0] >= 0 else -q, atol=1e-9)


def test_slerp_constant_speed_on_the_short_arc():
    axis_angle = lambda deg: np.array([math.cos(math.radians(deg) / 2), 0.0, math.sin(math.radians(deg) / 2), 0.0])  # noqa: E731
    q0, q1 = axis_angle(0), axis_angle(90)
    for u in (0.0, 0.25, 0.5, 1.0):
        np.testing.assert_allclose(slerp(q0, q1, u), axis_angle(90 * u), atol=1e-12)
    # -q1 is the same rotation: slerp must take the short way, not 270 degrees round.
    np.testing.assert_allclose(quat_to_matrix(slerp(q0, -q1, 0.5)), quat_to_matrix(axis_angle(45)), atol=1e-12)


def test_look_at():
    np.testing.assert_allclose(look_at_rotation(np.zeros(3), [0, 0, 5], [0, -1, 0]), np.eye(3), atol=1e-12)
    R = look_at_rotation(np.zeros(3), [5, 0, 0], [0, -1, 0])  # turned right: camera z = world x
    np.testing.assert_allclose(R[:, 2], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(R[:, 1], [0, 1, 0], atol=1e-12)  # image down stays world down
    with pytest.raises(ValueError):
        look_at_rotation(np.zeros(3), np.zeros(3), [0, -1, 0])


# ----------------------------------------------------------------------------- custom paths


def write(tmp_path, data, name="custom.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_custom_path_passes_through_its_keyframes(tmp_path, base):
    c2w = np.eye(4)
    c2w[:3, :3] = quat_to_matrix([math.cos(0.2), 0.0, math.sin(0.2), 0.0])
    c2w[:3, 3] = [0.1, 0.0, 0.2]
    data = {
        "units": "world",
        "keyframes": [
            {"time": 0.0, "position": [0, 0, 0]},
            {"time": 0.3, "position": [0.2, -0.1, 0.0], "look_at": [0, 0, 5], "fov": 60},
            {"time": 0.6, "c2w": c2w.tolist()},
            {"time": 0.8, "position": [0, 0.1, 0], "rotation": [1, 0, 0.1, 0]},
        ],
    }
    path = load_camera_path(write(tmp_path, data))
    assert path.name == "custom" and path.loops
    cam = path.camera(0.3, base, scale=99.0)  # units "world": scale ignored
    np.testing.assert_allclose(centre(cam), [0.2, -0.1, 0.0], atol=1e-12)
    np.testing.assert_allclose(
        cam.c2w[:3, :3], look_at_rotation(np.array([0.2, -0.1, 0]), [0, 0, 5], [0, -1, 0]), atol=1e-12
    )
    assert cam.K[1, 1] == pytest.approx(0.5 * 64 / math.tan(math.radians(30)))
    np.testing.assert_allclose(path.camera(0.6, base, 1.0).c2w, c2w, atol=1e-9)
    np.testing.assert_allclose(path.camera(0.0, base, 1.0).w2c, base.w2c, atol=1e-12)
    # closed: time 1 is time 0, and the wrap segment is smooth (no jump just before 1)
    np.testing.assert_allclose(path.camera(1.0, base, 1.0).w2c, base.w2c, atol=1e-12)
    gap = np.linalg.norm(centre(path.camera(0.999, base, 1.0)) - centre(base))
    assert gap < 1e-2


def test_custom_path_interpolation(tmp_path, base):
    # Evenly spaced collinear keys: Catmull-Rom reproduces the straight line at constant speed.
    keys = [{"position": [0.1 * i, 0, 0]} for i in range(5)]
    path = load_camera_path(write(tmp_path, {"closed": False, "keyframes": keys}))
    for s in np.linspace(0, 1, 17):
        np.testing.assert_allclose(path.position(float(s)), [0.4 * s, 0, 0], atol=1e-12)
    # relative units: positions times the scene's path scale
    np.testing.assert_allclose(centre(path.camera(0.5, base, scale=2.0)), [0.4, 0, 0], atol=1e-12)
    # open path: clamped, not wrapped
    np.testing.assert_allclose(path.position(1.0), [0.4, 0, 0])
    # linear interpolation between two keys, rotation by slerp
    q90 = [math.cos(math.pi / 4), 0, math.sin(math.pi / 4), 0]
    two = {"closed": False, "interpolation": "linear", "keyframes": [
        {"time": 0, "position": [0, 0, 0]}, {"time": 1, "position": [1, 0, 0], "rotation": q90}]}  # fmt: skip
    path = load_camera_path(write(tmp_path, two, "two.json"))
    np.testing.assert_allclose(path.position(0.25), [0.25, 0, 0])
    np.testing.assert_allclose(path.rotation(0.5), [math.cos(math.pi / 8), 0, math.sin(math.pi / 8), 0], atol=1e-12)
    # a closed Catmull-Rom loop through 4 points of a square stays periodic and passes through them
    square = [{"position": p} for p in ([1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0])]
    path = load_camera_path(write(tmp_path, {"keyframes": square}, "square.json"))
    np.testing.assert_allclose(path.position(0.25), [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(path.position(0.999999), path.position(0.0), atol=1e-4)


def test_path_cameras_count(base):
    cams = path_cameras(PRESETS["side"], base, 12, scale=1.0)
    assert len(cams) == 12
    np.testing.assert_allclose(cams[3].w2c, PRESETS["side"].camera(0.25, base, 1.0).w2c)


BAD_FILES = [
    ("{not json", "not valid JSON"),
    ({"keyframes": []}, "keyframes must be a non-empty list"),
    ({"frames": [{"position": [0, 0, 0]}]}, "unknown field"),
    ({"keyframes": [{"time": 0}]}, "keyframe 0 needs a pose"),
    ({"keyframes": [{"position": [0, 0]}]}, r"keyframe 0.position must be a list of 3"),
    ({"keyframes": [{"position": [0, 0, "a"]}]}, r"keyframe 0.position must be a list of 3"),
    ({"keyframes": [{"c2w": [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}]}, "not a rotation"),
    ({"keyframes": [{"c2w": [[1, 0], [0, 1]]}]}, "4x4"),
    ({"keyframes": [{"position": [0, 0, 0], "rotation": [0, 0, 0, 0]}]}, "zero quaternion"),
    ({"keyframes": [{"position": [0, 0, 0], "rotation": [1, 0, 0, 0], "look_at": [0, 0, 1]}]}, "both rotation"),
    ({"keyframes": [{"position": [0, 0, 0], "look_at": [0, 0, 0]}]}, "coincides"),
    ({"keyframes": [{"position": [0, 0, 0], "fov": 0}]}, "fov must be"),
    ({"keyframes": [{"position": [0, 0, 0], "speed": 1}]}, "unknown field"),
    ({"keyframes": [{"time": 0.5, "position": [0, 0, 0]}, {"time": 0.2, "position": [0, 0, 0]}]}, "increase"),
    ({"keyframes": [{"time": 1.5, "position": [0, 0, 0]}]}, r"time must be a number in \[0, 1\]"),
    ({"keyframes": [{"time": 0, "position": [0, 0, 0]}, {"position": [0, 0, 0]}]}, "every keyframe or on none"),
    ({"keyframes": [{"time": 0, "position": [0, 0, 0]}, {"time": 1, "position": [1, 0, 0]}]}, "span less than 1"),
    ({"interpolation": "bezier", "keyframes": [{"position": [0, 0, 0]}]}, "interpolation must be one of"),
    ({"name": "../x", "keyframes": [{"position": [0, 0, 0]}]}, "name must be"),
    ([], "keyframes must be a non-empty list"),
    ("3", "must be a JSON object"),
]


@pytest.mark.parametrize(("content", "message"), BAD_FILES)
def test_bad_path_files_fail_with_one_line(tmp_path, content, message):
    with pytest.raises(UserError, match=message) as err:
        load_camera_path(write(tmp_path, content))
    line = err.value.line()
    assert "\n" not in line and "custom.json" in line


def test_missing_path_file(tmp_path):
    with pytest.raises(UserError, match="missing"):
        load_camera_path(tmp_path / "nope.json")
