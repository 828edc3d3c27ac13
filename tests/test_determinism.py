"""Determinism: the same inputs, options and seed give byte-identical stage-0 and stage-1 outputs on the CPU.

The tiny pipeline (tests/pipeline_fixtures.py) ran generate_mask + train_motion once; here they run again
on a fresh copy of the user's files, in another folder, and every output listed by the manifests must
have the same sha256 (and the files on disk must be the ones the manifests list).
"""

from __future__ import annotations

import shutil

import pytest

from annotation.procedural import make_landscape, save_scene
from scene.manifest import require_stage
from scene.paths import ScenePaths
from tests.pipeline_fixtures import (
    manifest_outputs,
    pipeline,  # noqa: F401 (fixture)
    run_stage,
    sha256,
)


def _outputs(scene, stage: str) -> dict[str, str]:
    """The manifest's {path: sha256} of ``stage``, after checking that the files on disk match it."""
    listed = manifest_outputs(scene, stage)
    require_stage(ScenePaths(scene), stage)
    assert listed == {rel: sha256(scene / rel) for rel in listed}
    return listed


def _differences(a: dict[str, str], b: dict[str, str]) -> list[str]:
    return sorted(set(a) ^ set(b)) + sorted(k for k in set(a) & set(b) if a[k] != b[k])


@pytest.mark.slow
def test_stage0_and_stage1_outputs_are_identical_across_runs(pipeline, tmp_path):  # noqa: F811
    first = pipeline.state("motion")
    second = pipeline.copy("raw", tmp_path / "again")  # another folder: paths must not leak into outputs
    run_stage("mask", second)
    run_stage("motion", second)
    for stage in ("mask", "motion"):
        a, b = _outputs(first, stage), _outputs(second, stage)
        assert len(a) >= (5 if stage == "mask" else 30)
        assert not _differences(a, b), f"{stage} outputs differ between two identical runs: {_differences(a, b)}"


SETTINGS = {
    "1 thread": (("--threads", "1"), {}),
    "2 threads": (("--threads", "2"), {}),
    "3 threads": (("--threads", "3"), {}),
    "OMP_NUM_THREADS=3": (("--threads", "0"), {"OMP_NUM_THREADS": "3"}),
    "AVX2 kernels": (("--threads", "2"), {"ATEN_CPU_CAPABILITY": "avx2"}),
    "OpenBLAS Prescott": (("--threads", "1"), {"OPENBLAS_CORETYPE": "Prescott"}),
}
"""What is compared: torch thread counts (--threads 0 = torch's default), and the CPU kernels a machine of
another type would run: torch's AVX2 kernels in place of AVX-512 ones (where the CPU has them), numpy's
OpenBLAS with the oldest x86-64 core type. Stage 1 must write the same bytes under every setting."""


@pytest.mark.slow
def test_stage1_outputs_do_not_depend_on_threads_or_cpu_kernels(tmp_path):
    """Byte-identical train_motion outputs under every setting of :data:`SETTINGS`.

    A photo large enough (256x160, 6 views) that torch splits the projections, the flow interpolation,
    the 3D motion fit and the splats between threads (utils/ordered.py says why that used to matter).
    """
    raw = save_scene(make_landscape(256, 160, seed=2), tmp_path / "raw")
    run_stage("mask", raw)
    outputs = {}
    for i, (name, (args, env)) in enumerate(SETTINGS.items()):
        scene = tmp_path / f"setting{i}"
        shutil.copytree(raw, scene)
        run_stage("motion", scene, "--n_views", "6", "--n_frames", "6", "--train_iteration", "20", *args, env=env)
        outputs[name] = _outputs(scene, "motion")
    first = outputs["1 thread"]
    assert len(first) >= 40
    for name, files in outputs.items():
        assert not _differences(first, files), f"{name} vs 1 thread: {_differences(first, files)}"
