"""The tiny pipeline's outputs are the recorded ones, byte for byte (tests/golden.py says when to re-record).

Every stage's outputs were found identical across runs, torch thread counts (stage 1, see
tests/test_determinism.py), and torch's AVX2 and AVX-512 kernels (stages 0-3), so the hashes hold on
any x86-64 machine with the library versions requirements-dev.txt pins (tests/golden.py LIBRARIES); with
other versions the test skips and names them.
"""

from __future__ import annotations

import json

import pytest

from tests.golden import GOLDEN, machine, pipeline_outputs
from tests.pipeline_fixtures import STAGES, pipeline  # noqa: F401 (fixture)


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_outputs_match_the_recorded_hashes(pipeline, stage):  # noqa: F811
    golden = json.loads(GOLDEN.read_text())
    was, is_ = golden["machine"]["libraries"], machine()["libraries"]
    versions = {name: (was.get(name), v) for name, v in is_.items() if was.get(name) != v}
    if versions:  # the hashes hold for the recording's encoders and resampling only
        pytest.skip(
            f"libraries differ from the recording's (recorded, installed): {versions}; bash scripts/setup.sh pins them"
        )
    recorded = golden["outputs"][stage]
    now = pipeline_outputs(pipeline)[stage]
    changed = sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))
    assert not changed, (
        f"{stage} outputs differ from tests/data/golden_outputs.json: {changed}. If the change is meant, "
        "re-record with `python -m tests.golden --record` and say which files changed and why."
    )
