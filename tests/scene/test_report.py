"""report.html: built from the scene folder; loads in headless Chromium with every picture and video resolved."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scene.paths import ScenePaths
from scene.report import build_report, write_report
from tests.pipeline_fixtures import pipeline  # noqa: F401 (fixture)
from utils.video import write_mp4

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _scene_with_mask_stage(folder: Path) -> ScenePaths:
    subprocess.run([sys.executable, str(ROOT / "scripts/generate_mask.py"), "--input_dir", str(folder)], check=True)
    return ScenePaths(folder)


def test_report_lists_stages_and_warnings(toy_scene):
    scene = _scene_with_mask_stage(toy_scene)
    page = scene.report.read_text()
    assert "mask_preview.png" in page and page.count("not run yet") == 3
    manifest = json.loads(scene.manifest("mask").read_text())
    manifest["info"]["warnings"] = ["depth prior used: the depth model could not be loaded"]
    scene.manifest("mask").write_text(json.dumps(manifest))
    assert 'class="warn"' in build_report(scene) and "depth prior used" in build_report(scene)


def test_report_shows_the_quality_and_training_curves(pipeline):  # noqa: F811
    page = build_report(ScenePaths(pipeline.state("render")))
    for picture in ("motion/loop_quality.png", "gaussians/training.png", "motion/motion_loss.png"):
        assert picture in page, picture


def _load_in_chromium(report: Path, screenshot: Path) -> tuple[list[str], list, list]:
    """Open ``report`` headless; returns (errors, [src, loaded] of images, [src, ok] of videos)."""
    playwright = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
        page.goto(report.as_uri(), wait_until="load")
        page.wait_for_function("[...document.querySelectorAll('video')].every(v => v.readyState >= 1 || v.error)")
        images = page.evaluate(
            "[...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])"
        )
        videos = page.evaluate("[...document.querySelectorAll('video')].map(v => [v.getAttribute('src'), !v.error])")
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return errors, images, videos


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_report_loads_in_headless_chromium(toy_scene, tmp_path):
    scene = _scene_with_mask_stage(toy_scene)
    # A rendered video as render_4DGS leaves it, and a render manifest pointing at it.
    frames = [np.full((64, 96, 3), 20 * i, np.uint8) for i in range(8)]
    write_mp4(scene.video_dir / "side.mp4", frames, fps=8)
    manifest = json.loads(scene.manifest("mask").read_text()) | {"stage": "render", "info": {"fps": 123.0}}
    manifest["outputs"] = {"video/side.mp4": "0" * 64}  # the report shows only what the manifest lists
    scene.manifest("render").write_text(json.dumps(manifest))
    write_report(scene)
    errors, images, videos = _load_in_chromium(scene.report, tmp_path / "report.png")
    assert errors == []
    assert images and all(ok for _, ok in images), images
    assert videos == [["video/side.mp4", True]]
    assert (tmp_path / "report.png").stat().st_size > 10_000


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_report_of_the_whole_pipeline_loads(pipeline, tmp_path):  # noqa: F811
    """The page the four stages leave: every stage present, every picture and video resolves, the banner."""
    folder = pipeline.copy("render", tmp_path / "scene")
    page = (folder / "report.html").read_text()
    assert "not run yet" not in page and "landscape prior" in page and 'class="warn"' in page
    errors, images, videos = _load_in_chromium(folder / "report.html", tmp_path / "report.png")
    assert errors == []
    assert len(images) >= 6 and all(ok for _, ok in images), images
    assert len(videos) >= 2 and all(ok for _, ok in videos), videos
