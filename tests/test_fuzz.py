"""Property-based fuzzing of every reader of a file a user supplies or may edit (hypothesis).

Property: whatever the file holds, the reader either succeeds or raises the project's one-line
:class:`UserError` (exit code 2 at the command line) — never another exception (a traceback), never a
hang (each example has a deadline). The labelme case runs the whole of generate_mask.py and also checks
that a refused annotation leaves the scene folder as it was.

Inputs are near-valid documents with fields replaced by hostile values (wrong types, NaN, huge numbers,
escaping paths, deep nesting), plus byte-level damage for binary files. CI runs a fixed, derandomized
sample (profile ``ci``, about 1 000 examples in all, ~1 min); for a long local run::

    MOM_FUZZ=long .venv/bin/python -m pytest tests/test_fuzz.py     # 20x the examples, random seeds
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pipeline_fixtures import pipeline  # noqa: F401 (fixture)
from utils.errors import UserError

settings.register_profile(
    "ci",
    max_examples=120,
    derandomize=True,  # the same examples on every machine and every run
    database=None,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long", parent=settings.get_profile("ci"), max_examples=2400, derandomize=False, deadline=timedelta(seconds=30)
)
PROFILE = settings.get_profile("long" if os.environ.get("MOM_FUZZ") == "long" else "ci")

# ----------------------------------------------------------------------------- hostile values

NUMBERS = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e308, -1e-308, 2**63, 0.5]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=12))
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=8), inner, max_size=6)),
    max_leaves=24,
)
POINT = st.one_of(st.lists(NUMBERS, min_size=2, max_size=2), ANY_JSON)
PATHS = st.sampled_from(["image.png", "../image.png", "/etc/passwd", "a/../../b.png", "C:\\x\\y.png", "", "\x00"])


def _maybe(value_strategy, valid):
    """Mostly the valid value, sometimes a hostile one."""
    return st.one_of(st.just(valid), st.just(valid), value_strategy)


def _write(path: Path, content) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        try:
            path.write_text(json.dumps(content, allow_nan=True))
        except (ValueError, RecursionError):  # not encodable: write what a careless editor might leave
            path.write_text(repr(content))


@pytest.fixture(scope="module")
def scratch():
    folder = Path(tempfile.mkdtemp(prefix="mom-fuzz-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- labelme JSON, through generate_mask.py

SHAPE_TYPES = st.sampled_from(
    ["polygon", "rectangle", "circle", "line", "linestrip", "point", "mask", "oriented_rectangle", None, 7, "POLYGON"]
)
SHAPE = st.fixed_dictionaries(
    {
        "label": _maybe(ANY_JSON, "water") | st.sampled_from(["hint_0", "hint", "hintX", "sky"]),
        "points": st.one_of(st.lists(POINT, max_size=7), ANY_JSON),
        "shape_type": SHAPE_TYPES,
    },
    optional={"group_id": ANY_JSON, "flags": ANY_JSON, "mask": st.one_of(st.none(), st.text(max_size=16))},
)
LABELME = st.fixed_dictionaries(
    {"shapes": st.one_of(st.lists(SHAPE, max_size=6), ANY_JSON)},
    optional={
        "imagePath": st.one_of(PATHS, ANY_JSON),
        "imageData": st.one_of(st.none(), st.text(max_size=20), ANY_JSON),
        "imageWidth": _maybe(NUMBERS, 48),
        "imageHeight": _maybe(NUMBERS, 32),
        "version": SCALARS,
    },
)


@PROFILE
@given(doc=st.one_of(LABELME, ANY_JSON))
def test_generate_mask_on_any_annotation(scratch, doc):
    from scripts.generate_mask import main
    from tests.pipeline_fixtures import snapshot
    from utils.cli import run_main

    folder = scratch / "labelme"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    rng = np.random.default_rng(0)
    from PIL import Image

    Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(folder / "image.png")
    _write(folder / "image.json", doc)
    before = snapshot(folder)
    code = run_main(main, ["--input_dir", str(folder)])  # anything but UserError propagates: the test fails
    assert code in (0, 2)
    if code == 2:
        assert snapshot(folder) == before, "a refused annotation changed the scene folder"


# ----------------------------------------------------------------------------- hints.json, cameras.json, camera paths

HINT = st.fixed_dictionaries(
    {"start": _maybe(POINT, [1.0, 2.0]), "end": _maybe(POINT, [3.0, 4.0])},
    optional={"region": _maybe(ANY_JSON, 1), "label": ANY_JSON},
)


@PROFILE
@given(content=st.one_of(st.lists(HINT, max_size=5), ANY_JSON))
def test_read_hints_on_any_file(scratch, content):
    from scene.io import read_hints

    _write(scratch / "hints.json", content)
    try:
        hints = read_hints(scratch / "hints.json")
    except UserError:
        return
    assert all(np.isfinite(h.start).all() and np.isfinite(h.end).all() for h in hints)


MATRIX = st.lists(st.lists(NUMBERS, min_size=3, max_size=4), min_size=3, max_size=4)
CAMERA = st.fixed_dictionaries(
    {
        "width": _maybe(NUMBERS, 48),
        "height": _maybe(NUMBERS, 32),
        "K": _maybe(st.one_of(MATRIX, ANY_JSON), [[50, 0, 24], [0, 50, 16], [0, 0, 1]]),
        "w2c": _maybe(st.one_of(MATRIX, ANY_JSON), np.eye(4).tolist()),
    },
    optional={"id": ANY_JSON},
)


@PROFILE
@given(content=st.one_of(st.fixed_dictionaries({"cameras": st.lists(CAMERA, max_size=3)}), ANY_JSON))
def test_read_cameras_on_any_file(scratch, content):
    from scene.io import read_cameras

    _write(scratch / "cameras.json", content)
    try:
        cameras = read_cameras(scratch / "cameras.json")
    except UserError:
        return
    for c in cameras:
        assert c.width > 0 and c.height > 0 and np.isfinite(c.K).all() and np.isfinite(c.w2c).all()


KEYFRAME = st.fixed_dictionaries(
    {},
    optional={
        "time": NUMBERS,
        "position": POINT | st.lists(NUMBERS, min_size=3, max_size=3),
        "rotation": st.lists(NUMBERS, min_size=4, max_size=4) | ANY_JSON,
        "look_at": st.lists(NUMBERS, min_size=3, max_size=3) | ANY_JSON,
        "up": st.lists(NUMBERS, min_size=3, max_size=3),
        "fov": NUMBERS,
        "c2w": MATRIX | ANY_JSON,
    },
)
CAMERA_PATH = st.fixed_dictionaries(
    {"keyframes": st.one_of(st.lists(KEYFRAME, max_size=5), ANY_JSON)},
    optional={
        "closed": ANY_JSON,
        "interpolation": st.sampled_from(["linear", "catmull-rom", "cubic"]),
        "units": st.sampled_from(["relative", "world", "feet"]),
        "name": st.one_of(st.text(max_size=10), ANY_JSON),
    },
)


@PROFILE
@given(content=st.one_of(CAMERA_PATH, ANY_JSON))
def test_load_camera_path_on_any_file(scratch, content):
    from render.camera_paths import load_camera_path
    from scene.cameras import Camera

    _write(scratch / "path.json", content)
    try:
        path = load_camera_path(scratch / "path.json")
    except UserError:
        return
    base = Camera(np.array([[50.0, 0, 24], [0, 50, 16], [0, 0, 1]]), np.eye(4), 48, 32)
    for s in (0.0, 0.3, 0.99):  # a path that loads renders: every camera is finite
        camera = path.camera(s, base, 1.0)
        assert np.isfinite(camera.K).all() and np.isfinite(camera.w2c).all()


# ----------------------------------------------------------------------------- PLY files (points.ply, point_cloud.ply)


def _valid_points_ply(path: Path) -> bytes:
    from scene.io import PointCloud, write_points

    n = 5
    write_points(
        path,
        PointCloud(
            np.add(np.random.default_rng(0).normal(size=(n, 3)), [0, 0, 4]).astype(np.float32),
            np.full((n, 3), 128, np.uint8),
            np.zeros(n, np.int32),
            np.zeros(n, np.int32),
        ),
    )
    return path.read_bytes()


def _damage(data: bytes, draw) -> bytes:
    how = draw(st.sampled_from(["truncate", "flip", "splice", "header"]))
    if how == "truncate":
        return data[: draw(st.integers(0, len(data)))]
    if how == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(out) - 1))
            out[i] = draw(st.integers(0, 255))
        return bytes(out)
    if how == "splice":
        i = draw(st.integers(0, len(data)))
        return data[:i] + draw(st.binary(max_size=64)) + data[i:]
    end = data.index(b"end_header\n") + len(b"end_header\n")
    lines = data[:end].decode().splitlines()
    i = draw(st.integers(1, len(lines) - 2))
    lines[i] = draw(st.sampled_from(["element vertex 99999999999", "property float x", "format ascii 1.0", "comment"]))
    return ("\n".join(lines) + "\n").encode() + data[end:]


@PROFILE
@given(data=st.data())
def test_read_points_on_damaged_ply(scratch, data):
    from scene.io import read_points

    valid = _valid_points_ply(scratch / "valid.ply")
    (scratch / "points.ply").write_bytes(
        _damage(valid, data.draw) if data.draw(st.booleans()) else data.draw(st.binary())
    )
    try:
        cloud = read_points(scratch / "points.ply")
    except UserError:
        return
    assert np.isfinite(cloud.xyz).all() and len(cloud.xyz) == len(cloud.rgb)


@PROFILE
@given(data=st.data())
def test_load_gaussian_ply_on_damaged_files(pipeline, scratch, data):  # noqa: F811
    from scene.gaussians import load_ply

    final = pipeline.state("render") / "gaussians" / "point_cloud" / "iteration_12" / "point_cloud.ply"
    valid = final.read_bytes()
    (scratch / "gauss.ply").write_bytes(_damage(valid, data.draw))
    try:
        g = load_ply(scratch / "gauss.ply")
    except UserError:
        return
    assert all(bool(v.isfinite().all()) for v in (g.means, g.scales, g.quats, g.opacities))


# ----------------------------------------------------------------------------- the files a stage reloads


@PROFILE
@given(meta=st.one_of(ANY_JSON, st.fixed_dictionaries({"format": _maybe(ANY_JSON, 2), "deformation": ANY_JSON})))
def test_render_on_any_deformation_json(pipeline, scratch, meta):  # noqa: F811
    """deformation.json (the 4D model's description, which render_4DGS.py reloads) edited into anything."""
    from gaussians4d.model import load_trained
    from scene.paths import ScenePaths

    scene = scratch / "trained"
    if not scene.is_dir():
        pipeline.copy("gaussians", scene)
    target = scene / "gaussians" / "point_cloud" / "iteration_12" / "deformation.json"
    original = json.loads(target.read_text())
    if isinstance(meta, dict) and "format" in meta:
        meta = {**original, **meta}  # a near-valid edit: some fields replaced
    _write(target, meta)
    try:
        load_trained(ScenePaths(scene))
    except UserError:
        pass
    finally:
        target.write_text(json.dumps(original))


@PROFILE
@given(config=ANY_JSON, metrics=ANY_JSON)
def test_training_size_on_any_config(scratch, config, metrics):
    """gaussians/config.json and metrics.json, which render_4DGS.py reads for its default size."""
    from render.stage import training_size
    from scene.paths import ScenePaths

    scene = ScenePaths(scratch / "sized")
    scene.gaussians.dir.mkdir(parents=True, exist_ok=True)
    _write(scene.gaussians.config, config)
    _write(scene.gaussians.metrics, metrics)
    size = training_size(scene)
    assert size is None or (len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size))
