"""The procedural landscape generator: sizes, masks consistent with its labelme JSON, determinism."""

from __future__ import annotations

import base64
import io as pyio

import numpy as np
import pytest
from PIL import Image, ImageDraw

from annotation.procedural import make_landscape, save_scene


@pytest.mark.parametrize(("w", "h"), [(96, 64), (320, 180), (64, 96)])
def test_sizes_and_labelme_fields(w, h):
    s = make_landscape(w, h, seed=3)
    assert s.image.shape == (h, w, 3) and s.image.dtype == np.uint8
    assert s.regions.shape == (h, w) and s.depth.shape == (h, w)
    doc = s.labelme
    assert (doc["imageWidth"], doc["imageHeight"], doc["imagePath"]) == (w, h, "image.png")
    embedded = np.asarray(Image.open(pyio.BytesIO(base64.b64decode(doc["imageData"]))))
    assert np.array_equal(embedded, s.image)
    kinds = [(sh["shape_type"], sh["label"].startswith("hint")) for sh in doc["shapes"]]
    assert ("polygon", False) in kinds and ("line", True) in kinds


def test_regions_equal_independent_rasterisation_of_json():
    s = make_landscape(160, 96, seed=1)
    h, w = s.regions.shape
    expect = np.zeros((h, w), np.int32)
    polygons = [sh for sh in s.labelme["shapes"] if sh["shape_type"] == "polygon"]
    for k, sh in enumerate(polygons, 1):
        img = Image.new("L", (w, h), 0)
        ImageDraw.Draw(img).polygon([tuple(p) for p in sh["points"]], outline=1, fill=1)
        expect[np.asarray(img) > 0] = k
    assert np.array_equal(expect, s.regions)
    assert 0.02 < s.mask.mean() < 0.6


def test_hints_match_json_and_lie_in_their_regions():
    s = make_landscape(200, 120, seed=2)
    lines = [sh for sh in s.labelme["shapes"] if sh["shape_type"] == "line"]
    assert len(lines) == len(s.hints) == 5
    for sh, hint in zip(lines, s.hints):
        assert sh["points"] == [list(hint.start), list(hint.end)]
        x, y = (round(v) for v in hint.start)
        assert s.regions[y, x] == hint.region > 0
        assert np.linalg.norm(hint.vector) > 0


def test_depth_layout_sky_far_ground_recedes():
    s = make_landscape(128, 96, seed=0)
    assert s.depth[0].min() >= 100  # sky is far
    bottom, above = s.depth[-1].mean(), s.depth[int(0.7 * 96)].mean()
    assert bottom < above  # ground recedes toward the horizon
    assert np.isfinite(s.depth).all() and s.depth.min() > 0


def test_deterministic_by_seed(tmp_path):
    a, b, c = make_landscape(96, 64, 5), make_landscape(96, 64, 5), make_landscape(96, 64, 6)
    assert np.array_equal(a.image, b.image) and a.labelme == b.labelme
    assert not np.array_equal(a.image, c.image)
    save_scene(a, tmp_path / "a")
    save_scene(b, tmp_path / "b")
    assert (tmp_path / "a/image.json").read_bytes() == (tmp_path / "b/image.json").read_bytes()


def test_rejects_tiny_sizes():
    with pytest.raises(ValueError, match="at least"):
        make_landscape(8, 8)
