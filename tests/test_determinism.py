"""Determinism: the same inputs, options and seed give byte-identical stage-0 and stage-1 outputs on the CPU.

The tiny pipeline (tests/pipeline_fixtures.py) ran generate_mask + train_motion once; here they run again
on a fresh copy of the user's files, in another folder, and every output listed by the manifests must
have the same sha256 (and the files on disk must be the ones the manifests list).
"""

from __future__ import annotations

import pytest

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


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="motion3d.npy depends on the torch thread count: torch.einsum (BLAS) projections round differently "
    "with 1 and 2 threads (~1e-6 px), and the L1 + Adam fit amplifies sign flips of near-zero residuals "
    "(~0.06 world units after 10 steps). The default --threads 0 keeps torch's per-core default, so runs on one "
    "machine match; pass --threads N to match across machines.",
)
def test_stage1_outputs_do_not_depend_on_the_thread_count(pipeline, tmp_path):  # noqa: F811
    first = pipeline.state("motion")  # --threads 1
    second = pipeline.copy("mask", tmp_path / "two_threads")
    run_stage("motion", second, "--threads", "2")
    a, b = _outputs(first, "motion"), _outputs(second, "motion")
    assert not _differences(a, b), f"outputs differ with 2 threads: {_differences(a, b)}"
