"""The batch on Dask distributed: a cluster to run on, one task per scene, a line per finished scene.

:func:`local_client` gives a ``distributed.Client`` of a ``LocalCluster`` on this machine (worker processes
with one thread each, so a worker runs one scene at a time; on CPU one worker by default, as the stages
use every core; with CUDA one worker per GPU, each holding the Dask resource ``GPU: 1``), and
:func:`remote_client` one of an existing cluster's scheduler (``--scheduler tcp://host:8786``).
:func:`run_batch` submits ``batch.stages.run_scene`` for every scene and collects the results as they
finish (``distributed.as_completed``): a line per scene with the count and the ETA, and the project's
progress bar on a terminal. A task that fails in any way (a worker lost, the project not importable
there) becomes a failed scene, never the end of the batch.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from batch.gpus import GPU_RESOURCE
from batch.stages import FAILED, SKIPPED, SceneResult, TaskOptions, run_scene
from utils.console import console, info, progress
from utils.errors import UserError

CONNECT_FIX = (
    "start one (`dask scheduler`, then `dask worker ADDRESS` on each node: docs/batch.md) "
    "or leave --scheduler out to run on this machine"
)


@contextlib.contextmanager
def local_client(workers: int, gpu_ids: Sequence[str] = ()) -> Iterator:
    """A Client of a LocalCluster: ``workers`` processes with one thread each; each holds ``GPU: 1`` when
    there are GPUs (``gpu_ids``; the tasks pin their stages to them, batch.gpus)."""
    from distributed import Client, LocalCluster

    resources = {GPU_RESOURCE: 1} if gpu_ids else None
    # memory_limit=0: the stages run in subprocesses and manage their own memory; a worker restarted for
    # their usage would only lose the task. The scheduler's HTTP server (the dashboard, with bokeh) takes a
    # free port: two batches on one machine must not fight over 8787.
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        memory_limit=0,
        resources=resources,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    with cluster, Client(cluster) as client:
        yield client


@contextlib.contextmanager
def remote_client(address: str, timeout_s: float = 10.0, need_gpu: bool = False) -> Iterator:
    """A Client of the scheduler at ``address`` (``tcp://host:8786``, or the JSON file that ``dask scheduler
    --scheduler-file`` writes), with at least one worker (one holding ``GPU`` if ``need_gpu``); UserError when
    it cannot be reached in ``timeout_s``."""
    from distributed import Client

    try:
        if Path(address).is_file():
            client = Client(scheduler_file=address, timeout=timeout_s)
        else:
            client = Client(address, timeout=timeout_s)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        why = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise UserError(f"cannot reach a Dask scheduler at {address!r} ({why})", CONNECT_FIX) from None
    with client:
        try:
            client.wait_for_workers(1, timeout=timeout_s)
        except (TimeoutError, OSError):
            raise UserError(f"the Dask scheduler at {address} has no worker", CONNECT_FIX) from None
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        if need_gpu and not any(w.get("resources", {}).get(GPU_RESOURCE) for w in workers):
            raise UserError(
                f"no worker of {address} has the resource {GPU_RESOURCE}",
                f"start the GPU workers with `dask worker {address} --nthreads 1 --resources {GPU_RESOURCE}=1`",
            )
        yield client


def stage_times(result: SceneResult) -> str:
    return ", ".join(f"{stage} {sec:.1f} s" for stage, sec in result.seconds.items())


def progress_line(result: SceneResult) -> str:
    """The line shown when a scene finishes: its name, status, per-stage seconds, where it ran, the error."""
    where = f"worker {result.worker}" if result.worker else ""
    if result.gpu:
        where += f", GPU {result.gpu}"
    times = stage_times(result) or "nothing to run"
    line = f"{result.name}: {result.status}" + ("" if result.status == SKIPPED else f" ({times})")
    if where and result.status != SKIPPED:
        line += f" on {where}"
    if result.status == FAILED:
        line += f"; {result.failed_stage or 'task'}: {result.error}"
    return line


def _task_failure(path: Path, name: str, exc: BaseException) -> SceneResult:
    text = str(exc).strip().splitlines()
    return SceneResult(name, str(path), FAILED, error=f"{type(exc).__name__}: {text[0][:300] if text else ''}")


def run_batch(
    client, scenes: Sequence[Path], names: Sequence[str], options: TaskOptions, need_gpu: bool = False
) -> list[SceneResult]:
    """Run every scene as one task on ``client``'s cluster; the results in the order of ``scenes``.

    ``need_gpu``: each task takes one ``GPU`` resource of its worker (one scene per GPU at a time).
    """
    from distributed import as_completed

    batch_id = uuid.uuid4().hex[:8]  # fresh keys: a re-run is never answered from an earlier run's results
    resources = {GPU_RESOURCE: 1} if need_gpu else None
    futures = {
        client.submit(
            run_scene, str(path), name, options, key=f"scene-{name}-{batch_id}", pure=False, resources=resources
        ): (path, name)
        for path, name in zip(scenes, names)
    }
    results: dict[str, SceneResult] = {}
    start = time.perf_counter()
    try:
        with _bar(len(futures)) as advance:
            for future in as_completed(futures):
                path, name = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # a lost worker, an import error there: this scene failed, the batch goes on
                    result = _task_failure(path, name, exc)
                results[name] = result
                info(f"[{eta_text(len(results), len(futures), time.perf_counter() - start)}] {progress_line(result)}")
                advance()
    finally:
        client.cancel(list(futures))  # on Ctrl-C: tasks not yet started are dropped
    return [results[name] for name in names]


def eta_text(done: int, total: int, elapsed_s: float) -> str:
    """``3/8, ETA 1 min 40 s``: the remaining scenes at the mean pace so far (parallel workers included)."""
    if done >= total:
        return f"{done}/{total}, {_duration(elapsed_s)} in all"
    return f"{done}/{total}, ETA {_duration(elapsed_s / max(done, 1) * (total - done))}"


def _duration(seconds: float) -> str:
    minutes, sec = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {sec} s" if minutes else f"{sec} s"


@contextlib.contextmanager
def _bar(total: int) -> Iterator:
    """On a terminal the project's progress bar (count, elapsed, ETA); yields the function that advances it.
    Elsewhere (a log file) the per-scene lines carry the count and the ETA alone."""
    if not console.is_terminal:
        yield lambda: None
        return
    with progress() as bar:
        task = bar.add_task("scenes", total=total, status="")
        yield lambda: bar.advance(task)
