"""Interrupted runs: a stage killed with SIGKILL mid-run leaves the earlier outputs intact, no manifest vouches
for half-written outputs, and re-running the stage finishes (train_4DGS resumes from its last checkpoint) so
that the next stage runs.

Each test copies a state of the tiny pipeline (tests/pipeline_fixtures.py), starts the stage as a
subprocess that stops at a named point of its writing (utils/failpoints.py), kills it there, checks, re-runs.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from annotation.procedural import make_landscape, save_scene
from scene.manifest import require_stage
from scene.paths import ScenePaths
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

HOLD_TIMEOUT_S = 600.0  # the stage must reach its hold point within this (a loaded machine is slow)


def kill_at(stage: str, scene: Path, point: str, *extra: str, tmp: Path) -> None:
    """Run ``stage`` until it reaches the failpoint ``point`` (utils/failpoints.py), then SIGKILL it there.

    The stage waits at the point until killed, so the kill lands at the same place of its writing
    whatever the speed or load of the machine. Fails the test if the stage exits before the point.
    """
    marker = tmp / f"hold-{stage}"
    marker.unlink(missing_ok=True)
    proc = start_stage(stage, scene, *extra, env={"MOM_HOLD_AT": point, "MOM_HOLD_FILE": str(marker)})
    deadline = time.monotonic() + HOLD_TIMEOUT_S
    try:
        while not marker.is_file():
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                pytest.fail(f"{stage} exited ({proc.returncode}) before reaching {point}: {err[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{stage} did not reach {point} within {HOLD_TIMEOUT_S} s")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


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


def assert_no_temp_litter(scene: Path) -> None:
    """After the re-run, no half-written temporary file of the killed run is left behind."""
    litter = sorted(p.relative_to(scene).as_posix() for p in scene.rglob(".*.tmp*"))
    assert not litter, f"temporary files of the killed run are left: {litter}"


def _check_kill(scene: Path, stage: str, before: dict[str, str]) -> None:
    changes = diff(before, protected(scene, stage))
    assert not changes, f"killing {stage} changed earlier outputs: {changes}"
    assert_consistent(scene, stage)


# ----------------------------------------------------------------------------- stage 0


def test_kill_generate_mask_while_writing(tmp_path):
    """Killed between dropping its manifest and writing the new one: no manifest, user files intact, re-run."""
    scene = save_scene(make_landscape(160, 96, seed=1), tmp_path / "scene")
    reference = save_scene(make_landscape(160, 96, seed=1), tmp_path / "reference")
    run_stage("mask", reference)
    run_stage("mask", scene)
    doc = json.loads((scene / "image.json").read_text())
    doc["shapes"] = [s for s in doc["shapes"] if s["label"] != "cloud"]  # the user drops a region...
    (scene / "image.json").write_text(json.dumps(doc))
    (reference / "image.json").write_text(json.dumps(doc))
    run_stage("mask", reference)  # ...and what an uninterrupted re-run makes of it
    before = protected(scene, "mask")
    manifest = scene / "manifests" / "mask.json"
    kill_at("mask", scene, "mask:write", tmp=tmp_path)
    _check_kill(scene, "mask", before)
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
    args = ("--train_iteration", "12")  # other options: the outputs must change
    kill_at("motion", scene, f"motion:{kill_point}", *args, tmp=tmp_path)
    assert (scene / ".motion.partial" / ("views" if kill_point == "views" else "motion3d.npy")).exists()
    _check_kill(scene, "motion", before)
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
    kill_at("gaussians", scene, "gaussians:checkpoint", *LONG_4DGS, tmp=tmp_path)
    _check_kill(scene, "gaussians", before)
    assert not (scene / "manifests" / "gaussians.json").exists(), "a manifest vouches for a killed training run"
    with pytest.raises(UserError):  # the render's input (the gaussians manifest) is gone: not complete either
        require_stage(ScenePaths(scene), "render")
    done = max(int(p.stem[5:]) for p in (scene / "gaussians" / "checkpoints").glob("iter_*.json"))
    assert done == 5  # held right after the first checkpoint
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
    """Killed mid-video: the earlier videos and their manifest as they were (the new ones were being made in
    SCENE/.video.partial); the re-run writes every video and clears the partial folder."""
    scene = pipeline.copy("render", tmp_path / "scene")
    before = protected(scene, "render")
    old = manifest_outputs(scene, "render")
    kill_at("render", scene, "render:video", "--paths", "circle", "side", tmp=tmp_path)
    assert list((scene / ".video.partial").glob(".*.tmp*")), "the kill point is mid-video"
    _check_kill(scene, "render", before)
    assert manifest_outputs(scene, "render") == old, "the earlier render is no longer what its manifest says"
    run_stage("render", scene, "--paths", "circle", "side")
    manifest = require_stage(ScenePaths(scene), "render")
    assert {"video/circle.mp4", "video/side.mp4"} <= set(manifest["outputs"])
    assert not (scene / ".video.partial").exists() and not (scene / ".video.old").exists()
    assert_no_temp_litter(scene)
