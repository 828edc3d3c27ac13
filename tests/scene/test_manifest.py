"""Stage manifests: completeness, staleness and the staged output folder."""

from __future__ import annotations

import pytest

from scene.io import write_json
from scene.manifest import StageRun, require_stage, staged_dir
from scene.paths import ScenePaths
from utils.errors import UserError


def _finish_mask_stage(root):
    scene = ScenePaths(root)
    (root / "image.json").write_text("{}")
    run = StageRun(scene, "mask", {"k": 1}, inputs=[scene.labelme_json])
    with run.step("work"):
        write_json(scene.hints, [])
    return scene, run.finish(outputs=[scene.hints])


def test_manifest_records_config_hashes_versions_timings(tmp_path):
    scene, manifest = _finish_mask_stage(tmp_path)
    assert manifest["config"] == {"k": 1}
    assert set(manifest["inputs"]) == {"image.json"} and set(manifest["outputs"]) == {"hints.json"}
    assert "python" in manifest["versions"] and {"work", "total"} <= set(manifest["timings_s"])
    assert require_stage(scene, "mask")["stage"] == "mask"


def test_require_stage_missing_says_which_command(tmp_path):
    with pytest.raises(UserError, match=r"run python scripts/generate_mask.py --input_dir .* first"):
        require_stage(ScenePaths(tmp_path), "mask")


def test_require_stage_detects_stale_inputs_and_modified_outputs(tmp_path):
    scene, _ = _finish_mask_stage(tmp_path)
    (tmp_path / "image.json").write_text('{"changed": true}')
    with pytest.raises(UserError, match="stale"):
        require_stage(scene, "mask")
    scene, _ = _finish_mask_stage(tmp_path)
    scene.hints.write_text("[1]")
    with pytest.raises(UserError, match="was modified"):
        require_stage(scene, "mask")
    scene.hints.unlink()
    with pytest.raises(UserError, match="incomplete"):
        require_stage(scene, "mask")


def test_staged_dir_swaps_only_on_success(tmp_path):
    final = tmp_path / "motion"
    with staged_dir(final) as tmp:
        (tmp / "a.txt").write_text("first")
    assert (final / "a.txt").read_text() == "first"
    with pytest.raises(KeyboardInterrupt), staged_dir(final) as tmp:
        (tmp / "a.txt").write_text("second")
        raise KeyboardInterrupt
    assert (final / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["motion"]


def _settled_mask_stage(root, monkeypatch):
    """A finished mask stage whose files are older than RACY_S, so their stat keys are recorded."""
    import scene.manifest as manifest_module

    scene = ScenePaths(root)
    (root / "image.json").write_text("{}")
    write_json(scene.hints, [0, 1, 2])
    monkeypatch.setattr(manifest_module, "RACY_S", 0.02)
    import time

    time.sleep(0.05)
    run = StageRun(scene, "mask", {"k": 1}, inputs=[scene.labelme_json])
    return scene, run.finish(outputs=[scene.hints])


def test_settled_files_are_checked_by_their_stat_keys_not_read_again(tmp_path, monkeypatch):
    import scene.manifest as manifest_module

    scene, manifest = _settled_mask_stage(tmp_path, monkeypatch)
    assert set(manifest["stat_keys"]) == {"image.json", "hints.json"}
    reads = []
    monkeypatch.setattr(manifest_module, "_sha256", lambda path: reads.append(path) or "unused")
    manifest_module._DIGESTS.clear()  # as in a new process
    assert require_stage(scene, "mask")["stage"] == "mask"
    assert reads == []


def test_a_same_size_rewrite_is_found_even_with_its_mtime_put_back(tmp_path, monkeypatch):
    import os

    import scene.manifest as manifest_module

    scene, _ = _settled_mask_stage(tmp_path, monkeypatch)
    before = scene.hints.stat()
    text = scene.hints.read_text()
    scene.hints.write_text(text.replace("1", "7"))  # same size, at once
    os.utime(scene.hints, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime as it was; ctime cannot be
    assert scene.hints.stat().st_size == before.st_size
    manifest_module._DIGESTS.clear()
    with pytest.raises(UserError, match="was modified"):
        require_stage(scene, "mask")
