"""scene.io: atomic writes survive a crash; every reader refuses a malformed file with a clear message."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scene import io
from scene.cameras import Camera
from utils.errors import UserError


def test_atomic_write_crash_keeps_previous_file(tmp_path):
    target = tmp_path / "data.json"
    io.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:
        tmp.write_text('{"v": 2, "trunc')  # half-written
        raise RuntimeError("simulated crash")
    assert io.read_json(target) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json"]  # no temp file left


def test_write_png_crash_keeps_previous(tmp_path, monkeypatch):
    target = tmp_path / "a.png"
    io.write_png(target, np.zeros((4, 5, 3), np.uint8))
    before = target.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("PIL.Image.Image.save", boom)
    with pytest.raises(OSError):
        io.write_png(target, np.ones((4, 5, 3), np.uint8))
    assert target.read_bytes() == before


def test_png_round_trips(tmp_path):
    rgb = np.random.default_rng(0).random((6, 7, 3)).astype(np.float32)
    io.write_png(tmp_path / "rgb.png", rgb)
    np.testing.assert_allclose(io.read_rgb(tmp_path / "rgb.png"), rgb, atol=0.5 / 255 + 1e-6)
    mask = np.random.default_rng(1).random((6, 7)) > 0.5
    io.write_mask(tmp_path / "m.png", mask)
    assert np.array_equal(io.read_mask(tmp_path / "m.png"), mask)
    labels = np.arange(42).reshape(6, 7) * 1000
    io.write_labels(tmp_path / "l.png", labels)
    assert np.array_equal(io.read_labels(tmp_path / "l.png"), labels)


def test_16bit_and_alpha_images_are_converted(tmp_path):
    from PIL import Image

    Image.fromarray(np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000).save(tmp_path / "g16.png")
    rgb = io.read_rgb(tmp_path / "g16.png")
    assert rgb.shape == (4, 5, 3) and rgb.max() <= 1.0 and rgb[-1, -1, 0] > 0.8
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent -> white background
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert np.allclose(io.read_rgb(tmp_path / "a.png"), 1.0)


@pytest.mark.parametrize(
    ("reader", "content", "message"),
    [
        (lambda p: io.read_json(p), b"{not json", "not valid JSON"),
        (lambda p: io.read_rgb(p), b"\x89PNG garbage", "not a readable image"),
        (lambda p: io.read_mask(p), b"garbage", "not a valid PNG"),
        (lambda p: io.read_npy(p), b"\x93NUMPY garbage", "not a valid .npy"),
        (lambda p: io.read_hints(p), b'{"start": 1}', "not a valid hints file"),
        (lambda p: io.read_hints(p), b'[{"start": [1, 2]}]', "not a valid hints file"),
        (lambda p: io.read_hints(p), b'[{"start": [1, NaN], "end": [2, 3]}]', "not a valid hints file"),
        (lambda p: io.read_cameras(p), b'{"cameras": [{"K": [1]}]}', "not a valid cameras file"),
        (lambda p: io.read_points(p), b"ply\nformat ascii 1.0\nend_header\n", "not a valid point cloud"),
    ],
)
def test_readers_refuse_malformed_files(tmp_path, reader, content, message):
    path = tmp_path / "bad.file"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message) as info:
        reader(path)
    assert str(path) in info.value.line() and "\n" not in info.value.line()


def test_readers_name_missing_file_and_command(tmp_path):
    with pytest.raises(UserError, match=r"missing.*run train_motion.py first"):
        io.read_cameras(tmp_path / "cameras.json")


def test_mask_reader_refuses_non_binary(tmp_path):
    io.write_png(tmp_path / "m.png", np.full((3, 3), 7, np.uint8))
    with pytest.raises(UserError, match="0 or 255"):
        io.read_mask(tmp_path / "m.png")


def test_npy_shape_dtype_finite_checks(tmp_path):
    io.write_npy(tmp_path / "a.npy", np.zeros((4, 3), np.float32))
    assert io.read_npy(tmp_path / "a.npy", (None, 3)).shape == (4, 3)
    with pytest.raises(UserError, match="shape"):
        io.read_npy(tmp_path / "a.npy", (None, 2))
    with pytest.raises(UserError, match="dtype"):
        io.read_npy(tmp_path / "a.npy", dtype=np.float64)
    io.write_npy(tmp_path / "b.npy", np.array([1.0, np.nan], np.float32))
    with pytest.raises(UserError, match="NaN"):
        io.read_npy(tmp_path / "b.npy")


def test_cameras_points_hints_round_trip(tmp_path):
    cams = [Camera(np.diag([100.0, 100.0, 1.0]), np.eye(4), 64, 48)]
    io.write_cameras(tmp_path / "c.json", cams)
    back = io.read_cameras(tmp_path / "c.json")
    assert np.array_equal(back[0].K, cams[0].K) and back[0].width == 64
    rng = np.random.default_rng(0)
    cloud = io.PointCloud(
        rng.random((10, 3), dtype=np.float32),
        rng.integers(0, 255, (10, 3)).astype(np.uint8),
        np.arange(10, dtype=np.int32) % 3,
        np.zeros(10, np.int32),
    )
    io.write_points(tmp_path / "p.ply", cloud)
    back = io.read_points(tmp_path / "p.ply")
    for name in ("xyz", "rgb", "region", "view"):
        assert np.array_equal(getattr(back, name), getattr(cloud, name))
    hints = [io.Hint((1.5, 2.0), (3.0, 4.0), 1, "hint_0")]
    io.write_hints(tmp_path / "h.json", hints)
    assert io.read_hints(tmp_path / "h.json") == hints


def test_cameras_with_an_infinite_size_are_refused(tmp_path):
    """A case the long fuzzing run found: JSON's Infinity as a camera's height (int() overflows)."""
    cam = {"width": 48, "height": float("inf"), "K": np.diag([50.0, 50.0, 1.0]).tolist(), "w2c": np.eye(4).tolist()}
    (tmp_path / "c.json").write_text(json.dumps({"cameras": [cam]}))
    with pytest.raises(UserError, match="cameras file"):
        io.read_cameras(tmp_path / "c.json")
