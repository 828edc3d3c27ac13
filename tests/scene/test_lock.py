"""scene/lock.py: one run per scene; a second is refused naming the first; a killed run's lock is taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from scene.lock import LOCK_NAME, scene_lock
from tests.conftest import ROOT
from tests.pipeline_fixtures import run_stage
from utils.errors import UserError

HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from scene.lock import scene_lock
with scene_lock({scene!r}, "train_4DGS.py --input_dir S (holding)"):
    open({ready!r}, "w").close()
    time.sleep(60)
"""


def _hold(scene, tmp_path) -> subprocess.Popen:
    ready = tmp_path / "ready"
    code = HOLDER.format(root=str(ROOT), scene=str(scene), ready=str(ready))
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the holder did not start"
        time.sleep(0.02)
    return proc


def test_a_second_run_is_refused_naming_the_first(tmp_path, toy_scene):
    holder = _hold(toy_scene, tmp_path)
    try:
        with (
            pytest.raises(
                UserError, match=rf"in use by `train_4DGS.py --input_dir S \(holding\)` \(process {holder.pid}\)"
            ),
            scene_lock(toy_scene),
        ):
            pass
        before = sorted(p.name for p in toy_scene.iterdir())
        proc = run_stage("mask", toy_scene, check=False)
        assert proc.returncode == 2 and f"process {holder.pid}" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert sorted(p.name for p in toy_scene.iterdir()) == before  # nothing written
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_runs_lock_is_taken_over_and_removed(tmp_path, toy_scene, capsys):
    holder = _hold(toy_scene, tmp_path)
    holder.kill()  # SIGKILL: the kernel drops the flock, the file with its process id stays
    holder.wait()
    assert json.loads((toy_scene / LOCK_NAME).read_text())["pid"] == holder.pid
    with scene_lock(toy_scene, "generate_mask.py"):
        assert json.loads((toy_scene / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert f"process {holder.pid}" in capsys.readouterr().err
    assert not (toy_scene / LOCK_NAME).exists()


def test_the_lock_goes_away_after_an_error(toy_scene):
    with pytest.raises(RuntimeError), scene_lock(toy_scene):
        raise RuntimeError("boom")
    assert not (toy_scene / LOCK_NAME).exists()
    with scene_lock(toy_scene):  # and the next run takes it at once
        pass
