"""scripts/benchmark_pipeline.py's --size: a scene's photo and annotation resized together."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from scene.io import read_json, read_rgb
from tests.conftest import ROOT
from utils.errors import UserError


def _script():
    spec = importlib.util.spec_from_file_location("benchmark_pipeline", ROOT / "scripts" / "benchmark_pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_resize_scales_the_photo_and_every_annotated_point(toy_scene, tmp_path):
    bench = _script()
    work = tmp_path / "work"
    bench._copy_inputs(toy_scene, work)
    before = read_json(work / "image.json")
    w0, h0 = before["imageWidth"], before["imageHeight"]
    bench._resize_inputs(work, f"{2 * w0}x{3 * h0}")
    after = read_json(work / "image.json")
    assert read_rgb(work / "image.png").shape == (3 * h0, 2 * w0, 3)
    assert (after["imageWidth"], after["imageHeight"], after["imageData"]) == (2 * w0, 3 * h0, None)
    for old, new in zip(before["shapes"], after["shapes"]):
        assert np.allclose(np.asarray(new["points"]), np.asarray(old["points"]) * [2, 3])
    with pytest.raises(UserError, match="WIDTHxHEIGHT"):
        bench._resize_inputs(work, "big")
    (work / "image.png").unlink()
    with pytest.raises(UserError, match=r"no image\.png"):
        bench._resize_inputs(work, "64x32")
