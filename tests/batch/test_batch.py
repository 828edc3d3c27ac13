"""scripts/batch.py and batch/: many tiny procedural scenes on a LocalCluster, on the CPU.

One batch (2 good scenes, 1 with a malformed image.json) runs the whole pipeline with tiny options once per
module on a 2-worker LocalCluster whose workers are pinned to the GPU ids "0" and "1" (CUDA is never
needed: the stages run with ``--device cpu``); the tests read what it left. The re-run goes through the
command line on a fresh local cluster.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from annotation.procedural import make_landscape, save_scene
from batch import evaluate, gpus
from batch.runner import eta_text, local_client, remote_client, run_batch
from batch.scenes import find_scenes, scene_names, summary_root
from batch.stages import FAILED, OK, SKIPPED, STAGE_SCRIPTS, TaskOptions, parse_stages, pinned_gpu
from batch.summary import COLUMNS, CSV_NAME, HTML_NAME, write_summary
from scene.paths import ScenePaths
from tests.conftest import ROOT
from tests.pipeline_fixtures import TINY
from utils.cli import run_main
from utils.errors import UserError
from utils.video import write_mp4

SIZE = (96, 64)
MOTION = (*TINY["motion"], "--n_frames", "8")  # 8 frames: frame 4 is held out, so psnr_heldout is a number
EXTRA = {
    "motion": MOTION,
    "gaussians": TINY["gaussians"],
    "render": ("--paths", "static", "--fps", "10", "--device", "cpu"),
}
CLI_EXTRA = ["--motion_args", " ".join(MOTION), "--gaussians_args", " ".join(TINY["gaussians"])]
CLI_EXTRA += ["--render_args", " ".join(EXTRA["render"])]


def _batch_main():
    spec = importlib.util.spec_from_file_location("batch_cli", ROOT / "scripts" / "batch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _make_scenes(root: Path) -> list[Path]:
    good = [save_scene(make_landscape(*SIZE, seed=s), root / f"scene_{s}") for s in (0, 1)]
    broken = save_scene(make_landscape(*SIZE, seed=2), root / "broken")
    (broken / "image.json").write_text('{"shapes": [', encoding="utf-8")  # cut off mid-file
    return [*good, broken]


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """(scenes root, results, summary dir, client) after one batch of 3 scenes on a 2-worker LocalCluster."""
    root = tmp_path_factory.mktemp("batch") / "scenes"
    _make_scenes(root)
    scenes = find_scenes(str(root))
    summary = root.parent / "summary"
    options = TaskOptions(tuple(STAGE_SCRIPTS), EXTRA, gpu_ids=("0", "1"), threads=1, log_dir=str(summary / "logs"))
    with local_client(2, options.gpu_ids) as client:
        results = run_batch(client, scenes, scene_names(scenes), options, need_gpu=True)
        write_summary(results, summary)
        yield root, {r.name: r for r in results}, summary, client


def _rows(folder: Path) -> dict[str, dict[str, str]]:
    with open(folder / CSV_NAME, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        return {row["scene"]: row for row in reader}


def test_every_scene_runs_and_the_summary_has_a_row_each(ran):
    root, results, summary, _ = ran
    assert {n: r.status for n, r in results.items()} == {"scene_0": OK, "scene_1": OK, "broken": FAILED}
    rows = _rows(summary)
    assert list(rows) == ["broken", "scene_0", "scene_1"]  # the scenes' sorted order
    for name in ("scene_0", "scene_1"):
        row, result = rows[name], results[name]
        assert result.ran == list(STAGE_SCRIPTS) and set(result.seconds) == set(STAGE_SCRIPTS)
        assert all(float(row[f"seconds_{s}"]) > 0 for s in STAGE_SCRIPTS)
        metrics = json.loads((root / name / "gaussians" / "metrics.json").read_text())
        assert float(row["psnr_heldout"]) == pytest.approx(metrics["psnr_heldout"], abs=0.01)
        assert 0 < float(row["retention_video_median"]) < 3 and 0 <= float(row["retention_render_median"]) < 3
        assert row["gt_psnr"] == "" and row["error"] == ""  # no gt.mp4 here
        assert (summary / row["report"]).resolve() == (root / name / "report.html").resolve()
        assert (summary / row["thumbnail"]).read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG
    page = (summary / HTML_NAME).read_text()
    assert page.count("<tr title=") == 3 and page.count(">report</a>") == 2
    assert 'src="thumbnails/scene_0.jpg"' in page and "3 scene(s): 1 failed, 2 ok" in page


def test_workers_are_pinned_one_gpu_each(ran):
    _, results, summary, client = ran
    workers = client.scheduler_info()["workers"]
    seen = {
        w["name"]: client.submit(pinned_gpu, ("0", "1"), workers=[a], pure=False).result() for a, w in workers.items()
    }
    assert seen == {0: "0", 1: "1"}
    for result in results.values():  # each stage ran with its worker's GPU, as the log shows
        assert result.gpu == gpus.gpu_for_worker(result.worker, ("0", "1"))
        log = (summary / "logs" / f"{result.name}.log").read_text()
        assert f"$ CUDA_VISIBLE_DEVICES={result.gpu} " in log


def test_a_broken_scene_fails_with_its_one_line(ran):
    _, results, summary, _ = ran
    broken = results["broken"]
    assert broken.failed_stage == "mask" and broken.ran == ["mask"]
    assert broken.error.startswith("error: ") and "image.json is not valid JSON" in broken.error
    assert "Fix:" in broken.error and "\n" not in broken.error
    row = _rows(summary)["broken"]
    assert row["status"] == FAILED and row["error"] == broken.error and row["seconds_motion"] == ""
    assert row["thumbnail"]  # the photo is still there to show


def test_a_scene_broken_after_a_run_shows_no_stale_figures(ran, tmp_path):
    _, _, _, client = ran
    scene = shutil.copytree(ran[0] / "scene_0", tmp_path / "edited")
    (scene / "image.json").write_text("[]", encoding="utf-8")  # the earlier outputs stay, now stale
    [result] = run_batch(client, [scene], ["edited"], TaskOptions(threads=1), need_gpu=True)
    assert result.status == FAILED and result.failed_stage == "mask" and result.fresh == []
    write_summary([result], tmp_path)
    row = _rows(tmp_path)["edited"]
    assert (scene / "gaussians" / "metrics.json").is_file()  # there, but no longer this scene's
    assert row["psnr_heldout"] == row["retention_video_median"] == row["seconds_motion"] == ""
    assert row["seconds_mask"] != "" and row["thumbnail"]


def test_rerun_skips_fresh_scenes_runs_stale_stages_and_evaluates_gt(ran, capsys):
    root, _, _, _ = ran
    frames = evaluate.stage1_frames(ScenePaths(root / "scene_0"), 100)
    write_mp4(root / "scene_0" / evaluate.GT_VIDEO, list(frames), fps=10, quality=10)
    (root / "scene_1" / "manifests" / "render.json").unlink()  # only its last stage has to run again
    code = run_main(_batch_main(), ["--scenes", str(root), "--workers", "1", "--eval_frames", "5", *CLI_EXTRA])
    assert code == 1  # a scene failed
    err = capsys.readouterr().err
    assert "scene_0: skipped (fresh)" in err and "scene_1: ok (render " in err and "broken: failed" in err
    rows = _rows(root)
    assert [rows[n]["status"] for n in ("scene_0", "scene_1", "broken")] == [SKIPPED, OK, FAILED]
    assert rows["scene_1"]["stages_run"] == "render" and rows["scene_0"]["stages_run"] == ""
    assert float(rows["scene_0"]["seconds_motion"]) > 0  # as its manifest recorded it
    assert rows["scene_0"]["gt_frames"] == "5" and float(rows["scene_0"]["gt_psnr"]) > 30
    assert 0.9 < float(rows["scene_0"]["gt_ssim"]) <= 1.0
    lpips = rows["scene_0"]["gt_lpips"]
    assert lpips == evaluate.NO_LPIPS or 0 <= float(lpips) < 0.2


def test_gt_evaluation_ranks_a_worse_ground_truth_lower(ran, tmp_path):
    scene = shutil.copytree(ran[0] / "scene_0", tmp_path / "scene")
    ours = evaluate.stage1_frames(ScenePaths(scene), 100)
    rng = np.random.default_rng(0)
    variants = {
        "same": ours,
        "noisy": np.clip(ours + rng.normal(0, 12, ours.shape), 0, 255).astype(np.uint8),
        "shifted": np.roll(ours, 4, axis=2),
        "twice as large": np.repeat(np.repeat(ours, 2, axis=1), 2, axis=2),  # resized back to the video's size
    }
    got = {}
    for name, frames in variants.items():
        write_mp4(scene / evaluate.GT_VIDEO, list(frames), fps=10, quality=10)
        got[name] = evaluate.evaluate_scene(scene, frames=60)
        assert got[name]["frames"] == len(ours) and got[name]["size"] == list(SIZE)
        assert 10 < got[name]["psnr"] < 60 and -1 <= got[name]["ssim"] <= 1
    for worse in ("noisy", "shifted"):
        assert got[worse]["psnr"] < got["same"]["psnr"] - 3 and got[worse]["ssim"] < got["same"]["ssim"] - 0.05
    assert got["twice as large"]["psnr"] > 30
    assert evaluate.evaluate_scene(scene, frames=2)["frames"] == 2
    (scene / evaluate.GT_VIDEO).write_bytes(b"not a video")
    with pytest.raises(UserError, match=r"gt\.mp4"):
        evaluate.evaluate_scene(scene)


def test_psnr_and_ssim_known_answers():
    a = np.full((32, 32, 3), 100, np.uint8)
    assert evaluate.psnr(a, a) == float("inf") and evaluate.ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    assert evaluate.psnr(a, a + 10) == pytest.approx(10 * np.log10(255**2 / 100), abs=1e-9)
    texture = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert evaluate.ssim(texture, 255 - texture) < 0 < evaluate.ssim(texture, texture // 2 + 64) < 1


def test_task_errors_fail_their_scene_only(ran, tmp_path):
    _, _, _, client = ran
    scenes = [save_scene(make_landscape(*SIZE, seed=0), tmp_path / n) for n in ("a", "b")]
    results = run_batch(client, scenes, ["a", "b"], TaskOptions(stages=("no_such_stage",)), need_gpu=True)
    assert [(r.name, r.status, r.error) for r in results] == [
        ("a", FAILED, "KeyError: 'no_such_stage'"),
        ("b", FAILED, "KeyError: 'no_such_stage'"),
    ]


def test_a_running_scheduler_is_reached_by_its_address_or_file(ran, tmp_path):
    _, _, _, client = ran
    scheduler_file = tmp_path / "scheduler.json"  # what `dask scheduler --scheduler-file` writes
    scheduler_file.write_text(json.dumps({"type": "Scheduler", "address": client.scheduler.address}))
    for address in (client.scheduler.address, str(scheduler_file)):
        with remote_client(address, timeout_s=5, need_gpu=True) as other:
            assert len(other.scheduler_info()["workers"]) == 2


SLEEPER = "import os, sys, time\nopen(sys.argv[1], 'w').write(str(os.getpid()))\ntime.sleep(120)\n"
PARENT = """import os, subprocess, sys, time
subprocess.Popen([sys.executable, "-m", "batch.child", str(os.getpid()), *sys.argv[1:]])
while not os.path.exists(sys.argv[2]):  # the stage runs (the shim has asked to die with us)
    time.sleep(0.05)
os._exit(0)  # as a killed worker: no clean-up
"""


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux only (PR_SET_PDEATHSIG)")
def test_a_stage_dies_with_its_worker(tmp_path):
    (tmp_path / "stage.py").write_text(SLEEPER)
    pid_file = tmp_path / "pid"
    subprocess.run([sys.executable, "-c", PARENT, str(tmp_path / "stage.py"), str(pid_file)], cwd=ROOT, timeout=60)
    pid = int(pid_file.read_text())
    for _ in range(400):  # up to 20 s: SIGTERM arrives at once, the poll only waits for the kernel
        if _state(pid) in (None, "Z"):
            break
        time.sleep(0.05)
    assert _state(pid) in (None, "Z"), f"stage process {pid} outlived its parent"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scenes", "{tmp}/nowhere"], "no scene folder"),
        (["--scenes", "{tmp}"], "no scene folder"),  # a folder without scenes
        (["--scenes", "{tmp}/*"], "no scene folder"),
        (["--scenes", "{scene}", "--scheduler", "tcp://127.0.0.1:{port}", "--connect_timeout", "1"], "cannot reach"),
        (["--scenes", "{scene}", "--scheduler", "not an address", "--connect_timeout", "1"], "cannot reach"),
        (["--scenes", "{scene}", "--stages", "mask,paint"], "--stages"),
        (["--scenes", "{scene}", "--gpus", "many"], "--gpus"),
        (["--scenes", "{scene}", "--motion_args", "--seed '1"], "--motion_args"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, capsys, args, message):
    scene = save_scene(make_landscape(*SIZE, seed=0), tmp_path / "sub" / "scene")
    (tmp_path / "empty").mkdir()
    fill = {"tmp": tmp_path / "empty", "scene": scene, "port": _free_port()}
    assert run_main(_batch_main(), [a.format(**fill) for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0] and "Fix:" in err[0]


def test_scene_discovery_names_and_summary_folder(tmp_path, monkeypatch):
    root = tmp_path / "shots"
    a, b = (save_scene(make_landscape(40, 32, seed=0), root / n / "take") for n in ("x", "y"))
    (root / "notes").mkdir()
    assert find_scenes(str(root / "x" / "take")) == [a]  # a scene itself
    with pytest.raises(UserError):
        find_scenes(str(root))  # its subfolders hold no image.json themselves
    found = find_scenes(str(root / "*" / "take"))
    assert found == [a, b] and scene_names(found) == ["take", "take-2"]
    assert summary_root(str(root / "*" / "take"), found) == root
    assert summary_root(str(root / "x" / "take"), [a]) == root / "x"
    assert summary_root(str(root / "x"), find_scenes(str(root / "x"))) == root / "x"
    assert scene_names([Path("p/s"), Path("q/s"), Path("r/s-2")]) == ["s", "s-3", "s-2"]
    monkeypatch.chdir(tmp_path)  # relative names become absolute: the stages run from the repository root
    assert find_scenes("shots/x/take") == [a] and find_scenes("shots/*/take") == [a, b]


def test_eta_counts_the_pace_so_far():
    assert eta_text(1, 4, 30.0) == "1/4, ETA 1 min 30 s" and eta_text(3, 4, 30.0) == "3/4, ETA 10 s"
    assert eta_text(4, 4, 125.0) == "4/4, 2 min 5 s in all" and eta_text(1, 100, 3600.0).endswith("ETA 99 h 0 min")


def test_stage_names():
    assert parse_stages("render, 4dgs,mask") == ("mask", "gaussians", "render")
    assert parse_stages("motion,motion") == ("motion",)
    for bad in ("", "mask,paint", ","):
        with pytest.raises(UserError, match="--stages"):
            parse_stages(bad)


def test_gpu_pinning_without_a_gpu():
    ids = ("0", "1")
    assert [gpus.gpu_for_worker(i, ids) for i in range(4)] == ["0", "1", "0", "1"]
    assert gpus.gpu_for_worker("3", ids) == "1" and gpus.gpu_for_worker(0, ()) == ""
    assert gpus.gpu_for_worker("node-a", ids) == gpus.gpu_for_worker("node-a", ids) in ids  # stable
    assert gpus.visible_ids(2, {}) == ("0", "1")
    assert gpus.visible_ids(2, {"CUDA_VISIBLE_DEVICES": "2, 3"}) == ("2", "3")  # this process's GPUs, as named
    assert gpus.visible_ids(1, {"CUDA_VISIBLE_DEVICES": "5,7"}) == ("5",)
    assert gpus.local_gpus("auto", 0, {}) == () and gpus.local_gpus("auto", 2, {}) == ("0", "1")
    assert gpus.local_gpus("0", 2, {}) == () and gpus.local_gpus("1", 2, {"CUDA_VISIBLE_DEVICES": "4,6"}) == ("4",)
    for bad in ("3", "-1", "x"):
        with pytest.raises(UserError, match="--gpus"):
            gpus.local_gpus(bad, 2, {})
    assert gpus.stage_env("1", 2, base={}) == {"CUDA_VISIBLE_DEVICES": "1", "OMP_NUM_THREADS": "2"}
    assert gpus.stage_env(None, 0, base={"A": "b"}) == {"A": "b"}
    assert gpus.stage_env("", 4, base={"OMP_NUM_THREADS": "1"}) == {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    assert [gpus.threads_per_worker(w, cores=4) for w in (1, 2, 3, 8)] == [4, 2, 1, 1]
    assert pinned_gpu(None) is None and pinned_gpu(ids) == "0"  # outside a worker: as worker 0
