"""Which GPU a worker's stages see, and the environment the stage subprocesses run in.

On a ``LocalCluster`` with GPUs there is one worker per GPU (one thread each, so one scene at a time),
and worker ``i`` runs its stages with ``CUDA_VISIBLE_DEVICES`` = the i-th visible GPU: inside a stage
that GPU is ``cuda:0``. The ids are the ones this process sees (``CUDA_VISIBLE_DEVICES=2,3`` gives the
workers ``2`` and ``3``). On an existing cluster the workers' own environment decides (start each worker
with its GPU, see docs/batch.md), unless ``--gpus 0`` hides every GPU.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping, Sequence

from utils.errors import UserError

GPU_RESOURCE = "GPU"  # the Dask resource a GPU worker has one of, and a scene task needs one of


def cuda_device_count() -> int:
    """GPUs torch sees here (0 without CUDA, or without torch)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def visible_ids(count: int, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The ids, as ``CUDA_VISIBLE_DEVICES`` spells them for a child process, of the first ``count`` GPUs that
    this process sees: the entries of its own ``CUDA_VISIBLE_DEVICES`` when set, else ``0 .. count-1``."""
    env = os.environ if env is None else env
    listed = env.get("CUDA_VISIBLE_DEVICES")
    ids = [s.strip() for s in listed.split(",") if s.strip()] if listed is not None else [str(i) for i in range(count)]
    return tuple(ids[:count])


def local_gpus(request: str, available: int, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """``--gpus auto|N`` on this machine -> the GPU ids the local workers get (empty: CPU only).

    ``available``: the GPUs torch sees (:func:`cuda_device_count`). More than that is a UserError.
    """
    count = available if request == "auto" else parse_count(request)
    if count > available:
        fix = f"give --gpus auto or at most {available}" if available else "leave --gpus out to run on the CPU"
        raise UserError(f"--gpus {request} asks for {count} GPU(s) but CUDA sees {available} here", fix)
    return visible_ids(count, env)


def parse_count(request: str) -> int:
    """``N`` of ``--gpus N`` (an integer >= 0), else a UserError."""
    try:
        count = int(request)
    except ValueError:
        count = -1
    if count < 0:
        raise UserError(f"--gpus must be 'auto' or a whole number >= 0, got {request!r}", "e.g. --gpus auto")
    return count


def gpu_for_worker(worker_name: object, gpu_ids: Sequence[str]) -> str:
    """The GPU id of a worker: ``LocalCluster`` names its workers 0, 1, …, and worker i gets ``gpu_ids[i]``
    (round robin when there are more workers than GPUs); any other name maps to a fixed GPU by its hash.
    ``""`` when there is no GPU (the stages then see none and run on the CPU)."""
    if not gpu_ids:
        return ""
    text = str(worker_name)
    index = int(text) if text.isdigit() else zlib.crc32(text.encode())
    return gpu_ids[index % len(gpu_ids)]


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """CPU threads each worker's stages may use: the cores shared out, at least 1 (torch's threads spin-wait
    when more run than there are cores, and a stage slows several times)."""
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    return max(1, cores // max(1, workers))


def stage_env(gpu: str | None, threads: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a stage subprocess: ``base`` (default: this process's) with ``CUDA_VISIBLE_DEVICES``
    = ``gpu`` unless ``gpu`` is None (leave it as it is), and ``OMP_NUM_THREADS`` = ``threads`` unless it is
    0 or already set (the user's choice wins)."""
    env = dict(os.environ if base is None else base)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    if threads > 0 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(threads)
    return env
