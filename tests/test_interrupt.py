"""Interrupted runs: a stage killed with SIGKILL mid-run leaves the earlier outputs intact, no manifest vouches
for half-written outputs, and re-running the stage finishes (train_4DGS resumes from its last checkpoint) so
that the next stage runs.

Each test copies a state of the tiny pipeline (tests/pipeline_fixtures.py), starts the stage as a
subprocess, polls the scene folder until the stage has visibly started writing, kills it, checks, re-runs.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from scene.manifest import require_stage
from scene.paths import ScenePaths
from scene.procedural import make_landscape, save_scene
from tests.pipeline_fixtures import (
    STAGES,
    diff,
    manifest_outputs,
    pipeline,  # noqa: F401 (fixture)
    run_stage,
    snapshot,
    start_stage,
)
from utils.errors import UserError

POLL_S = 0.0005  # the mask stage writes for a few milliseconds only
START_TIMEOUT_S = 300.0  # the stage must reach its kill point within this (a loaded machine is slow)


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool]) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()``; True if it was killed, False if it ended by itself first."""
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            if ready():
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=60)
                return True
            if proc.poll() is not None:
                return False
            time.sleep(POLL_S)
        pytest.fail(f"the stage did not reach its kill point within {START_TIMEOUT_S} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    return False  # unreachable (pytest.fail raises); keeps type checkers calm


def protected(scene: Path, stage: str) -> dict[str, str]:
    """Snapshot of what the stages before ``stage`` produced (and the user's files): must survive a kill."""
    snap = snapshot(scene)
    earlier = STAGES[: STAGES.index(stage)]
    owned = {"image.json", "image.png"}
    for s in earlier:
        owned |= {f"manifests/{s}.json", *manifest_outputs(scene, s)}
    return {k: v for k, v in snap.items() if k in owned}


def assert_consistent(scene: Path, killed: str) -> None:
    """Earlier stages still verify; the killed stage's manifest is absent or vouches for intact outputs."""
    paths = ScenePaths(scene)
    for stage in STAGES[: STAGES.index(killed)]:
        require_stage(paths, stage)
    if paths.manifest(killed).is_file():
        try:
            require_stage(paths, killed)
        except UserError as exc:
            pytest.fail(f"the '{killed}' manifest survived the kill but its outputs do not match: {exc}")


def _exists(scene: Path, pattern: str) -> Callable[[], bool]:
    """Ready once a file matching ``pattern`` exists that did not exist when this was called."""
    old = set(scene.glob(pattern))
    return lambda: any(p not in old for p in scene.glob(pattern))


def assert_no_temp_litter(scene: Path) -> None:
    """After the re-run, no half-written temporary file of the killed run is left behind."""
    litter = sorted(p.relative_to(scene).as_posix() for p in scene.rglob(".*.tmp*"))
    assert not litter, f"temporary files of the killed run are left: {litter}"


def _check_kill(scene: Path, stage: str, before: dict[str, str], killed: bool) -> None:
    assert killed, f"{stage} finished before it could be killed: the kill point came too late"
    changes = diff(before, protected(scene, stage))
    assert not changes, f"killing {stage} changed earlier outputs: {changes}"
    assert_consistent(scene, stage)


# ----------------------------------------------------------------------------- stage 0


def test_kill_generate_mask_while_writing(tmp_path):
    """Killed between dropping its manifest and writing the new one: no manifest, user files intact, re-run."""
    # A larger photo than the tiny pipeline's, so that writing its outputs takes long enough to be caught.
    scene = save_scene(make_landscape(640, 360, seed=1), tmp_path / "scene")
    reference = save_scene(make_landscape(640, 360, seed=1), tmp_path / "reference")
    run_stage("mask", reference)
    run_stage("mask", scene)
    doc = json.loads((scene / "image.json").read_text())
    doc["shapes"] = [s for s in doc["shapes"] if s["label"] != "cloud"]  # the user drops a region...
    (scene / "image.json").write_text(json.dumps(doc))
    (reference / "image.json").write_text(json.dumps(doc))
    run_stage("mask", reference)  # ...and what an uninterrupted re-run makes of it
    before = protected(scene, "mask")
    manifest = scene / "manifests" / "mask.json"
    killed = kill_when(start_stage("mask", scene), lambda: not manifest.exists())
    _check_kill(scene, "mask", before, killed)
    assert not manifest.exists(), "the old manifest vouches for outputs that are being replaced"
    with pytest.raises(UserError, match="no complete 'mask' outputs"):
        require_stage(ScenePaths(scene), "mask")
    run_stage("mask", scene)
    assert manifest_outputs(scene, "mask") == manifest_outputs(reference, "mask")
    require_stage(ScenePaths(scene), "mask")
    assert_no_temp_litter(scene)


# ----------------------------------------------------------------------------- stage 1


@pytest.mark.slow
@pytest.mark.parametrize("kill_point", ["views", "motion3d"])
def test_kill_train_motion_then_rerun(pipeline, tmp_path, kill_point):  # noqa: F811
    """Killed while building .motion.partial over complete outputs: the old ones stay valid; a re-run replaces them."""
    scene = pipeline.copy("motion", tmp_path / "scene")
    old = manifest_outputs(scene, "motion")
    before = protected(scene, "motion")
    target = {"views": ".motion.partial/views/*.png", "motion3d": ".motion.partial/motion3d.npy"}[kill_point]
    args = ("--train_iteration", "12")  # other options: the outputs must change
    killed = kill_when(start_stage("motion", scene, *args), _exists(scene, target))
    _check_kill(scene, "motion", before, killed)
    if (scene / "manifests" / "motion.json").is_file():  # killed before the swap: the old outputs, intact
        assert manifest_outputs(scene, "motion") == old
    run_stage("motion", scene, *args)
    assert not (scene / ".motion.partial").exists() and not (scene / ".motion.old").exists()
    assert manifest_outputs(scene, "motion") != old
    require_stage(ScenePaths(scene), "motion")
    assert_no_temp_litter(scene)
    run_stage("gaussians", scene)
    require_stage(ScenePaths(scene), "gaussians")


# ----------------------------------------------------------------------------- stage 2

LONG_4DGS = ("--coarse_iterations", "30", "--fine_iterations", "60", "--checkpoint_every", "5")


@pytest.mark.slow
def test_kill_train_4dgs_then_resume(pipeline, tmp_path):  # noqa: F811
    """Killed after a checkpoint: stage 1 intact, no gaussians manifest; the re-run resumes, then render works."""
    scene = pipeline.copy("render", tmp_path / "scene")  # over a finished run of other options
    before = protected(scene, "gaussians")
    killed = kill_when(start_stage("gaussians", scene, *LONG_4DGS), _exists(scene, "gaussians/checkpoints/iter_*.json"))
    _check_kill(scene, "gaussians", before, killed)
    assert not (scene / "manifests" / "gaussians.json").exists(), "a manifest vouches for a killed training run"
    with pytest.raises(UserError):  # the render's input (the gaussians manifest) is gone: not complete either
        require_stage(ScenePaths(scene), "render")
    done = max(int(p.stem[5:]) for p in (scene / "gaussians" / "checkpoints").glob("iter_*.json"))
    assert 5 <= done < 90
    proc = run_stage("gaussians", scene, *LONG_4DGS)
    said = proc.stdout + proc.stderr
    assert "resuming from" in said, said
    resumed_at = int(said.split("resuming from", 1)[1].split("(iteration", 1)[1].split(")", 1)[0])
    assert resumed_at >= done - 5  # the newest checkpoint (or the one before, if the newest was half-written)
    metrics = json.loads((scene / "gaussians" / "metrics.json").read_text())
    assert metrics["iterations"] == 90
    logged = [row[0] for row in metrics["loss_curve"]]
    assert logged == sorted(logged) and logged[0] <= resumed_at < logged[-1]  # the curve continues the killed run's
    require_stage(ScenePaths(scene), "gaussians")
    assert_no_temp_litter(scene)
    run_stage("render", scene)
    require_stage(ScenePaths(scene), "render")


# ----------------------------------------------------------------------------- stage 3


def test_kill_render_then_rerun(pipeline, tmp_path):  # noqa: F811
    """Killed mid-video: the trained model intact, no render manifest; the re-run writes every video."""
    scene = pipeline.copy("render", tmp_path / "scene")
    before = protected(scene, "render")
    long = ("--paths", "circle", "side", "--loops", "100")
    killed = kill_when(start_stage("render", scene, *long), _exists(scene, "video/.*.tmp*"))
    _check_kill(scene, "render", before, killed)
    assert not (scene / "manifests" / "render.json").exists(), "a manifest vouches for a killed render"
    run_stage("render", scene, "--paths", "circle", "side")
    manifest = require_stage(ScenePaths(scene), "render")
    assert {"video/circle.mp4", "video/side.mp4"} <= set(manifest["outputs"])
    assert_no_temp_litter(scene)
