"""scripts/generate_mask.py and annotation/labelme.py: labelme annotation -> regions, mask, hints, photo."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from annotation.labelme import RegionShape
from annotation.masks import rasterize_regions, rasterize_shape, render_preview
from annotation.procedural import make_landscape, save_scene
from annotation.stage import build_mask
from scene.io import Hint, read_hints, read_json, read_labels, read_mask, read_rgb
from scene.manifest import require_stage
from scene.paths import ScenePaths
from tests.conftest import PYTHON, ROOT, real_scene
from utils.cli import run_main
from utils.errors import UserError

SCRIPT = ROOT / "scripts" / "generate_mask.py"
OUTPUTS = ("image_rgb.png", "mask.png", "regions.png", "hints.json", "mask_preview.png", "manifests/mask.json")


def _load_cli():
    spec = importlib.util.spec_from_file_location("generate_mask_cli", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLI = _load_cli()


def run_cli(folder: Path | str, flag: str = "--input_dir") -> int:
    return run_main(CLI.main, [flag, str(folder)])


def snapshot(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``folder`` (to prove nothing was written)."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def data_files(files: dict[str, str]) -> dict[str, str]:
    """A snapshot without the files that record when a run happened (manifests, report.html)."""
    return {k: v for k, v in files.items() if not k.startswith("manifests/") and k != "report.html"}


def edit_json(folder: Path, change) -> None:
    path = folder / "image.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def line(label, a, b):
    return {"label": label, "points": [list(a), list(b)], "shape_type": "line", "group_id": None, "flags": {}}


def shape(label, kind, points):
    return {"label": label, "points": [list(p) for p in points], "shape_type": kind, "group_id": None, "flags": {}}


def blank_scene(folder: Path, shapes: list[dict], w: int = 80, h: int = 60, **extra) -> Path:
    """A scene folder with a plain photo (w x h) and the given shapes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / "image.png")
    doc = {"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": "image.png", "imageData": None}
    doc.update(imageHeight=h, imageWidth=w)
    doc.update(extra)
    (folder / "image.json").write_text(json.dumps(doc))
    return folder


SQUARE = shape("water", "polygon", [(10, 10), (50, 10), (50, 40), (10, 40)])
HINT = line("hint_0", (20, 20), (30, 25))


# ----------------------------------------------------------------------------- procedural ground truth


@pytest.mark.parametrize(("w", "h", "seed"), [(96, 64, 0), (96, 64, 1), (96, 64, 2), (320, 180, 0), (320, 180, 3)])
def test_procedural_matches_ground_truth(tmp_path, w, h, seed):
    truth = make_landscape(w, h, seed=seed)
    folder = save_scene(truth, tmp_path / "scene")
    assert run_cli(folder) == 0
    paths = ScenePaths(folder)
    np.testing.assert_array_equal(read_labels(paths.regions), truth.regions)
    np.testing.assert_array_equal(read_mask(paths.mask), truth.regions > 0)
    np.testing.assert_array_equal(np.asarray(Image.open(paths.mask)), np.where(truth.regions > 0, 255, 0))
    assert read_hints(paths.hints) == truth.hints
    np.testing.assert_array_equal(np.asarray(Image.open(paths.photo)), truth.image)
    preview = np.asarray(Image.open(paths.mask_preview))
    assert preview.shape == (h, w, 3) and not np.array_equal(preview, truth.image)
    manifest = require_stage(paths, "mask")
    assert set(manifest["inputs"]) == {"image.json", "image.png"}
    assert set(manifest["outputs"]) == set(OUTPUTS[:-1])
    assert manifest["info"]["region_labels"] == truth.region_labels


def test_mask_does_not_contain_hints(tmp_path):
    # A hint drawn outside the regions must not appear in the mask (the original painted hints in).
    folder = blank_scene(tmp_path / "s", [SQUARE, HINT, line("hint_out", (60, 50), (70, 55))])
    result = build_mask(folder)
    assert result.regions[50, 60] == 0 and result.regions[55, 70] == 0
    assert result.hints[1].region == 0
    assert any("hint_out" in w and "outside every motion region" in w for w in result.warnings)


def test_rerun_is_idempotent_and_reads_previous_outputs_as_valid(toy_scene):
    assert run_cli(toy_scene) == 0
    first = data_files(snapshot(toy_scene))
    assert run_cli(toy_scene) == 0
    assert data_files(snapshot(toy_scene)) == first


# ----------------------------------------------------------------------------- finding the photo


def test_image_data_only(tmp_path, toy):
    folder = save_scene(toy, tmp_path / "s")
    (folder / "image.png").unlink()
    result = build_mask(folder)
    assert result.image_path is None
    np.testing.assert_array_equal(result.image, toy.image)
    assert run_cli(folder) == 0
    assert set(read_json(folder / "manifests" / "mask.json")["inputs"]) == {"image.json"}


def test_image_path_mismatch_uses_the_file_beside(tmp_path, toy):
    folder = save_scene(toy, tmp_path / "s")
    edit_json(folder, lambda d: d.update(imagePath="21.png", imageData=None))
    result = build_mask(folder)
    assert result.image_path == folder / "image.png"


def test_image_png_preferred_over_image_path(tmp_path, toy):
    folder = save_scene(toy, tmp_path / "s")
    (folder / "photos").mkdir()
    other = np.full_like(toy.image, 7)
    Image.fromarray(other).save(folder / "photos" / "p.png")
    edit_json(folder, lambda d: d.update(imagePath="photos\\p.png"))  # Windows separators, as labelme writes
    assert build_mask(folder).image_path == folder / "image.png"
    (folder / "image.png").unlink()  # without image.png beside the JSON, imagePath is followed
    result = build_mask(folder)
    assert result.image_path == folder / "photos" / "p.png"
    np.testing.assert_array_equal(result.image, other)


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink-dir", "symlink-beside"])
def test_a_photo_outside_the_scene_folder_is_never_read(tmp_path, toy, how, capsys):
    """imagePath (or a link) leading out of the scene folder: one line and exit 2, nothing read or written."""
    folder = save_scene(toy, tmp_path / "s")
    outside = tmp_path / "secret"
    outside.mkdir()
    Image.fromarray(toy.image).save(outside / "p.png")
    (folder / "image.png").unlink()
    if how == "dotdot":
        edit_json(folder, lambda d: d.update(imagePath="../secret/p.png", imageData=None))
    elif how == "absolute":
        edit_json(folder, lambda d: d.update(imagePath=str(outside / "p.png"), imageData=None))
    elif how == "symlink-dir":
        (folder / "photos").symlink_to(outside, target_is_directory=True)
        edit_json(folder, lambda d: d.update(imagePath="photos/p.png", imageData=None))
    else:
        (folder / "image.png").symlink_to(outside / "p.png")
    before = sorted(p.name for p in folder.iterdir())
    assert run_main(CLI.main, ["--input_dir", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "lies outside the scene folder" in err and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in folder.iterdir()) == before


def test_an_escaping_image_path_is_ignored_when_the_photo_is_beside(tmp_path, toy):
    folder = save_scene(toy, tmp_path / "s")
    edit_json(folder, lambda d: d.update(imagePath="../../../../etc/passwd"))
    assert build_mask(folder).image_path == folder / "image.png"


@pytest.mark.parametrize("absolute", [True, False])
def test_absolute_image_path(tmp_path, toy, absolute):
    # Absolute paths from another machine: the file of that name beside the JSON is used.
    folder = save_scene(toy, tmp_path / "s")
    other = np.full_like(toy.image, 9)
    Image.fromarray(other).save(folder / "p.png")
    named = "C:\\Users\\me\\p.png" if not absolute else str(folder / "p.png")
    edit_json(folder, lambda d: d.update(imagePath=named))
    (folder / "image.png").unlink()  # image.png beside the JSON would come first
    result = build_mask(folder)
    assert result.image_path.name == "p.png"
    np.testing.assert_array_equal(result.image, other)


def test_misnamed_json_suggests_renaming(tmp_path, toy):
    folder = save_scene(toy, tmp_path / "s")
    (folder / "image.json").rename(folder / "photo.json")
    with pytest.raises(UserError, match=r"Fix: rename photo\.json to image\.json"):
        build_mask(folder)


def test_jpeg_beside(tmp_path, toy):
    folder = save_scene(toy, tmp_path / "s")
    (folder / "image.png").unlink()
    Image.fromarray(toy.image).save(folder / "image.jpg", quality=95)
    edit_json(folder, lambda d: d.update(imagePath="gone.png", imageData=None))
    result = build_mask(folder)
    assert result.image_path == folder / "image.jpg"
    assert np.abs(result.image.astype(int) - toy.image).mean() < 6


@pytest.mark.parametrize("mode", ["I;16", "RGBA", "L"])
def test_photo_converted_to_8bit_rgb(tmp_path, mode):
    folder = blank_scene(tmp_path / "s", [SQUARE, HINT])
    grey = np.tile(np.arange(80, dtype=np.uint8), (60, 1))
    if mode == "I;16":
        img = Image.fromarray(grey.astype(np.uint16) * 257)
    elif mode == "RGBA":
        img = Image.fromarray(np.dstack([grey, grey, grey, np.full_like(grey, 255)]))
    else:
        img = Image.fromarray(grey)
    img.save(folder / "image.png")
    assert run_cli(folder) == 0
    photo = np.asarray(Image.open(folder / "image_rgb.png"))
    assert photo.shape == (60, 80, 3) and photo.dtype == np.uint8
    np.testing.assert_array_equal(photo[..., 1], grey)


def test_exif_orientation_applied(tmp_path):
    # A phone JPEG stored sideways (orientation 6): labelme shows and annotates it upright, 80x60.
    folder = blank_scene(tmp_path / "s", [SQUARE, HINT])
    (folder / "image.png").unlink()
    stored = np.zeros((80, 60, 3), np.uint8)
    stored[:10] = 255  # top rows of the stored image = right columns once upright
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(folder / "image.jpg", exif=exif, quality=95)
    result = build_mask(folder)
    assert result.image.shape == (60, 80, 3)
    assert result.image[:, -5:].mean() > 200 and result.image[:, :40].mean() < 30


# ----------------------------------------------------------------------------- shapes


def test_rectangle_and_circle_like_labelme(tmp_path):
    rect = shape("a", "rectangle", [(50, 40), (10, 20)])  # clicked bottom-right first
    circle = shape("b", "circle", [(60, 15), (60, 25)])  # centre, point on the circumference: r = 10
    folder = blank_scene(tmp_path / "s", [rect, circle, HINT])
    result = build_mask(folder)
    expected = np.zeros((60, 80), np.int32)
    expected[20:41, 10:51] = 1  # PIL rectangles include both corners
    yy, xx = np.mgrid[0:60, 0:80]
    disc = (xx - 60) ** 2 + (yy - 15) ** 2 <= 10**2
    got_disc = result.regions == 2
    iou = (disc & got_disc).sum() / (disc | got_disc).sum()
    assert iou > 0.9
    np.testing.assert_array_equal(result.regions == 1, (expected == 1) & ~got_disc)


def test_later_shapes_overwrite_earlier(tmp_path):
    big = shape("a", "polygon", [(5, 5), (70, 5), (70, 50), (5, 50)])
    small = shape("b", "rectangle", [(20, 20), (30, 30)])
    folder = blank_scene(tmp_path / "s", [big, small, HINT, line("hint_1", (10, 10), (15, 10))])
    result = build_mask(folder)
    assert result.region_labels == ["a", "b"]
    assert (result.regions[20:31, 20:31] == 2).all() and result.regions[10, 10] == 1
    assert [h.region for h in result.hints] == [2, 1]


def test_regions_match_per_shape_rasterisation():
    rng = np.random.default_rng(4)
    shapes = [RegionShape(f"r{i}", "polygon", rng.uniform(-10, 110, (int(rng.integers(3, 9)), 2)), i) for i in range(6)]
    regions = rasterize_regions(shapes, 100, 70)
    expected = np.zeros((70, 100), np.int32)
    for k, s in enumerate(shapes, 1):
        expected[rasterize_shape(s, 100, 70)] = k
    np.testing.assert_array_equal(regions, expected)


def test_linestrip_is_a_chain_of_hints(tmp_path):
    strip = shape("Hint_strip", "linestrip", [(15, 15), (25, 15), (25, 30), (40, 35)])
    folder = blank_scene(tmp_path / "s", [SQUARE, strip])
    result = build_mask(folder)
    assert [(h.start, h.end) for h in result.hints] == [
        ((15.0, 15.0), (25.0, 15.0)),
        ((25.0, 15.0), (25.0, 30.0)),
        ((25.0, 30.0), (40.0, 35.0)),
    ]
    assert all(h.region == 1 and h.label == "Hint_strip" for h in result.hints)


def test_unknown_shapes_and_plain_lines_are_skipped_with_a_warning(tmp_path, capsys):
    extra = [shape("hint_p", "point", [(5, 5)]), shape("x", "point", [(1, 1)]), line("river", (1, 1), (9, 9))]
    folder = blank_scene(tmp_path / "s", [SQUARE, HINT, *extra])
    result = build_mask(folder)
    assert len(result.hints) == 1 and result.region_labels == ["water"]
    assert len(result.warnings) == 3
    err = capsys.readouterr().err
    assert "hint_p" in err and "'point' is not supported" in err and "river" in err


def test_points_outside_the_image_are_clipped_and_warned(tmp_path):
    wide = shape("w", "polygon", [(-20, 10), (100, 10), (100, 40), (-20, 40)])
    long_hint = line("hint_long", (40, 30), (200, -50))  # end outside: kept, only the vector matters
    off_hint = line("hint_off", (-10, 20), (5, 25))  # start outside: moved onto the border
    folder = blank_scene(tmp_path / "s", [wide, long_hint, off_hint])
    result = build_mask(folder)
    assert result.regions[10:41].all() and not result.regions[:10].any() and not result.regions[41:].any()
    assert result.hints[0] == Hint((40.0, 30.0), (200.0, -50.0), 1, "hint_long")
    assert result.hints[1] == Hint((0.0, 20.0), (15.0, 25.0), 1, "hint_off")
    outside = [w for w in result.warnings if "outside the 80x60 image" in w]
    assert len(outside) == 2 and "'w'" in outside[0] and "hint_off" in outside[1]


def test_old_labelme_without_shape_type(tmp_path):
    poly = {"label": "water", "points": SQUARE["points"]}
    hint = {"label": "hint", "points": [[20, 20], [30, 25]]}
    folder = blank_scene(tmp_path / "s", [poly, hint])
    result = build_mask(folder)
    assert result.region_labels == ["water"] and result.hints == [Hint((20.0, 20.0), (30.0, 25.0), 1, "hint")]


def test_preview_tints_regions_and_draws_hints():
    image = np.full((40, 60, 3), 100, np.uint8)
    regions = np.zeros((40, 60), np.int32)
    regions[5:15, 5:15] = 1
    out = render_preview(image, regions, [Hint((30.0, 30.0), (50.0, 30.0), 0)])
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out[10, 10], image[10, 10]) and np.array_equal(out[2, 2], image[2, 2])
    assert not np.array_equal(out[30, 40], image[30, 40])  # the arrow
    with pytest.raises(ValueError, match="differ in size"):
        render_preview(image, regions[:10], [])


# ----------------------------------------------------------------------------- bad input


def _bad_cases():
    def no_json(f):
        (f / "image.json").unlink()

    def not_json(f):
        (f / "image.json").write_text("{ not json")

    def not_labelme(f):
        (f / "image.json").write_text(json.dumps({"version": "5", "objects": []}))

    def shape_without_points(f):
        edit_json(f, lambda d: d["shapes"].append({"label": "x", "shape_type": "polygon"}))

    def nan_point(f):
        (f / "image.json").write_text((f / "image.json").read_text().replace("[10, 10]", "[NaN, 10]", 1))

    def unreadable_image(f):
        (f / "image.png").write_bytes(b"not a png at all")

    def wrong_size(f):
        edit_json(f, lambda d: d.update(imageWidth=81))

    def no_image(f):
        (f / "image.png").unlink()

    def bad_image_data(f):
        (f / "image.png").unlink()
        edit_json(f, lambda d: d.update(imageData=base64.b64encode(b"garbage").decode()))

    def no_region(f):
        edit_json(f, lambda d: d.update(shapes=[HINT]))

    def no_hint(f):
        edit_json(f, lambda d: d.update(shapes=[SQUARE]))

    def two_point_polygon(f):
        edit_json(f, lambda d: d["shapes"].append(shape("w", "polygon", [(1, 1), (5, 5)])))

    def three_point_hint(f):
        edit_json(f, lambda d: d["shapes"].append(shape("hint_9", "line", [(1, 1), (5, 5), (9, 9)])))

    def three_point_circle(f):
        edit_json(f, lambda d: d["shapes"].append(shape("c", "circle", [(1, 1), (5, 5), (9, 9)])))

    def region_outside(f):
        edit_json(f, lambda d: d.update(shapes=[shape("w", "polygon", [(200, 200), (300, 200), (300, 300)]), HINT]))

    return {
        "missing json": (no_json, "image.json is missing"),
        "not json": (not_json, "is not valid JSON"),
        "not labelme": (not_labelme, "is not a labelme annotation"),
        "shape without points": (shape_without_points, "no valid 'points'"),
        "nan point": (nan_point, "no valid 'points'"),
        "unreadable image": (unreadable_image, "is not a readable image"),
        "size mismatch": (wrong_size, "is 80x60 but image.json says 81x60"),
        "no image": (no_image, "no photo for"),
        "bad imageData": (bad_image_data, "imageData embedded in"),
        "no region": (no_region, "has no motion region"),
        "no hint": (no_hint, "has no motion hint"),
        "polygon < 3 points": (two_point_polygon, "a polygon needs >= 3"),
        "hint != 2 points": (three_point_hint, "a hint line needs exactly 2"),
        "circle != 2 points": (three_point_circle, "a circle needs 2"),
        "region outside image": (region_outside, "lies outside the image"),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, case, capsys):
    breaker, message = _bad_cases()[case]
    folder = blank_scene(tmp_path / "s", [SQUARE, HINT])
    breaker(folder)
    before = snapshot(folder)
    with pytest.raises(UserError) as info:
        build_mask(folder)
    assert message in str(info.value)
    assert run_cli(folder) == 2
    err_lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err_lines) == 1 and message in err_lines[0] and "Fix:" in err_lines[0]
    assert snapshot(folder) == before


def test_missing_folder(tmp_path):
    with pytest.raises(UserError, match="is not a folder"):
        build_mask(tmp_path / "nope")


def test_failed_rerun_keeps_previous_outputs(toy_scene):
    assert run_cli(toy_scene) == 0
    before = snapshot(toy_scene)
    edit_json(toy_scene, lambda d: d.update(shapes=[s for s in d["shapes"] if s["shape_type"] != "line"]))
    assert run_cli(toy_scene) == 2
    after = snapshot(toy_scene)
    after.pop("image.json")
    before.pop("image.json")
    assert after == before


def test_size_mismatch_suggests_the_embedded_photo(tmp_path, toy):
    folder = save_scene(toy, tmp_path / "s")
    Image.fromarray(toy.image[:32]).save(folder / "image.png")
    with pytest.raises(UserError, match=r"remove image\.png to use the photo embedded"):
        build_mask(folder)


def test_file_and_image_data_disagree_without_json_size(tmp_path, toy):
    folder = save_scene(toy, tmp_path / "s")
    Image.fromarray(toy.image[:32]).save(folder / "image.png")
    edit_json(folder, lambda d: (d.pop("imageWidth"), d.pop("imageHeight")))
    with pytest.raises(UserError, match=r"but the photo embedded in image\.json is 96x64"):
        build_mask(folder)


@pytest.mark.parametrize(
    ("breaker", "message"),
    [
        (lambda f: (f / "image.json").write_text("[1, 2"), "is not valid JSON"),
        (lambda f: edit_json(f, lambda d: d.update(shapes=[SQUARE])), "has no motion hint"),
    ],
)
def test_subprocess_exit_2_one_line_no_traceback(tmp_path, breaker, message):
    folder = blank_scene(tmp_path / "s", [SQUARE, HINT])
    breaker(folder)
    before = snapshot(folder)
    proc = subprocess.run([PYTHON, str(SCRIPT), "--input_dir", str(folder)], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert "Traceback" not in proc.stderr
    assert snapshot(folder) == before


def test_subprocess_missing_folder_and_missing_option(tmp_path):
    proc = subprocess.run([PYTHON, str(SCRIPT), "--inputdir", str(tmp_path / "x")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "is not a folder" in proc.stderr
    proc = subprocess.run([PYTHON, str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 2 and "--input_dir" in proc.stderr and "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- real scenes


def _copy_scene(name: str, dest: Path, with_legacy: bool = True) -> Path:
    src = real_scene(name)
    ignore = None if with_legacy else shutil.ignore_patterns("image_json")
    shutil.copytree(src, dest, ignore=ignore)
    for p in [dest, *dest.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)  # the shared copy is read-only
    return dest


def _polygons(doc: dict) -> list[np.ndarray]:
    return [
        np.asarray(s["points"], np.float64)
        for s in doc["shapes"]
        if s["shape_type"] == "polygon" and not s["label"].lower().startswith("hint")
    ]


def _coverage_reference(doc: dict, supersample: int = 8) -> np.ndarray:
    """An independent rasterisation (OpenCV, 8x supersampled): pixels at least half covered by a polygon."""
    s, h, w = supersample, doc["imageHeight"], doc["imageWidth"]
    fine = np.zeros((h * s, w * s), np.uint8)
    for p in _polygons(doc):
        # Pixel i spans [i - 0.5, i + 0.5]: its sub-pixel centres are at (i - 0.5) * s + 0.5 + k.
        cv2.fillPoly(fine, [np.round(((p + 0.5) * s - 0.5) * 16).astype(np.int32)], 1, shift=4)
    return fine.reshape(h, s, w, s).mean(axis=(1, 3)) >= 0.5


def _near_edges(doc: dict) -> np.ndarray:
    """Pixels within one pixel of a polygon edge."""
    edge = np.zeros((doc["imageHeight"], doc["imageWidth"]), np.uint8)
    for p in _polygons(doc):
        cv2.polylines(edge, [np.round(p * 16).astype(np.int32)], True, 1, 1, shift=4)
    return cv2.dilate(edge, np.ones((3, 3), np.uint8)) > 0


def _labelme_reference(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(motion pixels, pixels painted by hint strokes) of image_json/label.png, labelme's own rasterisation."""
    names = (folder / "image_json" / "label_names.txt").read_text().split()
    label = np.asarray(Image.open(folder / "image_json" / "label.png"))
    hint_ids = [i for i, n in enumerate(names) if n.startswith("hint")]
    motion_ids = [i for i, n in enumerate(names) if i > 0 and not n.startswith("hint")]
    return np.isin(label, motion_ids), np.isin(label, hint_ids)


@pytest.mark.real
@pytest.mark.parametrize(("name", "n_hints"), [("mom_scene_0", 6), ("cine_0", 5)])
def test_real_scene(tmp_path, name, n_hints):
    folder = _copy_scene(name, tmp_path / name)
    assert run_cli(folder) == 0
    doc = json.loads((folder / "image.json").read_text())
    mask = read_mask(folder / "mask.png")
    assert mask.shape == (720, 1280)
    # labelme's own rasterisation (the old tool's label.png): identical wherever no hint stroke was painted.
    theirs, hint_strokes = _labelme_reference(folder)
    np.testing.assert_array_equal(mask[~hint_strokes], theirs[~hint_strokes])
    # An independent rasteriser: the regions agree up to the pixel-boundary convention (thin river: ~1.5 %).
    expected = _coverage_reference(doc)
    assert (mask & expected).sum() / (mask | expected).sum() >= 0.98
    assert not ((mask ^ expected) & ~_near_edges(doc)).any()
    regions = read_labels(folder / "regions.png")
    assert regions.max() == 3
    hints = read_hints(folder / "hints.json")
    assert len(hints) == n_hints
    lines = [s for s in doc["shapes"] if s["shape_type"] == "line"]
    for hint, s in zip(hints, lines, strict=True):
        assert hint.start == tuple(s["points"][0]) and hint.end == tuple(s["points"][1]) and hint.label == s["label"]
        assert hint.region == regions[round(hint.start[1]), round(hint.start[0])] > 0
    assert max(max(h.start[0], h.end[0]) for h in hints) > 512  # full-resolution, not a 512 box
    np.testing.assert_array_equal(read_rgb(folder / "image_rgb.png"), read_rgb(folder / "image.png"))


@pytest.mark.real
def test_real_scene_legacy_image_json(tmp_path):
    folder = _copy_scene("mom_scene_0", tmp_path / "mom")
    assert run_cli(folder / "image_json", flag="--inputdir") == 0
    assert (folder / "manifests" / "mask.json").is_file() and not (folder / "image_json" / "mask.png").exists()
    legacy = data_files(snapshot(folder))
    assert run_cli(folder) == 0  # the same outputs as the plain mode
    assert data_files(snapshot(folder)) == legacy
    (folder / "image.json").unlink()
    (folder / "image.png").unlink()
    with pytest.raises(UserError, match="only painted strokes"):
        build_mask(folder / "image_json")


def test_legacy_folder_photo_and_cross_check(tmp_path, toy):
    # The legacy folder's img.png is used when the scene has no photo file; label.png is cross-checked.
    folder = save_scene(toy, tmp_path / "s")
    legacy = folder / "image_json"
    legacy.mkdir()
    (folder / "image.png").rename(legacy / "img.png")
    edit_json(folder, lambda d: d.update(imageData=None, imagePath="elsewhere.png"))
    names = ["_background_", "water", "cloud", "hint_0"]
    (legacy / "label_names.txt").write_text("\n".join(names) + "\n")
    label = toy.regions.astype(np.uint8).copy()
    Image.fromarray(label).save(legacy / "label.png")
    result = build_mask(legacy)
    assert result.image_path == legacy / "img.png" and result.scene.root == folder
    assert not result.warnings
    label[:] = 0  # label.png that disagrees -> warning, image.json still used
    Image.fromarray(label).save(legacy / "label.png")
    result = build_mask(legacy)
    np.testing.assert_array_equal(result.regions, toy.regions)
    assert any("disagrees with image.json" in w for w in result.warnings)


def test_a_million_point_polygon_is_rasterised(tmp_path):
    """An absurdly detailed polygon (an AI tool's outline, or hostile) is handled: a million points in a few seconds."""
    t = np.linspace(0.0, 2.0 * np.pi, 1_000_000, endpoint=False)
    ring = np.stack([40 + 20 * np.cos(t), 30 + 20 * np.sin(t)], 1)
    folder = blank_scene(tmp_path / "s", [shape("water", "polygon", ring.tolist()), HINT])
    result = build_mask(folder)
    yy, xx = np.mgrid[0:60, 0:80]
    disc = (xx - 40) ** 2 + (yy - 30) ** 2 <= 19**2
    assert result.regions[disc].all() and result.regions.sum() < (np.pi * 21**2)


def test_generate_mask_runs_without_importing_torch(tmp_path):
    """The first stage needs no torch: importing it costs seconds per process (more where Python keeps no
    bytecode cache)."""
    save_scene(make_landscape(96, 64, seed=3), tmp_path)
    code = (
        "import sys, runpy; sys.argv = ['generate_mask.py', '--input_dir', sys.argv[1]];"
        "\ntry: runpy.run_path('scripts/generate_mask.py', run_name='__main__')"
        "\nexcept SystemExit as e: assert not e.code, e.code"
        "\nassert 'torch' not in sys.modules, 'torch was imported'"
    )
    done = subprocess.run([PYTHON, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "mask.png").is_file()
