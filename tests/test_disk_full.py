"""A full disk: refused up front when the estimate does not fit, one line when a write fails with ENOSPC anyway;
the earlier outputs are intact and the run after space is freed completes.

The disk is simulated (no test can mount a small filesystem everywhere): ``utils.space.free_bytes`` reports
little space, or ``numpy.save`` (every .npy output goes through it) fails with ``OSError(ENOSPC)`` after a
few files, as a disk filling up mid-run does.
"""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest

import utils.space
from scene.manifest import require_stage
from scene.paths import ScenePaths
from tests.pipeline_fixtures import TINY, diff, pipeline, snapshot  # noqa: F401 (fixture)
from utils.cli import run_main


def _main(stage: str):
    if stage == "motion":
        import train_motion

        return train_motion.main
    if stage == "gaussians":
        import train_4DGS

        return train_4DGS.main
    if stage == "render":
        import render_4DGS

        return render_4DGS.main
    from scripts.generate_mask import main

    return main


def _run(stage: str, scene: Path) -> int:
    return run_main(_main(stage), ["--input_dir", str(scene), *TINY[stage]])


@pytest.mark.parametrize(
    ("stage", "state"), [("mask", "raw"), ("motion", "mask"), ("gaussians", "motion"), ("render", "gaussians")]
)
def test_too_little_space_is_refused_before_any_write(pipeline, tmp_path, monkeypatch, capsys, stage, state):  # noqa: F811
    scene = pipeline.copy(state, tmp_path / "scene")
    before = snapshot(scene)
    monkeypatch.setattr(utils.space, "free_bytes", lambda folder: 3 << 10)  # 3 kB free
    assert _run(stage, scene) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "has 0 MB free" in err[0] and "needs about" in err[0] and "Fix:" in err[0], err
    assert not diff(before, snapshot(scene))


def _disk_fills_after(monkeypatch, files: int) -> None:
    """numpy.save succeeds ``files`` times, then the disk is full."""
    real, calls = np.save, [0]

    def save(*args, **kwargs):
        calls[0] += 1
        if calls[0] > files:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(np, "save", save)


def test_disk_full_mid_train_motion(pipeline, tmp_path, monkeypatch, capsys):  # noqa: F811
    """Over a finished stage 1: the full disk stops the re-run; the old outputs stay valid; after, it completes."""
    scene = pipeline.copy("motion", tmp_path / "scene")
    before = snapshot(scene)
    _disk_fills_after(monkeypatch, 3)
    assert run_main(_main("motion"), ["--input_dir", str(scene), *TINY["motion"], "--train_iteration", "12"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(err) == 1 and f"the disk holding {scene} is full" in err[0] and "needs about" in err[0], err
    assert not diff(before, snapshot(scene)), "the earlier outputs changed"
    require_stage(ScenePaths(scene), "motion")  # still vouched for
    monkeypatch.undo()  # space freed
    assert run_main(_main("motion"), ["--input_dir", str(scene), *TINY["motion"], "--train_iteration", "12"]) == 0
    require_stage(ScenePaths(scene), "motion")
    assert not list(scene.glob(".*partial*")) and not list(scene.rglob(".*.tmp*"))


def test_disk_full_mid_render(pipeline, tmp_path, monkeypatch, capsys):  # noqa: F811
    """A full disk while the videos are written: the earlier videos and their manifest as they were."""
    import render.videos

    scene = pipeline.copy("render", tmp_path / "scene")
    before = snapshot(scene)
    real = render.videos.render_paths

    def fills_up(*args, **kwargs):
        real(*args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(render.videos, "render_paths", fills_up)
    assert _run("render", scene) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(err) == 1 and "is full" in err[0], err
    assert not diff(before, snapshot(scene))
    monkeypatch.undo()
    assert _run("render", scene) == 0
    require_stage(ScenePaths(scene), "render")


def test_estimates_cover_what_the_stages_wrote(pipeline):  # noqa: F811
    """utils/space.py's estimates are at least what the tiny pipeline's stages actually wrote."""
    from PIL import Image

    final = pipeline.state("render")
    with Image.open(final / "image_rgb.png") as im:
        pixels = im.width * im.height
    wrote = sum(p.stat().st_size for p in (final / "motion").rglob("*") if p.is_file())
    assert utils.space.motion_bytes(pixels, 3, 4, 1) >= wrote
    wrote = sum(p.stat().st_size for p in (final / "gaussians").rglob("*") if p.is_file())
    assert utils.space.gaussians_bytes(300) >= wrote


def test_the_line_names_the_folder_the_stage_checked(tmp_path, monkeypatch):
    """However the scene was named on the command line, the line names the folder require_space checked;
    before any check, the folder of the failed write."""
    monkeypatch.setattr(utils.space, "_estimate", {})
    assert utils.space.disk_full_line("/some/where").startswith("the disk holding /some/where is full")
    utils.space.require_space(tmp_path, 1, "a stage")
    line = utils.space.disk_full_line("/some/where")
    assert line.startswith(f"the disk holding {tmp_path} is full") and "a stage needs about 1 MB" in line
