"""Golden hashes: the sha256 of every output of the tiny pipeline (tests/pipeline_fixtures.py), recorded once.

A change that must not change behaviour (a refactor) keeps every hash; a change that does change an
output re-records them and says in its commit and docs which files changed and why::

    .venv/bin/python -m tests.golden --record     # run the tiny pipeline, rewrite tests/data/golden_outputs.json

Manifests are not hashed (they hold timings); the outputs they list are.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "golden_outputs.json"


def pipeline_outputs(states) -> dict[str, dict[str, str]]:
    """{stage: {relative path: sha256}} of the outputs each stage's manifest lists, in the finished scene."""
    from tests.pipeline_fixtures import STAGES, manifest_outputs

    final = states.state(STAGES[-1])
    return {stage: dict(sorted(manifest_outputs(final, stage).items())) for stage in STAGES}


# The libraries whose versions shape the outputs' bytes (PNG and mp4 encoders, resampling, BLAS): pinned in
# requirements-dev.txt to the versions of the recording.
LIBRARIES = ("numpy", "scipy", "opencv-python-headless", "pillow", "imageio", "imageio-ffmpeg")


def machine() -> dict:
    """What the recording ran on (stage 2 and 3 go through BLAS; see tests/test_golden.py)."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "libraries": {name: installed(name) for name in LIBRARIES},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="run the tiny pipeline and rewrite the golden file")
    args = parser.parse_args(argv)
    if not args.record:
        parser.print_help()
        return 0
    sys.path.insert(0, str(ROOT))
    from tests.pipeline_fixtures import build_pipeline, isolate_models

    isolate_models()
    with tempfile.TemporaryDirectory() as tmp:
        outputs = pipeline_outputs(build_pipeline(Path(tmp)))
    GOLDEN.write_text(json.dumps({"machine": machine(), "outputs": outputs}, indent=1) + "\n")
    print(f"wrote {GOLDEN}: {sum(len(v) for v in outputs.values())} outputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
