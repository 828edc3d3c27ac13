"""One scene's task: its stage scripts run one after the other as subprocesses, exactly as a user runs them.

So every per-scene guarantee of the stages holds (one stage per scene at a time through ``SCENE/.lock``,
one-line errors with exit code 2, train_4DGS resuming from its checkpoints). A stage whose manifest is
complete and fresh — its whole chain verified by ``scene.manifest.require_stage`` — is not run again; a
scene whose requested stages are all fresh is "skipped (fresh)". A stage that fails ends the scene's task
with the last line of its stderr; it never raises, so the other scenes go on.

:func:`run_scene` is what a Dask worker runs; it also runs as a plain function (no worker: no GPU pinning).
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from batch.gpus import gpu_for_worker, stage_env
from utils.errors import UserError

ROOT = Path(__file__).resolve().parents[1]  # the worker's checkout: its scripts and its Python run the stages
STAGE_SCRIPTS = {  # pipeline order; the names of scene/manifest.py's manifests
    "mask": "scripts/generate_mask.py",
    "motion": "train_motion.py",
    "gaussians": "train_4DGS.py",
    "render": "render_4DGS.py",
}
FIXED_ARGS = {"gaussians": ("--flow_scale", "2")}  # the README's command; options given after it override it
STAGE_ALIASES = {"4dgs": "gaussians", "gaussian": "gaussians", "mask": "mask", "motion": "motion", "render": "render"}
OK, SKIPPED, FAILED = "ok", "skipped (fresh)", "failed"
PINNED_VARS = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")  # what batch.gpus.stage_env may set


def parse_stages(text: str) -> tuple[str, ...]:
    """``mask,motion,4dgs,render`` (any subset, any order, ``4dgs`` = ``gaussians``) -> the stages in pipeline order."""
    names = [s.strip().lower() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in STAGE_SCRIPTS and n not in STAGE_ALIASES]
    if unknown or not names:
        raise UserError(
            f"--stages {text!r} names no stage or an unknown one ({', '.join(unknown) or 'empty'})",
            "give a comma-separated subset of mask,motion,4dgs,render",
        )
    chosen = {STAGE_ALIASES.get(n, n) for n in names}
    return tuple(s for s in STAGE_SCRIPTS if s in chosen)


@dataclass
class TaskOptions:
    """What every scene's task does (the same for all scenes of a batch; pickled to the workers)."""

    stages: tuple[str, ...] = tuple(STAGE_SCRIPTS)
    extra_args: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per stage, after FIXED_ARGS
    force: bool = False  # run every requested stage even when fresh
    eval_frames: int = 60  # frames of stage 1's video compared with gt.mp4
    gpu_ids: tuple[str, ...] | None = None  # None: leave CUDA_VISIBLE_DEVICES; else worker i gets gpu_ids[i]
    threads: int = 0  # OMP_NUM_THREADS of the stages when the user set none (0: leave it)
    log_dir: str | None = None  # every stage's stdout and stderr go to LOG_DIR/<scene name>.log


@dataclass
class SceneResult:
    """What one scene's task did. ``seconds``: wall time of each stage run now (subprocess, start-up included)."""

    name: str
    path: str
    status: str  # OK, SKIPPED or FAILED
    error: str = ""  # the failing stage's last stderr line (or why the task itself failed)
    failed_stage: str = ""
    ran: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    fresh: list[str] = field(default_factory=list)  # the stages complete and fresh when the task ended
    evaluation: dict | None = None  # batch.evaluate.evaluate_scene's figures when SCENE/gt.mp4 exists
    worker: str = ""
    gpu: str | None = None


def is_fresh(scene: Path, stage: str) -> bool:
    """Whether ``stage``'s outputs are complete and its whole chain back to the user's files is unchanged."""
    from scene.manifest import require_stage
    from scene.paths import ScenePaths

    try:
        require_stage(ScenePaths(scene), stage)
    except Exception:  # any doubt (a damaged manifest too) means run the stage: it then says what is wrong
        return False
    return True


def fresh_stages(scene: Path) -> list[str]:
    """The stages, from the first on, whose outputs are complete and fresh (each stage's own check, once)."""
    from scene.manifest import check_stage
    from scene.paths import ScenePaths

    fresh = []
    for stage in STAGE_SCRIPTS:
        try:
            check_stage(ScenePaths(scene), stage)
        except Exception:  # as in is_fresh: the chain is broken here
            break
        fresh.append(stage)
    return fresh


def stage_command(stage: str, scene: Path, extra: tuple[str, ...] = ()) -> list[str]:
    """The command line of ``stage`` on ``scene``, run with this worker's Python from the repository root."""
    script = str(ROOT / STAGE_SCRIPTS[stage])
    return [sys.executable, script, "--input_dir", str(scene), *FIXED_ARGS.get(stage, ()), *extra]


def run_stage(cmd: list[str], env: dict[str, str], log: IO[str]) -> tuple[int, str]:
    """Run one stage; its stdout and stderr go to ``log``. Returns (exit code, last non-empty stderr line)."""
    changed = [f"{k}={env[k]}" for k in PINNED_VARS if k in env and os.environ.get(k) != env[k]]
    log.write(f"$ {' '.join([*changed, *cmd])}\n")  # the variables the batch set, as a shell would show them
    log.flush()
    tail: collections.deque[str] = collections.deque(maxlen=1)
    shim = [sys.executable, "-m", "batch.child", str(os.getpid()), *cmd[1:]]  # the stage, dying with this worker
    proc = subprocess.Popen(shim, cwd=ROOT, env=env, stdout=log, stderr=subprocess.PIPE, text=True, errors="replace")
    try:
        for line in proc.stderr:  # stdout goes to the file directly, so reading stderr alone cannot block
            log.write(line)
            if line.strip():
                tail.append(line.strip())
        code = proc.wait()
    finally:
        if proc.poll() is None:  # the task itself was interrupted: never leave a stage running on the scene
            proc.kill()
            proc.wait()
    last = tail[0] if tail else (f"killed by signal {-code}" if code < 0 else f"exit code {code}, nothing on stderr")
    return code, last


def pinned_gpu(gpu_ids: tuple[str, ...] | None) -> str | None:
    """The ``CUDA_VISIBLE_DEVICES`` of this worker's stages (None: leave it as the worker has it)."""
    if gpu_ids is None:
        return None
    return gpu_for_worker(_worker_name() or 0, gpu_ids)


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):  # not inside a Dask worker
        return ""


def _open_log(options: TaskOptions, name: str) -> IO[str]:
    if options.log_dir:
        try:
            Path(options.log_dir).mkdir(parents=True, exist_ok=True)
            return open(Path(options.log_dir) / f"{name}.log", "w", encoding="utf-8")
        except OSError:
            pass  # a worker that cannot reach the log folder still runs the scene
    return open(os.devnull, "w", encoding="utf-8")


def run_scene(path: str, name: str, options: TaskOptions) -> SceneResult:
    """Run the requested stages of one scene (the Dask task), then note which stages are fresh and evaluate
    against ``gt.mp4``. Never raises for a failing stage."""
    scene = Path(path)
    result = _run_stages(scene, name, options)
    result.fresh = fresh_stages(scene)
    if result.status != FAILED and "motion" in result.fresh:
        result.evaluation = _evaluation(scene, options.eval_frames)
    return result


def _run_stages(scene: Path, name: str, options: TaskOptions) -> SceneResult:
    worker = _worker_name()
    gpu = pinned_gpu(options.gpu_ids)
    result = SceneResult(name=name, path=str(scene), status=SKIPPED, worker=worker, gpu=gpu)
    env = stage_env(gpu, options.threads)
    last = options.stages[-1]
    with _open_log(options, name) as log:
        all_fresh = not options.force and is_fresh(scene, last)
        for stage in () if all_fresh else options.stages:
            if not options.force and is_fresh(scene, stage):
                continue
            start = time.perf_counter()
            code, line = run_stage(stage_command(stage, scene, options.extra_args.get(stage, ())), env, log)
            result.seconds[stage] = round(time.perf_counter() - start, 2)
            result.ran.append(stage)
            if code != 0:
                result.status, result.error, result.failed_stage = FAILED, line, stage
                return result
        result.status = OK if result.ran else SKIPPED
    return result


def _evaluation(scene: Path, frames: int) -> dict | None:
    from batch.evaluate import GT_VIDEO, evaluate_scene

    if not (scene / GT_VIDEO).is_file():
        return None
    try:
        return evaluate_scene(scene, frames)
    except UserError as exc:
        return {"error": exc.line()}
    except Exception as exc:  # the stages succeeded: a broken evaluation must not fail the scene
        return {"error": f"evaluation failed: {type(exc).__name__}: {str(exc)[:200]}"}
