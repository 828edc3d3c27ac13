"""The JSON that labelme writes is what generate_mask.py reads: the installed version (requirements-annotate.txt).

``tests/data/labelme/`` holds a photo and the ``image.json`` that labelme 6.3.1's own save code wrote for it
(every region type it has, hints as lines and a linestrip, a point), with labelme's own rasterisation of
the regions (``labelme_regions.png``); see ``make_fixture.py`` there. When labelme is installed (``bash
scripts/setup.sh --annotate``) the JSON is written again through labelme's API and read the same way.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scene.io import read_hints, read_json, read_labels
from scene.paths import ScenePaths
from tests.conftest import ROOT
from utils.cli import run_main

FIXTURE = ROOT / "tests" / "data" / "labelme"
PINNED = "6.3.1"  # requirements-annotate.txt


def _generate_mask(folder: Path, capsys) -> str:
    from scripts.generate_mask import main

    assert run_main(main, ["--input_dir", str(folder)]) == 0
    return capsys.readouterr().err


def _check(folder: Path, err: str) -> None:
    scene = ScenePaths(folder)
    expected = np.asarray(Image.open(folder / "labelme_regions.png"), np.int32)
    regions = read_labels(scene.regions)
    assert np.array_equal(regions, expected)  # labelme's own rasterisation, pixel for pixel
    assert set(np.unique(regions)) == {0, 1, 2, 3, 4, 5}  # water, cloud, smoke, mist, sea
    hints = read_hints(scene.hints)
    assert [h.label for h in hints] == ["hint_0", "hint_chain", "hint_chain", "hint_sea", "hint_smoke", "hint_mist"]
    assert [h.region for h in hints] == [1, 2, 2, 5, 3, 4]  # each starts in the region it moves
    assert "'peak' (point): shape type 'point' is not supported" in err


def test_the_json_labelme_wrote_is_read(tmp_path, capsys):
    folder = tmp_path / "scene"
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns("*.py"))
    assert read_json(folder / "image.json")["version"] == PINNED
    _check(folder, _generate_mask(folder, capsys))


def test_a_mask_shape_must_match_its_box(tmp_path, capsys):
    import base64
    import io
    import json

    folder = tmp_path / "scene"
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns("*.py"))
    doc = json.loads((folder / "image.json").read_text())
    sea = next(s for s in doc["shapes"] if s["shape_type"] == "mask")
    small = io.BytesIO()
    Image.fromarray(np.ones((3, 3), np.uint8)).save(small, format="PNG")
    sea["mask"] = base64.b64encode(small.getvalue()).decode()
    (folder / "image.json").write_text(json.dumps(doc))
    from scripts.generate_mask import main

    assert run_main(main, ["--input_dir", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "mask is 3x3 but its box is 24x12" in err and err.count("\n") == 1
    assert not (folder / "regions.png").exists()


@pytest.mark.skipif(importlib.util.find_spec("labelme") is None, reason="labelme not installed (setup.sh --annotate)")
def test_labelme_api_writes_what_generate_mask_reads(tmp_path, capsys, monkeypatch):
    import labelme

    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    folder = tmp_path / "scene"
    folder.mkdir()
    shutil.copy(FIXTURE / "image.png", folder / "image.png")
    spec = importlib.util.spec_from_file_location("make_labelme_fixture", FIXTURE / "make_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(folder)
    if labelme.__version__ == PINNED:  # the committed fixture is what this labelme writes
        assert read_json(folder / "image.json") == read_json(FIXTURE / "image.json")
    _check(folder, _generate_mask(folder, capsys))
